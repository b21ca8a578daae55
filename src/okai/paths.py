"""Where okai keeps its state: `.okai/` in the working directory, or `OKAI_HOME`."""

from __future__ import annotations

import os
from pathlib import Path


def state_dir() -> Path:
    """The root of okai's local state (dev stack, caches, journals, deployments)."""
    return Path(os.environ.get("OKAI_HOME") or Path.cwd() / ".okai")


def dev_dir() -> Path:
    return state_dir() / "dev"


def cache_dir() -> Path:
    return state_dir() / "cache"
