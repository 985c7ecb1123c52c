"""The katib-nas server image: best-model promotion (and, to come, the inference server and batch job)."""

from __future__ import annotations
