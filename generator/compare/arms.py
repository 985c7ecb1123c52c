"""The arms of a comparison: a Katib search algorithm, optionally with an early-stopping rule, and
the values file each arm runs for one seed (the same search space, trials and budget as the file)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from katib_nas_contract.stopping import RULES

from ..errors import CompareError
from ..local.samplers import LOCAL
from ..suggestion_services import KATIB_V019_SERVICES, SETTINGS

# The four: three search algorithms as Katib serves them, and the project's own successive
# halving (random suggestions, trials stopped at its rungs).
DEFAULT_ARMS = "random,tpe,bayesianoptimization,random+successive-halving"


@dataclass(frozen=True)
class Arm:
    algorithm: str
    stopping: str | None = None  # None: the values file's early stopping as it is

    @property
    def label(self) -> str:
        return self.algorithm if self.stopping is None else f"{self.algorithm}+{self.stopping}"


def parse_arms(text: str) -> list[Arm]:
    """`ALGORITHM[+RULE],...`; a rule alone means random suggestions stopped by that rule."""
    arms: list[Arm] = []
    for word in (w.strip() for w in text.split(",")):
        algorithm, _, stopping = word.partition("+")
        if not stopping and algorithm in RULES and algorithm != "none":
            algorithm, stopping = "random", algorithm
        if algorithm not in LOCAL:
            raise CompareError(
                f"--algorithms: {word!r} is not an algorithm the local runner runs; use ALGORITHM[+RULE] with "
                f"ALGORITHM one of {', '.join(LOCAL)} and RULE one of {', '.join(RULES)}"
            )
        if stopping and stopping not in RULES:
            raise CompareError(
                f"--algorithms: {word!r}: {stopping!r} is not an early-stopping rule the trainer applies; "
                f"use one of {', '.join(RULES)}"
            )
        arm = Arm(algorithm, stopping or None)
        if arm in arms:
            raise CompareError(f"--algorithms: {arm.label} is named twice; name each arm once")
        arms.append(arm)
    return arms


def takes_seed(algorithm: str, services: dict[str, str] | None) -> bool:
    """Whether the Katib service behind `algorithm` reads `random_state` (goptuna's sobol reads none)."""
    service = (services or KATIB_V019_SERVICES).get(algorithm, "")
    return "random_state" in SETTINGS.get((service, algorithm), {})


def arm_values(data: dict[str, Any], arm: Arm, seed: int, services: dict[str, str] | None) -> dict[str, Any]:
    """The values file as this arm runs it with this seed: the algorithm (its settings kept only when
    the file names the same one), `random_state` = seed where the service takes one, the rule, and
    the trainer's `--seed` (initialisation and shuffling), so seeds replicate the whole search."""
    values = copy.deepcopy(data)
    experiment = values.setdefault("experiment", {})
    algorithm = experiment.get("algorithm") or {}
    settings = list(algorithm.get("algorithmSettings") or []) if algorithm.get("algorithmName") == arm.algorithm else []
    settings = [s for s in settings if not (isinstance(s, dict) and s.get("name") == "random_state")]
    if takes_seed(arm.algorithm, services):
        settings.append({"name": "random_state", "value": str(seed)})
    experiment["algorithm"] = {"algorithmName": arm.algorithm, "algorithmSettings": settings}
    if arm.stopping == "none":
        experiment["earlyStopping"] = {**(experiment.get("earlyStopping") or {}), "enabled": False}
    elif arm.stopping is not None:
        experiment["earlyStopping"] = {
            **(experiment.get("earlyStopping") or {}),
            "enabled": True,
            "algorithmName": arm.stopping,
        }
    trial = values.setdefault("trial", {})
    trial["extraArgs"] = [*(trial.get("extraArgs") or []), f"--seed={seed}"]
    return values
