"""The local runner: the Experiment a values file describes, run on this machine with no cluster."""

from __future__ import annotations
