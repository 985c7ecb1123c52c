"""A trial's GPU memory budget. When the NVIDIA device plugin time-slices a GPU, several trials share one
card's memory with nothing between them: one trial's allocator can take what the others need. So each
trainer caps its own framework's allocator to the budget the chart passes (trial.gpuMemoryMiB, as the
environment variable below or the --gpu-memory-mib flag), and a trial that needs more ends with one line
and a non-zero exit instead of a traceback. Standard library only: the frameworks are the trainers'."""

from __future__ import annotations

import os

ENV = "KATIB_NAS_GPU_MEMORY_MIB"
MIB = 2**20
EXIT_OUT_OF_MEMORY = 1  # a failed trial, as Katib counts it
# Longest part of the framework's own message kept in the one line (PyTorch's runs to several hundred
# characters of allocator statistics).
DETAIL_CHARS = 160


def budget(flag: int | None) -> int | None:
    """The budget in MiB: the --gpu-memory-mib flag, else the environment variable, else None (no cap).
    ValueError for an environment value that is not a positive whole number."""
    if flag is not None:
        return flag
    text = os.environ.get(ENV, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{ENV}={text!r} is not a positive whole number of MiB; set trial.gpuMemoryMiB to one")
    return int(text)


def fraction(budget_mib: int, total_bytes: int) -> float:
    """The share of the card for PyTorch's set_per_process_memory_fraction. ValueError when the budget is
    more than the whole card: the cap would be no cap."""
    if budget_mib * MIB > total_bytes:
        raise ValueError(
            f"--gpu-memory-mib={budget_mib} is more than this GPU's {total_bytes // MIB} MiB; lower trial.gpuMemoryMiB"
        )
    return budget_mib * MIB / total_bytes


def out_of_memory_line(budget_mib: int | None, exc: BaseException) -> str:
    """One line for a trial the GPU ran out of memory for: what happened, the budget, and the fix."""
    detail = " ".join(str(exc).split())
    if len(detail) > DETAIL_CHARS:
        detail = detail[: DETAIL_CHARS - 3] + "..."
    what = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    if budget_mib is None:
        return (
            f"out of GPU memory ({what}); lower batch-size or the model's size, and where trials share a GPU "
            "(device plugin time-slicing) set trial.gpuMemoryMiB so each keeps to its share"
        )
    return (
        f"out of GPU memory within this trial's budget of {budget_mib} MiB ({what}); lower batch-size or the "
        "model's size, or raise trial.gpuMemoryMiB (at most the card's memory divided by the device plugin's replicas)"
    )
