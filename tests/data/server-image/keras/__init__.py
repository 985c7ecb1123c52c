"""Stands in for the server image, which has no keras: importing it fails the way it would there."""

from __future__ import annotations

raise ImportError("keras is not in the server image (images/server/Dockerfile)")
