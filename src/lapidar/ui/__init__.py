"""`lapidar ui`: the local web app (work in progress: workspace and job queue)."""

from __future__ import annotations

__all__: list[str] = []
