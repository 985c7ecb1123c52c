"""Stands in for the server image, which has no tensorflow: importing it fails the way it would there."""

from __future__ import annotations

raise ImportError("tensorflow is not in the server image (images/server/Dockerfile)")
