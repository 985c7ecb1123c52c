"""Command line of the PyTorch trial program. Hyper-parameters arrive as flags named after the Katib
parameters (the contract's table, katib_nas_contract.args); a bad flag or missing data is one clear
line on stderr and exit 2."""

from __future__ import annotations

from katib_nas_contract import trainer_cli

from .train import configure, make_trainer, out_of_memory

PROG = "katib-nas-trainer"
FRAMEWORK = trainer_cli.Framework(PROG, __doc__, configure, make_trainer, out_of_memory)


def main(argv: list[str] | None = None) -> int:
    return trainer_cli.main(FRAMEWORK, argv)
