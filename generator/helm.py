"""The only module that talks to pyhelm3. Sync functions around its async API, called at the CLI edge.

One values dict (the validated file merged over nothing else) goes to helm, so Helm's own
list-replacing merge with the chart defaults applies, not pyhelm3's `mergeconcat`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pyhelm3
import pyhelm3.errors
import yaml

from .chart_files import CHART_DIR, REPO_ROOT
from .errors import HelmError

KATIB_API = "kubeflow.org/v1beta1/Experiment"
KSERVE_API = "serving.kserve.io/v1beta1/InferenceService"
_FAIL_LINE = re.compile(r"katib-nas: [^\n]*")
_MULTI_ERROR = re.compile(r"(Error: (?:[A-Z ]+: )?)\d+ errors? occurred:")
# pyhelm3 logs every failed command at WARNING; the CLI reports the failure itself, once.
logging.getLogger("pyhelm3").addHandler(logging.NullHandler())


def helm_executable() -> str:
    """helm from $HELM, the repo's .tools/bin (ci/install-tools.sh), or PATH."""
    candidates = [os.environ.get("HELM", ""), str(REPO_ROOT / ".tools" / "bin" / "helm"), shutil.which("helm") or ""]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise HelmError(
        "helm is not installed; run `bash ci/install-tools.sh` (builds the pinned helm into .tools/bin) "
        "or put helm >= 3.19 on PATH"
    )


def _first_error(stderr: str) -> str:
    """helm's error as one line. When helm gathers several (hashicorp/go-multierror: `Error: 2 errors
    occurred:` then a `* ...` line each), the header says nothing: the causes are the lines below it."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if not lines:
        return "helm failed"
    header = _MULTI_ERROR.fullmatch(lines[0])
    causes = [line[1:].strip() for line in lines[1:] if line.startswith("*")]
    if header and causes:
        return f"{header.group(1)}{'; '.join(causes)}"
    return lines[0]


def _wrap(exc: Exception) -> HelmError:
    raw = getattr(exc, "stderr", None)
    stderr = raw.decode(errors="replace") if isinstance(raw, bytes) else str(exc)
    fail = _FAIL_LINE.search(stderr)
    if fail:
        return HelmError(fail.group(0).strip(), stderr)
    first = _first_error(stderr)
    if isinstance(exc, pyhelm3.errors.ConnectionError) or "kubernetes cluster unreachable" in stderr.lower():
        return HelmError(
            f"cannot reach the cluster ({first}); check KUBECONFIG / kubectl config current-context", stderr
        )
    return HelmError(f"helm: {first}", stderr)


def _command(kubeconfig: Path | None = None, kubecontext: str | None = None) -> Any:
    return pyhelm3.Command(executable=helm_executable(), kubeconfig=kubeconfig, kubecontext=kubecontext)


def template(
    values: dict[str, Any],
    *,
    release: str,
    namespace: str,
    kube_version: str,
    api_versions: list[str],
    chart: Path = CHART_DIR,
) -> list[dict[str, Any]]:
    """`helm template` with an explicit Kubernetes version and API set, so the chart's CRD checks and
    kubeVersion constraint see the target cluster instead of Helm's offline defaults."""
    command = _command()
    args: list[Any] = [
        "template",
        release,
        str(chart),
        "--namespace",
        namespace,
        "--kube-version",
        kube_version,
        "--values",
        "-",
    ]
    for api in api_versions:
        args += ["--api-versions", api]

    async def run() -> bytes:
        out: bytes = await command.run(args, json.dumps(values).encode())
        return out

    try:
        out = asyncio.run(run())
    except pyhelm3.errors.Error as exc:
        raise _wrap(exc) from None
    return [doc for doc in yaml.safe_load_all(out) if doc]


def install(
    values: dict[str, Any],
    *,
    release: str,
    namespace: str,
    dry_run: bool = False,
    kubeconfig: Path | None = None,
    kubecontext: str | None = None,
    timeout: str = "5m",
    chart: Path = CHART_DIR,
) -> dict[str, Any]:
    """`helm upgrade --install` without --wait: the extraction, batch and server workloads wait in their
    pods for the search to produce a model, which can take hours."""
    client = pyhelm3.Client(executable=helm_executable(), kubeconfig=kubeconfig, kubecontext=kubecontext)

    async def run() -> dict[str, Any]:
        loaded = await client.get_chart(chart)
        revision = await client.install_or_upgrade_release(
            release,
            loaded,
            values,
            namespace=namespace,
            create_namespace=True,
            dry_run=dry_run,
            wait=False,
            atomic=False,
            timeout=timeout,
        )
        return {
            "release": revision.release.name,
            "namespace": revision.release.namespace,
            "revision": revision.revision,
            "status": str(revision.status),
        }

    try:
        return asyncio.run(run())
    except pyhelm3.errors.Error as exc:
        raise _wrap(exc) from None


def deployed_manifest(
    release: str, *, namespace: str, kubeconfig: Path | None = None, kubecontext: str | None = None
) -> list[dict[str, Any]] | None:
    """The objects the release's current revision rendered (`helm get manifest`), or None when the
    release is not installed."""
    command = _command(kubeconfig, kubecontext)

    async def run() -> bytes:
        out: bytes = await command.run(["get", "manifest", release, "--namespace", namespace])
        return out

    try:
        out = asyncio.run(run())
    except pyhelm3.errors.ReleaseNotFoundError:
        return None
    except pyhelm3.errors.Error as exc:
        raise _wrap(exc) from None
    return [doc for doc in yaml.safe_load_all(out) if doc]
