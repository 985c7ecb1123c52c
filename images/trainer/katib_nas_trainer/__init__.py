"""The katib-nas PyTorch trial program: trains one architecture from Katib's parameters and writes its
trial record (the contract in katib_nas_contract). The entry point is `katib_nas_trainer.cli:main`."""

from __future__ import annotations
