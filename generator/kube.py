"""The kubernetes client for the commands that read or prepare the cluster (profile detect, report
--cluster, install's namespace check): one place that loads the kubeconfig and turns failures into
one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import ClusterError

# Katib's Experiment webhook refuses every Experiment in a namespace without this label
# (pkg/webhook/v1beta1/experiment/validation_webhook.go), and injects the collector sidecar only there.
INJECTION_LABEL = ("katib.kubeflow.org/metrics-collector-injection", "enabled")


def api_client(kubeconfig: str | Path | None, context: str | None) -> Any:
    from kubernetes import config
    from kubernetes.config.config_exception import ConfigException

    try:
        return config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig) if kubeconfig else None, context=context
        )
    except (ConfigException, FileNotFoundError) as exc:
        raise ClusterError(f"cannot load a kubeconfig ({exc}); set KUBECONFIG or pass --kubeconfig") from None


def cluster_error(exc: Exception) -> ClusterError:
    """The one line for a failed API call: refused (an ApiException), or the cluster unreachable."""
    from kubernetes.client import ApiException

    if isinstance(exc, ApiException):
        return ClusterError(
            f"the cluster refused the request ({exc.status} {exc.reason}); check the kubeconfig user's permissions"
        )
    first = (str(exc).splitlines() or [""])[0]
    return ClusterError(f"cannot reach the cluster ({first}); check KUBECONFIG / kubectl config current-context")


def prepare_namespace(name: str, *, create: bool, kubeconfig: str | Path | None, context: str | None) -> str:
    """Make sure Katib will admit an Experiment in namespace `name`: create it with the injection
    label if it is missing (unless `create` is false), refuse if it exists without the label.
    Returns what was done, for the progress line."""
    from kubernetes import client

    key, value = INJECTION_LABEL
    core = client.CoreV1Api(api_client(kubeconfig, context))
    try:
        found = core.read_namespace(name)
    except client.ApiException as exc:
        if exc.status != 404:
            raise cluster_error(exc) from None
        found = None
    except Exception as exc:
        raise cluster_error(exc) from None
    if found is not None:
        labels = (found.metadata.labels if found.metadata else None) or {}
        if labels.get(key) == value:
            return f"namespace {name} is labelled for Katib"
        raise ClusterError(
            f"namespace {name} lacks the label {key}={value}, without which Katib's webhook refuses every "
            f"Experiment; run `kubectl label namespace {name} {key}={value}` and install again"
        )
    if not create:
        return f"namespace {name} would be created with the label {key}={value}"
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={key: value})))
    except Exception as exc:
        raise cluster_error(exc) from None
    return f"namespace {name} created with the label {key}={value}"


def read_experiment(name: str, namespace: str, *, kubeconfig: str | Path | None, context: str | None) -> Any:
    """The live Experiment (its status included) as a dict, or None when it does not exist."""
    from kubernetes import client

    custom = client.CustomObjectsApi(api_client(kubeconfig, context))
    try:
        return custom.get_namespaced_custom_object("kubeflow.org", "v1beta1", namespace, "experiments", name)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise cluster_error(exc) from None
    except Exception as exc:
        raise cluster_error(exc) from None
