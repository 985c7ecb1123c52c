"""The image each trial ran, added to its record by the extraction pod (record.IMAGE).

A container cannot read its own image digest: the downward API has no imageID, and only the pod's
status says which image the kubelet pulled for a tag. The trainer records its pod's name in its
provenance; the extraction pod, which already talks to the API, gets that pod while the trial runs
(the chart's Role: get on pods in the release namespace, nothing more) and writes image.json beside.
A trial whose pod is gone before it was read (a Job Katib deleted at once) says so in image.json.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from katib_nas_contract.files import read_json_or, write_json
from katib_nas_contract.provenance import image_doc
from katib_nas_contract.record import IMAGE, PROVENANCE, trial_dirs

CONTAINER = "trainer"  # the trial template's primaryContainerName
GONE = "the pod was gone before the extraction pod read it; only the image reference in provenance.json is known"


class PodReadError(Exception):
    """The API refused or failed a pod read (not a 404); `forbidden` for a 403."""

    def __init__(self, message: str, forbidden: bool = False) -> None:
        super().__init__(message)
        self.forbidden = forbidden


class ImageRecorder:
    """Called once per poll of the watch loop; returns the lines to log."""

    def __init__(
        self,
        experiment_dir: Path,
        read_pod: Callable[[str], dict[str, Any] | None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.experiment_dir, self.read_pod, self.clock = experiment_dir, read_pod, clock
        self.disabled = False

    def pending(self) -> list[tuple[Path, str]]:
        """(record, pod) for each record whose provenance names a pod that image.json does not describe yet."""
        out = []
        for record in trial_dirs(self.experiment_dir):
            provenance = read_json_or(record / PROVENANCE, None)
            image = provenance.get("image") if isinstance(provenance, dict) else None
            pod = image.get("pod") if isinstance(image, dict) else None
            known = read_json_or(record / IMAGE, None)
            if isinstance(pod, str) and pod and not (isinstance(known, dict) and known.get("pod") == pod):
                out.append((record, pod))
        return out

    def __call__(self) -> list[str]:
        if self.disabled:
            return []
        lines = []
        for record, pod_name in self.pending():
            try:
                pod = self.read_pod(pod_name)
            except PodReadError as exc:
                if exc.forbidden:  # no Role for it (rbac.create=false): say so once, then stop asking
                    self.disabled = True
                    return [f"cannot read trial pods ({exc}); image digests are not recorded: allow get on pods"]
                return [f"cannot read pod {pod_name} ({exc}); trying again at the next poll"]
            if pod is None:
                doc = {**image_doc({"metadata": {"name": pod_name}}, CONTAINER, self.clock()), "note": GONE}
            else:
                doc = image_doc(pod, CONTAINER, self.clock())
                if doc["imageID"] is None:
                    continue  # the container has not started yet
            write_json(record / IMAGE, doc)
            lines.append(f"{record.name}: ran image {doc['imageID'] or 'unknown (pod gone)'}")
        return lines


def kube_read_pod(namespace: str) -> Callable[[str], dict[str, Any] | None]:
    """A pod of the namespace as JSON (the API's field names), None when it does not exist."""
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    config.load_incluster_config()  # type: ignore[no-untyped-call]
    api = client.CoreV1Api()

    def read(name: str) -> dict[str, Any] | None:
        try:
            pod = api.read_namespaced_pod(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise PodReadError(f"{exc.status} {exc.reason}", forbidden=exc.status == 403) from None
        except (OSError, HTTPError) as exc:  # the API server unreachable
            raise PodReadError(str(exc)) from None
        doc: dict[str, Any] = api.api_client.sanitize_for_serialization(pod)
        return doc

    return read
