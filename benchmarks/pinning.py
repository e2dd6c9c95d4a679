"""Pinning a benchmark to one core, so that its timings are of one core on this machine (shared by the scripts)."""

from __future__ import annotations

import os


def pin_to_one_core() -> str:
    """Pin this process to CPU 0 where the platform allows; say what happened, for the benchmark's first line."""
    setaffinity = getattr(os, "sched_setaffinity", None)
    if setaffinity is None:
        return "not pinned: os.sched_setaffinity is unavailable on this platform"
    try:
        setaffinity(0, {0})
    except OSError as exc:
        return f"not pinned: sched_setaffinity failed ({exc})"
    return "pinned to CPU 0 (os.sched_setaffinity)"
