"""Tell Katib that a katib-nas rule stopped this trial, the way Katib's own early stopping does.

Katib's file metrics collector, when its stop rules fire, calls the early-stopping service's
SetTrialStatus (cmd/metricscollector/v1beta1/file-metricscollector), which appends an
`EarlyStopped` condition to the Trial's status through the status subresource
(pkg/earlystopping/v1beta1/medianstop/service.py). Katib's trial controller then leaves the trial
EarlyStopped when its Job succeeds instead of marking it Succeeded, reads its metrics as usual
(trial_controller_util.go UpdateTrialStatusCondition), and the experiment controller counts it in
`trialsEarlyStopped`. The median and successive-halving rules run inside the trainer, so the
trainer writes that condition itself, before it exits and while the collector sidecar still holds
the pod: the Job cannot succeed first.

The trial pod runs under a ServiceAccount allowed only `get` on Trials and `update` on
`trials/status` in the release namespace (the chart's trial-role.yaml). Standard library only.
"""

from __future__ import annotations

import json
import os
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .record import METRICS, TrialRecord

# Set by the chart on trial pods whose ServiceAccount may mark their Trial.
ENABLE_ENV = "KATIB_NAS_MARK_EARLY_STOPPED"
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# The rules the trainer applies itself; Katib's medianstop marks its trials through its own service.
TRAINER_RULES = ("median", "successive-halving")
# Katib's condition, as its early-stopping service writes it (type, status and reason are what
# Trial.IsEarlyStopped and the Katib UI read).
CONDITION_TYPE = "EarlyStopped"
CONDITION_REASON = "TrialEarlyStopped"
ATTEMPTS = 5  # conflicts with Katib's trial controller, which updates the same status


@dataclass(frozen=True)
class Cluster:
    """Where the Kubernetes API is and who the pod is: the in-cluster ServiceAccount by default."""

    server: str
    token: str
    namespace: str
    ca_file: Path | None

    @classmethod
    def in_cluster(cls, account_dir: Path = SERVICE_ACCOUNT_DIR) -> Cluster:
        host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
        host = f"[{host}]" if ":" in host else host
        return cls(
            server=f"https://{host}:{port}",
            token=(account_dir / "token").read_text().strip(),
            namespace=(account_dir / "namespace").read_text().strip(),
            ca_file=account_dir / "ca.crt",
        )


def should_mark(metrics: dict[str, Any]) -> bool:
    """Whether a finished trial's metrics say one of the trainer's cross-trial rules stopped it
    (a patience stop is the trainer's own convergence, a complete run)."""
    return metrics.get("ended") == "early_stopped" and metrics.get("stopped_by") in TRAINER_RULES


def early_stopped_condition(rule: str, now: float | None = None) -> dict[str, str]:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    return {
        "type": CONDITION_TYPE,
        "status": "True",
        "reason": CONDITION_REASON,
        "message": f"Trial is early stopped by the katib-nas {rule} rule",
        "lastUpdateTime": stamp,
        "lastTransitionTime": stamp,
    }


def _call(cluster: Cluster, method: str, path: str, body: Any = None) -> Any:
    context = ssl.create_default_context(cafile=str(cluster.ca_file) if cluster.ca_file else None)
    request = urllib.request.Request(
        cluster.server + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {cluster.token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, context=context, timeout=10) as answer:
        return json.loads(answer.read())


def mark_early_stopped(trial: str, rule: str, cluster: Cluster) -> dict[str, Any]:
    """Append the EarlyStopped condition to Trial `trial` (read, append, update with the read
    resourceVersion, again on a conflict). Returns the updated Trial."""
    path = f"/apis/kubeflow.org/v1beta1/namespaces/{cluster.namespace}/trials/{trial}"
    for attempt in range(ATTEMPTS):
        found: dict[str, Any] = _call(cluster, "GET", path)
        status = found.setdefault("status", {})
        conditions = status.setdefault("conditions", [])
        if any(c.get("type") == CONDITION_TYPE and c.get("status") == "True" for c in conditions):
            return found
        conditions.append(early_stopped_condition(rule))
        try:
            updated: dict[str, Any] = _call(cluster, "PUT", f"{path}/status", found)
            return updated
        except urllib.error.HTTPError as exc:
            if exc.code != 409 or attempt == ATTEMPTS - 1:
                raise
        time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def report_early_stop(record: TrialRecord) -> str | None:
    """A trainer's last step after a finished trial: mark its Trial (the record's directory name)
    when the chart asked for it and a trainer rule stopped the trial. Returns the line for the
    trainer's stderr. A failure does not fail the trial: its metrics still reach Katib, which then
    records it as Succeeded."""
    metrics: dict[str, Any] = record.read(METRICS, {})
    trial = record.root.name
    if os.environ.get(ENABLE_ENV) != "true" or not should_mark(metrics):
        return None
    rule = str(metrics["stopped_by"])
    try:
        mark_early_stopped(trial, rule, Cluster.in_cluster())
    except (OSError, KeyError, ValueError) as exc:  # urllib's errors are OSErrors
        return f"could not mark Trial {trial} EarlyStopped in Katib ({exc}); Katib will count it as Succeeded"
    return f"marked Trial {trial} EarlyStopped in Katib ({rule} rule)"
