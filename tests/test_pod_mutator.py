"""Katib's own pod mutator (pkg/webhook/v1beta1/pod, through ci/katibcheck) applied to the trial pods
the chart renders: the metrics collector Katib adds must fit the pod the chart built."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import PROFILE_VALUES, ROOT, by_kind, helm_template
from .katib_harness import mutate_pod


def _experiment(values_file: Any) -> dict[str, Any]:
    (experiment,) = by_kind(helm_template(values_file), "Experiment")
    return experiment


@pytest.mark.parametrize("values_file", PROFILE_VALUES, ids=lambda p: p.name)
def test_katib_adds_its_collector_to_every_shipped_trial_pod(values_file: Any) -> None:
    pod = mutate_pod(_experiment(values_file))
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    assert "metrics-logger-and-collector" in containers
    trainer = containers["trainer"]
    # StdOut: the trainer's output goes to the collector's file through Katib's `sh -c` wrapper.
    assert trainer["command"] == ["sh", "-c"]
    assert "1>/var/log/katib/metrics.log 2>&1" in trainer["args"][0]
    mounts = [m["mountPath"] for m in trainer["volumeMounts"]]
    assert len(mounts) == len(set(mounts)), mounts


def test_the_harness_reports_katibs_refusal() -> None:
    experiment = _experiment(ROOT / "values" / "microk8s.yaml")
    experiment["spec"]["trialTemplate"]["primaryContainerName"] = "absent"
    from .katib_harness import KatibRefused

    with pytest.raises(KatibRefused, match="primary container"):
        mutate_pod(experiment)
