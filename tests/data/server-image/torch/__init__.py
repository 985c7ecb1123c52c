"""Stands in for the server image, which has no torch: importing it fails the way it would there."""

from __future__ import annotations

raise ImportError("torch is not in the server image (images/server/Dockerfile)")
