"""The local runner: the Experiment a values file describes, run on this machine with no cluster."""

from __future__ import annotations

# Optuna's multi-objective samplers (the objective and the serving p99 latency, `katib-nas run --local
# --multi-objective NAME`): local only, Katib has no multi-objective algorithm. Here so the command line
# offers them without importing Optuna.
MULTI_OBJECTIVE = ("nsga2", "tpe")
