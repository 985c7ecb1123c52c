"""Checks that the parts of a release read the same data: the batch Job scores the data set the
trials train on, with the best model they made."""

from __future__ import annotations

from collections.abc import Iterator

from katib_nas_contract.datasets import IDX_SOURCES

from .models import ChartValues

Finding = tuple[str, str, bool]  # value path, message, warning

NAMED = ("digits", *IDX_SOURCES)  # the data sets both the trainers and the batch Job load by name


def check_data(values: ChartValues) -> Iterator[Finding]:
    trained, scored = values.trial.dataset, values.batchInference.dataset
    if values.batchInference.enabled and trained in NAMED and scored in NAMED and scored != trained:
        yield (
            "batchInference.dataset",
            f"{scored}, but the trials train on {trained} (trial.dataset): the batch Job would score {scored} "
            f"samples with a model made for {trained}; set batchInference.dataset: {trained}",
            False,
        )
