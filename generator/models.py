"""Pydantic models of the chart values and of cluster profiles.

These models are the single source of truth for the chart's values: `values.schema.json` is
generated from `ChartValues` (see `schema.py`). Field descriptions feed the schema.
Structural rules live here; rules that need a cluster profile or cross-field reasoning live in
`checks_*.py` so that every problem is reported at once, one line each.
"""

from __future__ import annotations

import builtins
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from katib_nas_contract.flags import TRAINERS

from .chart_files import kubernetes_too_old
from .quantity import parse_quantity

AccessMode = Literal["ReadWriteOnce", "ReadWriteMany", "ReadWriteOncePod", "ReadOnlyMany"]
# A search-space bound as a user writes it: Katib wants strings, YAML users write numbers.
Scalar = str | int | float
# Pass-through Kubernetes blocks (resources, affinity, ...): open objects, checked by Kubernetes.
KubeObject = dict[str, Any]


class StrictModel(BaseModel):
    """Objects we own are closed, so a typo such as `experimnt` fails at install."""

    # .inf and .nan are no value Katib, helm or Kubernetes can take.
    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)


class OpenModel(BaseModel):
    """Katib pass-through blocks stay open: Katib adds fields faster than we do."""

    model_config = ConfigDict(extra="allow")


# --- search space --------------------------------------------------------------------------


class FeasibleSpace(StrictModel):
    min: Scalar | None = Field(None, description="Lower bound (int/double). Rendered as a quoted string.")
    max: Scalar | None = Field(None, description="Upper bound (int/double). Rendered as a quoted string.")
    step: Scalar | None = Field(None, description="Step (int/double); required for double parameters with grid.")
    list: builtins.list[Scalar] | None = Field(None, description="Values (categorical/discrete).")
    distribution: Literal["uniform", "logUniform", "normal", "logNormal"] | None = Field(
        None, description="Sampling distribution (Katib >= 0.18)."
    )


class Parameter(StrictModel):
    name: str = Field(
        description="Parameter name; the trainer receives it as the flag `--<name>`.",
        pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$",
        max_length=63,
    )
    parameterType: Literal["int", "double", "categorical", "discrete"] = Field(description="Katib parameter type.")
    feasibleSpace: FeasibleSpace = Field(description="Range or list the algorithm samples from.")


class Setting(StrictModel):
    name: str = Field(description="Setting name.", min_length=1)
    value: Scalar = Field(description="Setting value (rendered as a quoted string).")


class MetricStrategy(StrictModel):
    name: str = Field(description="Metric name.")
    value: Literal["min", "max", "latest"] = Field(description="Which reported value Katib keeps.")


class Objective(StrictModel):
    type: Literal["maximize", "minimize"] = Field("maximize", description="Optimisation direction.")
    goal: float | None = Field(None, description="(float) Stop the Experiment once this objective value is reached.")
    objectiveMetricName: str = Field("accuracy", description="Metric the search optimises.", min_length=1)
    additionalMetricNames: list[str] = Field(
        default_factory=lambda: ["loss"], description="Other metrics Katib records."
    )
    metricStrategies: list[MetricStrategy] = Field(
        default_factory=list,
        description="How Katib reduces each metric's series. A metric left out is summarised in its own "
        "direction: the objective in its type's, `min` for lower-is-better names (loss, error, ...), `max` for "
        "higher-is-better ones (accuracy, auc, ...), else the objective's direction.",
    )


class Algorithm(StrictModel):
    algorithmName: Literal[
        "random",
        "grid",
        "tpe",
        "multivariate-tpe",
        "cmaes",
        "sobol",
        "bayesianoptimization",
        "hyperband",
        "pbt",
        "enas",
        "darts",
    ] = Field("random", description="Katib suggestion algorithm.")
    algorithmSettings: list[Setting] = Field(default_factory=list, description="Algorithm settings.")


class EarlyStopping(StrictModel):
    enabled: bool = Field(True, description="Stop trials that do worse than the others.")
    algorithmName: Literal["median", "successive-halving", "medianstop"] = Field(
        "median",
        description="`median` (the median of the trials' running averages, checked every epoch) or "
        "`successive-halving`: applied by the katib-nas trainer from the curves the trials write to the "
        "shared model PVC, with no Katib service. `medianstop`: Katib's own service.",
    )
    algorithmSettings: list[Setting] = Field(
        default_factory=lambda: [Setting(name="min_trials_required", value="3"), Setting(name="start_step", value="4")],
        description="Settings: `min_trials_required` (> 0), `start_step` (>= 1); successive-halving also "
        "`reduction_factor` (>= 2, default 3).",
    )


class FileSystemPath(StrictModel):
    path: str = Field(description="Absolute path of the metrics file or directory in the trial container.")
    kind: Literal["File", "Directory"] = Field(
        "File", description="File (File collector) or Directory (TensorFlowEvent)."
    )
    format: Literal["TEXT", "JSON"] | None = Field(None, description="(string) File collector format.")


class MetricsSource(StrictModel):
    fileSystemPath: FileSystemPath | None = Field(
        None, description="Where File/TensorFlowEvent collectors read metrics."
    )
    filter: OpenModel | None = Field(None, description="Katib `metricsFormat` filter (regexes with two groups).")
    httpGet: OpenModel | None = Field(None, description="PrometheusMetric collector endpoint.")

    @field_validator("filter")
    @classmethod
    def _formats(cls, metrics_filter: OpenModel | None) -> OpenModel | None:
        """Katib's FilterSpec.metricsFormat is a list of strings; the collector checks read each one."""
        formats = metrics_filter.model_dump().get("metricsFormat") if metrics_filter else None
        if formats is not None and not (isinstance(formats, list) and all(isinstance(f, str) for f in formats)):
            raise ValueError("metricsFormat must be a list of strings, each a pattern with two groups")
        return metrics_filter


class MetricsCollector(StrictModel):
    # Katib v0.19's CollectorKind values its webhook admits (common_types.go, validateMetricsCollector).
    kind: Literal["StdOut", "File", "TensorFlowEvent", "PrometheusMetric", "Custom", "Push"] = Field(
        "StdOut",
        description="How Katib collects trial metrics. StdOut parses `name=value` lines; also File, TensorFlowEvent, "
        "PrometheusMetric (`katib-nas validate` refuses it: Katib v0.19's katib-config has no collector for it), "
        "Custom and Push.",
    )
    source: MetricsSource | None = Field(None, description="Metrics source (File, TensorFlowEvent, PrometheusMetric).")
    customCollector: KubeObject | None = Field(None, description="Container spec for the Custom collector.")


# The chart's default search space: an MLP on digits.
DEFAULT_PARAMETERS: list[dict[str, Any]] = [
    {"name": "lr", "parameterType": "double", "feasibleSpace": {"min": 0.0005, "max": 0.01}},
    {"name": "num-layers", "parameterType": "int", "feasibleSpace": {"min": 1, "max": 3}},
    {"name": "units", "parameterType": "categorical", "feasibleSpace": {"list": ["64", "128", "256"]}},
    {"name": "dropout", "parameterType": "double", "feasibleSpace": {"min": 0.0, "max": 0.4}},
    {"name": "batch-size", "parameterType": "categorical", "feasibleSpace": {"list": ["32", "64", "128"]}},
    {"name": "optimizer", "parameterType": "categorical", "feasibleSpace": {"list": ["adam", "sgd"]}},
]


class Experiment(StrictModel):
    name: str = Field(
        "",
        description="Experiment name. @default -- the release's full name.",
        pattern=r"^([a-z]([-a-z0-9]*[a-z0-9])?)?$",
        max_length=40,  # Katib's webhook limit
    )
    objective: Objective = Field(default_factory=Objective, description="What the search optimises.")
    algorithm: Algorithm = Field(default_factory=Algorithm, description="How Katib suggests trials.")
    earlyStopping: EarlyStopping = Field(default_factory=EarlyStopping, description="Katib early stopping.")
    parallelTrialCount: int = Field(2, ge=1, description="Trials running at once.")
    maxTrialCount: int = Field(12, ge=1, description="Trials in the whole search.")
    maxFailedTrialCount: int = Field(3, ge=0, description="Failed trials after which the Experiment fails.")
    resumePolicy: Literal["Never", "LongRunning", "FromVolume"] = Field(
        "FromVolume",
        description="Whether a finished search can go on: with `FromVolume` (Katib stops the suggestion pod and, on "
        "resume, starts a new one, with a PVC of the cluster's default StorageClass, that is handed every trial so "
        "far; Katib's optuna, goptuna and pbt services cannot take them, so validate refuses FromVolume for their "
        "algorithms) or `LongRunning` (the suggestion pod keeps running), raising `maxTrialCount` after the "
        "Experiment reached it runs more trials. `Never`: a finished Experiment cannot change. Fixed once the "
        "Experiment exists.",
    )
    metricsCollector: MetricsCollector = Field(default_factory=MetricsCollector, description="Metrics collector.")
    parameters: list[Parameter] = Field(
        default_factory=lambda: [Parameter.model_validate(p) for p in DEFAULT_PARAMETERS],
        description="HPO/architecture search space; each parameter reaches the trainer as `--<name>`.",
    )
    nasConfig: OpenModel | None = Field(
        None, description="(object) Katib `nasConfig` (graphConfig, operations) for enas/darts instead of parameters."
    )


class SearchSpace(StrictModel):
    """The part of an Experiment that the algorithm samples: used by checks and the importer."""

    parameters: list[Parameter]
    nasConfig: OpenModel | None = None


# --- workloads -----------------------------------------------------------------------------


class Image(StrictModel):
    repository: str = Field(description="Image repository.", min_length=1)
    tag: str = Field("", description="Image tag. @default -- the chart's appVersion.")
    digest: str = Field(
        "", description="Image digest (sha256:...); wins over the tag.", pattern=r"^(sha256:[a-f0-9]{64})?$"
    )
    pullPolicy: Literal["Always", "IfNotPresent", "Never"] = Field("IfNotPresent", description="Image pull policy.")


class Scheduling(StrictModel):
    """Where a workload's pods run and what they ask for."""

    resources: KubeObject = Field(default_factory=dict, description="Container resources (requests/limits).")
    nodeSelector: dict[str, str] = Field(default_factory=dict, description="Node labels the pods require.")
    tolerations: list[KubeObject] = Field(default_factory=list, description="Tolerations for tainted nodes.")
    affinity: KubeObject = Field(default_factory=dict, description="Pod affinity rules.")

    @field_validator("resources")
    @classmethod
    def _quantities(cls, resources: KubeObject) -> KubeObject:
        """The profile checks add requests and limits up, so each must map names to quantities."""
        for key in ("requests", "limits"):
            amounts = resources.get(key)
            if amounts is not None and not (
                isinstance(amounts, dict)
                and all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in amounts.values())
            ):
                raise ValueError(f"{key} must map resource names to quantities, such as cpu: 500m and memory: 1Gi")
        return resources


class TrialParameter(StrictModel):
    name: str = Field(description="Name used as `${trialParameters.<name>}` in `trial.args`.", pattern=r"^[^{}]+$")
    reference: str = Field(description="Experiment parameter (or `${trialSpec.Name}`-style meta key) it takes.")
    description: str = Field("", description="Shown in the Katib UI.")


class TrainerImage(Image):
    repository: str = Field(
        "",
        description="Trainer image repository. @default -- the framework's katib-nas trainer: "
        "`ghcr.io/katib-nas/trainer` (pytorch) or `ghcr.io/katib-nas/trainer-keras` (keras).",
    )


class Trial(Scheduling):
    framework: Literal["pytorch", "keras"] = Field(
        "pytorch",
        description="Which katib-nas trainer runs the trials: `pytorch` or `keras` (TensorFlow). Both take the "
        "same flags and print the same metrics; this picks the default image and command.",
    )
    image: TrainerImage = Field(default_factory=TrainerImage, description="Trainer image.")
    command: list[str] = Field(
        default_factory=list,
        description="Trainer command. Must be explicit: Katib's StdOut collector replaces the entrypoint with "
        "`sh -c`. @default -- the framework's: `[python, -m, katib_nas_trainer]` or `[python, -m, katib_nas_keras]`.",
    )
    args: list[str] = Field(
        default_factory=list,
        description="Verbatim trainer arguments with `${trialParameters.X}` references, used when "
        "`trial.trialParameters` is set. @default -- one `--<name>=${trialParameters.<name>}` per parameter "
        "plus the fixed flags below.",
    )
    trialParameters: list[TrialParameter] = Field(
        default_factory=list,
        description="Verbatim Katib trialParameters, used with `trial.args`. @default -- one per experiment "
        "parameter plus `trialName`.",
    )
    dataset: str = Field("digits", description="Data set flag for the trainer (digits, mnist, fashion-mnist, a file).")
    epochs: int = Field(20, ge=1, description="Epochs per trial (the trainer's `--epochs`).")
    extraArgs: list[str] = Field(
        default_factory=list, description="More trainer flags, appended after the generated ones."
    )
    env: list[KubeObject] = Field(default_factory=list, description="Extra environment variables for the trainer.")
    runtimeClassName: str = Field("", description="RuntimeClass for trial pods (k3s GPU nodes need `nvidia`).")
    gpuMemoryMiB: int | None = Field(
        None,
        ge=1,
        description="(int) GPU memory budget of one trial, in MiB: the trainer caps its framework's allocator to it "
        "(env KATIB_NAS_GPU_MEMORY_MIB) and an out-of-memory trial fails with one line. Set it where the device "
        "plugin time-slices GPUs: `katib-nas validate` checks it against the card's memory divided by the replicas.",
    )
    backoffLimit: int = Field(
        1, ge=0, description="Pod retries of a trial Job; the trainer resumes from its checkpoint."
    )
    retain: bool = Field(
        False,
        description="Keep finished trial Jobs and pods. Early stopping always keeps them: Katib's trial controller "
        "reads an early-stopped trial's metrics only from a Job it kept.",
    )
    successCondition: str = Field(
        'status.conditions.#(type=="Complete")#|#(status=="True")#', description="When Katib marks a trial Job done."
    )
    failureCondition: str = Field(
        'status.conditions.#(type=="Failed")#|#(status=="True")#', description="When Katib marks a trial Job failed."
    )

    def image_repository(self) -> str:
        """The trial image repository the chart renders: the values' own, or the framework's trainer."""
        return self.image.repository or TRAINERS[self.framework].repository

    def trainer_command(self) -> list[str]:
        """The trial command the chart renders: the values' own, or the framework's trainer's."""
        return self.command or list(TRAINERS[self.framework].command)


class Persistence(StrictModel):
    existingClaim: str = Field(
        "", description="Use this existing PVC instead of creating one (trials need a volume either way)."
    )
    size: str = Field("2Gi", description="PVC size.", pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$")
    accessModes: list[AccessMode] = Field(
        default_factory=lambda: list[AccessMode](["ReadWriteOnce"]),
        description="PVC access modes. Multi-node trials sharing the PVC need ReadWriteMany.",
        min_length=1,
    )
    storageClassName: str | None = Field(None, description="(string) Storage class. Unset uses the cluster default.")
    annotations: dict[str, str] = Field(default_factory=dict, description="PVC annotations.")
    mountPath: str = Field("/models", description="Where pods mount the PVC (the model root).", pattern=r"^/")


class ServingBudget(StrictModel):
    latencyP99Ms: float | None = Field(
        None,
        gt=0,
        description="(float) Most batch-1 p99 latency a promoted model may have, in milliseconds, as its trainer "
        "measured it at export (onnxruntime, one thread). Unset: no latency limit.",
    )
    modelBytes: int | None = Field(
        None, ge=1, description="(int) Largest model.onnx a promoted model may have, in bytes. Unset: no size limit."
    )


class Promotion(StrictModel):
    budget: ServingBudget = Field(
        default_factory=ServingBudget,
        description="Serving budget: the extraction, server and batch steps promote the most accurate complete "
        "trial whose measured serving cost fits, and name the better ones it ruled out.",
    )


class Extract(Scheduling):
    enabled: bool = Field(
        True,
        description="The extraction Deployment (one pod): mounts the PVC for `kubectl cp` and keeps the best-model "
        "pointer current.",
    )
    annotations: dict[str, str] = Field(default_factory=dict, description="Deployment annotations (hooks included).")


class BatchInference(Scheduling):
    enabled: bool = Field(True, description="Score a data set with the best model once the Experiment finishes.")
    dataset: str = Field(
        "digits",
        description="Data set to score: digits, mnist or fashion-mnist (their test split), or an .npz/.npy file on the "
        "PVC. Must be the set the trials train on (trial.dataset) or a file of samples like it: a model trained on one "
        "named set cannot score another.",
    )
    batchSize: int = Field(256, ge=1, description="Rows per inference batch.")
    backoffLimit: int = Field(2, ge=0, description="Job retries.")
    ttlSecondsAfterFinished: int | None = Field(None, ge=0, description="(int) Delete the finished Job after this.")
    restartPolicy: Literal["OnFailure", "Never"] = Field("Never", description="Pod restart policy.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Job annotations (hooks included).")


class Service(StrictModel):
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field("ClusterIP", description="Service type.")
    port: int = Field(80, ge=1, le=65535, description="Service port.")


class ServiceMonitor(StrictModel):
    enabled: bool = Field(False, description="Create a Prometheus Operator ServiceMonitor (skipped without the CRD).")
    interval: str = Field("30s", description="Scrape interval.")


class KServe(StrictModel):
    minReplicas: int = Field(1, ge=0, description="InferenceService minimum replicas (0 scales to zero).")
    maxReplicas: int = Field(1, ge=1, description="InferenceService maximum replicas.")
    progressDeadline: str = Field(
        "24h",
        description="How long Knative (Serverless mode) waits for the first Ready server pod before failing the "
        "revision; the server is Ready only once the search has a complete trial. A Go duration in whole seconds.",
        pattern=r"^([0-9]+h)?([0-9]+m)?([0-9]+s)?$",
        min_length=2,
    )


class Server(Scheduling):
    enabled: bool = Field(True, description="Serve the best model.")
    mode: Literal["fastapi", "kserve"] = Field(
        "fastapi", description="fastapi: Deployment+Service. kserve: an InferenceService (needs KServe)."
    )
    image: Image = Field(
        default_factory=lambda: Image(repository="ghcr.io/katib-nas/server"),
        description="Inference server image (also runs the extraction, promotion and batch steps).",
    )
    modelName: str = Field(
        "digits", description="Model name in the inference protocol's URLs.", pattern=r"^[a-z0-9-]+$"
    )
    replicas: int = Field(1, ge=1, description="Server replicas (fastapi mode).")
    containerPort: int = Field(8080, ge=1024, le=65535, description="Port the server listens on (non-root).")
    env: list[KubeObject] = Field(
        default_factory=list,
        description="Extra environment variables of the server container, e.g. its request limits "
        "(MAX_CONNECTIONS, READ_TIMEOUT, MAX_CONCURRENT_REQUESTS; images/server/README.md).",
    )
    tmpSizeLimit: str = Field(
        "64Mi",
        pattern=r"^[0-9]+(Ki|Mi|Gi)$",
        description="Size limit of the server pod's /tmp (uploads over 1 MiB spool there; fastapi mode).",
    )
    service: Service = Field(default_factory=Service, description="Service in front of the server (fastapi mode).")
    serviceMonitor: ServiceMonitor = Field(default_factory=ServiceMonitor, description="Prometheus scraping.")
    kserve: KServe = Field(default_factory=KServe, description="KServe mode settings.")


# A Prometheus duration of one unit, never zero (a zero range is a PromQL error).
PROMETHEUS_DURATION = r"^[0-9]*[1-9][0-9]*(ms|s|m|h|d|w|y)$"


def prometheus_duration(default: str, description: str) -> Any:
    return Field(default, pattern=PROMETHEUS_DURATION, description=f"{description} One unit, not zero: 30s, 10m, 1h.")


class ServerAlerts(StrictModel):
    enabled: bool = Field(
        True,
        description="Alerts on the server (5xx answers, p99 latency, a pod serving an older model than best.json "
        "names), on the series the chart's ServiceMonitor scrapes: rendered only with server.serviceMonitor.enabled "
        "in fastapi mode.",
    )
    window: str = prometheus_duration("5m", "Range of the error ratio and p99 latency (at least 4 scrape intervals).")
    errorRatio: float = Field(0.05, gt=0, le=1, description="Fraction of scoring requests answered 5xx that alerts.")
    latencyP99Seconds: float = Field(0.25, gt=0, description="p99 latency of scoring requests that alerts, seconds.")
    sustainedFor: str = prometheus_duration("10m", "How long the error ratio or latency stays over before alerting.")
    staleModelAfter: str = prometheus_duration(
        "10m", "How long a pod may serve an older model than best.json names before alerting."
    )


class SearchAlerts(StrictModel):
    enabled: bool = Field(True, description="Alerts on the search from Katib's controller metrics.")
    namespaceLabel: str = Field(
        "exported_namespace",
        pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$",
        description="Label holding the trial's namespace on Katib's scraped metrics: exported_namespace when the "
        "scrape adds its own namespace label, namespace with honorLabels.",
    )
    noTrialFinishedFor: str = prometheus_duration("1h", "Alert when trials are active and none finished this long.")
    failedTrials: int = Field(1, ge=1, description="Alert when this many trials failed within failedTrialsWindow.")
    failedTrialsWindow: str = prometheus_duration("1h", "Window of failedTrials.")


class PrometheusRule(StrictModel):
    enabled: bool = Field(False, description="Create a Prometheus Operator PrometheusRule (skipped without the CRD).")
    labels: dict[str, str] = Field(default_factory=dict, description="PrometheusRule labels (for ruleSelector).")
    alertLabels: dict[str, str] = Field(
        default_factory=lambda: {"severity": "warning"}, description="Labels of every alert."
    )
    server: ServerAlerts = Field(default_factory=ServerAlerts, description="Alerts on the server.")
    search: SearchAlerts = Field(default_factory=SearchAlerts, description="Alerts on the search.")


class ServiceAccount(StrictModel):
    create: bool = Field(
        True,
        description="Create the ServiceAccount the batch/server pods use and the extraction pod's own "
        "(`<name>-extract`). With false, the batch, server and extraction pods use `name` (`default` when empty). "
        "Trial pods never use it: they run as `<fullname>-trial` when the chart creates that account (early "
        "stopping with the median or successive-halving rule and rbac.create), else as the namespace's `default`.",
    )
    name: str = Field("", description="ServiceAccount name. @default -- the release's full name.")
    annotations: dict[str, str] = Field(default_factory=dict, description="ServiceAccount annotations.")


class Rbac(StrictModel):
    create: bool = Field(
        True,
        description="Create the Roles and RoleBindings that read this Experiment and its Trials, let the extraction "
        "pod get trial pods by name and, with the median or successive-halving rule, let trial pods mark their Trial "
        "EarlyStopped, in this namespace only.",
    )


class Istio(StrictModel):
    sidecarInject: bool = Field(
        False,
        description="Istio sidecar injection into every pod the chart makes (trials, extraction, batch, server), as "
        "the annotation `sidecar.istio.io/inject`. Off: a sidecar never exits, so trial and batch Jobs would never "
        "complete in a namespace with injection (Kubeflow's).",
    )


class Capabilities(StrictModel):
    assumeCRDs: bool = Field(
        False, description="Render as if the Katib (and KServe) CRDs exist: for offline `helm template` and CI only."
    )


class ChartValues(StrictModel):
    """Values of charts/katib-nas."""

    profile: str = Field(
        "",
        description="Cluster profile `katib-nas validate` checks this file against: `microk8s`, `k3s-gpu`, "
        "or a profile file path relative to this values file.",
    )
    nameOverride: str = Field("", description="Replaces the chart name in resource names.")
    fullnameOverride: str = Field("", description="Replaces the release-and-chart full name.")
    namespaceOverride: str = Field("", description="Namespace for all resources. @default -- the release namespace.")
    commonLabels: dict[str, str] = Field(default_factory=dict, description="Labels added to every resource.")
    capabilities: Capabilities = Field(default_factory=Capabilities, description="Render-time capability overrides.")
    istio: Istio = Field(default_factory=Istio, description="Istio sidecar injection.")
    podSecurityContext: KubeObject = Field(
        default_factory=lambda: {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "runAsGroup": 0,
            "fsGroup": 0,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        description="Pod security context of every pod (meets the restricted Pod Security Standard).",
    )
    securityContext: KubeObject = Field(
        default_factory=lambda: {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        description="Container security context of every container.",
    )
    experiment: Experiment = Field(default_factory=Experiment, description="The Katib Experiment.")
    trial: Trial = Field(default_factory=Trial, description="The trial Job every suggestion runs.")
    persistence: Persistence = Field(default_factory=Persistence, description="The model PVC.")
    serviceAccount: ServiceAccount = Field(default_factory=ServiceAccount, description="ServiceAccount.")
    rbac: Rbac = Field(default_factory=Rbac, description="RBAC.")
    promotion: Promotion = Field(default_factory=Promotion, description="Which trial's model is promoted and served.")
    extract: Extract = Field(default_factory=Extract, description="Model-extraction pod.")
    batchInference: BatchInference = Field(default_factory=BatchInference, description="Batch-inference Job.")
    server: Server = Field(default_factory=Server, description="Inference server.")
    prometheusRule: PrometheusRule = Field(
        default_factory=PrometheusRule, description="Prometheus alerts on the server and the search."
    )


# --- cluster profiles ----------------------------------------------------------------------


class Taint(StrictModel):
    key: str
    value: str = ""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]


def _quantity(value: str) -> str:
    """A capacity or reserve: a Kubernetes quantity, not negative (parse_quantity's message says the fix)."""
    if parse_quantity(value) < 0:
        raise ValueError(f"{value!r} is negative; give a quantity of 0 or more, such as 500m or 1Gi")
    return value


# Kubernetes supports clusters of up to 5000 nodes.
MAX_NODES = 5000


class NodeGroup(StrictModel):
    name: str = Field(description="Name of this group of identical nodes.")
    count: int = Field(1, ge=1, le=MAX_NODES, description="Nodes in the group.")
    cpu: str = Field(description="CPU capacity per node (Kubernetes quantity).")
    memory: str = Field(description="Memory capacity per node (Kubernetes quantity).")
    gpus: int = Field(0, ge=0, description="Physical GPUs per node.")
    gpuMemory: str | None = Field(
        None,
        description="Memory of each GPU (Kubernetes quantity: 8Gi, 7982Mi); validate checks trial.gpuMemoryMiB "
        "against it divided by gpuReplicas.",
    )
    gpuReplicas: int = Field(
        1,
        ge=1,
        description="Time-slicing replicas per GPU: the NVIDIA device plugin advertises each GPU as this many "
        "(its config's sharing.timeSlicing.resources[].replicas), so this many trials share one card. 1: GPUs are "
        "handed out whole.",
    )
    gpuFailRequestsGreaterThanOne: bool = Field(
        False,
        description="The device plugin's sharing.timeSlicing.failRequestsGreaterThanOne: a pod asking for more "
        "than one time-sliced GPU fails to start.",
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Node labels.")
    taints: list[Taint] = Field(default_factory=list, description="Node taints.")

    _capacity = field_validator("cpu", "memory")(_quantity)

    @field_validator("gpuMemory")
    @classmethod
    def _gpu_memory(cls, memory: str | None) -> str | None:
        if memory is not None and parse_quantity(memory) <= 0:
            raise ValueError("must be a positive quantity such as 8Gi")
        return memory


class Reserve(StrictModel):
    cpu: str = Field("0", description="CPU kept back per node for the system and Kubernetes.")
    memory: str = Field("0", description="Memory kept back per node.")

    _amount = field_validator("cpu", "memory")(_quantity)


class StorageProfile(StrictModel):
    accessModes: list[AccessMode] = Field(description="Access modes the profile's storage class supports.")
    storageClassName: str | None = Field(None, description="Default storage class of the cluster.")


class KServeSupport(StrictModel):
    supported: bool = Field(description="Whether KServe (Istio, Knative, KServe) can run on this cluster.")
    reason: str = Field("", description="Why not, shown to the user.")


class ClusterProfile(StrictModel):
    name: str = Field(description="Profile name.")
    description: str = Field("", description="What cluster this describes.")
    kubernetesVersion: str = Field(description="Kubernetes version of the cluster (x.y).", pattern=r"^[0-9]+\.[0-9]+$")
    nodes: list[NodeGroup] = Field(min_length=1, description="Node groups.")
    systemReserved: Reserve = Field(default_factory=Reserve, description="Per-node reserve.")
    gpuResourceName: str = Field("nvidia.com/gpu", description="Extended resource name of a GPU.")
    gpuRuntimeClassName: str | None = Field(None, description="RuntimeClass GPU pods need (k3s: nvidia).")
    metricsCollectorRequests: Reserve = Field(
        default_factory=lambda: Reserve(cpu="50m", memory="10Mi"),
        description="Requests of the metrics-collector sidecar Katib injects into trial pods.",
    )
    storage: StorageProfile = Field(description="Storage the model PVC can use.")
    kserve: KServeSupport = Field(description="Whether server.mode=kserve can work here.")
    suggestionServices: dict[str, str] | None = Field(
        None,
        description="The cluster's katib-config: algorithm -> Katib suggestion service that serves it (hyperopt, "
        "optuna, goptuna, skopt, hyperband, pbt, enas, darts). Unset: Katib v0.19 standalone's mapping.",
    )

    @field_validator("kubernetesVersion")
    @classmethod
    def _chart_installs_there(cls, version: str) -> str:
        too_old = kubernetes_too_old(version)
        if too_old:
            raise ValueError(f"{version} is {too_old}")
        return version

    @field_validator("nodes")
    @classmethod
    def _cluster_size(cls, nodes: list[NodeGroup]) -> list[NodeGroup]:
        total = sum(group.count for group in nodes)
        if total > MAX_NODES:
            raise ValueError(
                f"{total} nodes in all, but Kubernetes supports clusters of up to {MAX_NODES}; describe the cluster "
                "the values are for"
            )
        return nodes
