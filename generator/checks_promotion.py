"""Checks of `promotion`: a serving budget is applied to the trial records, so the records must hold
what it compares."""

from __future__ import annotations

from collections.abc import Iterator

from katib_nas_contract.best import RECORD_OBJECTIVES
from katib_nas_contract.flags import trainer_for_image
from katib_nas_contract.record import SERVING_COST

from .models import ChartValues

Finding = tuple[str, str, bool]  # value path, message, warning


def check_promotion(values: ChartValues) -> Iterator[Finding]:
    budget = values.promotion.budget
    if budget.latencyP99Ms is None and budget.modelBytes is None:
        return
    metric = values.experiment.objective.objectiveMetricName
    if metric not in RECORD_OBJECTIVES:
        yield (
            "promotion.budget",
            f"a budget promotes from the trial records, whose metrics.json holds {' and '.join(RECORD_OBJECTIVES)}, "
            f"not the objective {metric!r}; use objectiveMetricName {' or '.join(RECORD_OBJECTIVES)}, or unset the "
            "budget",
            False,
        )
    image = values.trial.image_repository()
    if trainer_for_image(image) is None:
        yield (
            "promotion.budget",
            f"the katib-nas trainers measure each model's serving cost into {SERVING_COST}; {image} must write it "
            "too (katib_nas_contract.serving_cost.write), or every trial is ruled out",
            True,
        )
