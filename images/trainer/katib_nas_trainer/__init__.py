"""The katib-nas trial program: trains one architecture from Katib's parameters and writes its trial record.

The entry point is `katib_nas_trainer.cli:main`. Nothing is imported here, so the server image can
use the torch-free `katib_nas_trainer.datasets` without PyTorch installed.
"""

from __future__ import annotations
