"""What an upgrade may change. Katib's webhook lets a running Experiment change only
spec.parallelTrialCount, spec.maxTrialCount and spec.maxFailedTrialCount
(pkg/webhook/v1beta1/experiment/validator); `katib-nas install` compares the Experiment the release
deployed with the one it is about to render and explains any other change before helm runs."""

from __future__ import annotations

from typing import Any

EDITABLE = ("parallelTrialCount", "maxTrialCount", "maxFailedTrialCount")
# Experiment spec field -> the values that render it.
VALUE_PATHS = {
    "objective": "experiment.objective",
    "algorithm": "experiment.algorithm",
    "earlyStopping": "experiment.earlyStopping",
    "parameters": "experiment.parameters",
    "nasConfig": "experiment.nasConfig",
    "resumePolicy": "experiment.resumePolicy",
    "metricsCollectorSpec": "experiment.metricsCollector",
    "trialTemplate": "trial",
}


def frozen_changes(deployed: dict[str, Any], wanted: dict[str, Any]) -> list[tuple[str, str]]:
    """(values path, message) for every Experiment spec field that differs and Katib will not update."""
    before, after = deployed.get("spec", {}), wanted.get("spec", {})
    problems = []
    for key in sorted(set(before) | set(after)):
        if key in EDITABLE or before.get(key) == after.get(key):
            continue
        problems.append(
            (
                VALUE_PATHS.get(key, f"experiment ({key})"),
                f"differs from the running Experiment {deployed['metadata']['name']}, and Katib lets a running "
                f"Experiment change only {', '.join(EDITABLE)}; uninstall the release first, or set "
                "experiment.name to start a new Experiment",
            )
        )
    return problems
