"""The clocks of the shell: the system's, and one that runs a replay K times faster. The only module of the core and
the shell that reads the wall clock (ruff's TID251 bans it everywhere else); `FakeClock` is in `testing.py`.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

from autoscaler.model import require_aware
from autoscaler.ports import Clock


class SystemClock:
    """Real time: `now()` in UTC, `monotonic()` from the OS, and a sleep that a stop request cuts short."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float, wakeup: threading.Event | None = None) -> bool:
        if wakeup is None:
            if seconds > 0:
                time.sleep(seconds)
            return False
        # Event.wait returns as soon as the event is set: a SIGTERM handler that sets it ends the wait at once.
        return wakeup.wait(max(0.0, seconds))


class ScaledClock:
    """A clock that starts at `start` and runs `speed` times faster than `real` (a replay at `--speed K`): a tick of
    15 s sleeps 15 / K real seconds, and `now()` moves 15 s.

    Worked example: speed 30, start 12:00:00. After 2 real seconds `now()` is 12:01:00; `sleep(15)` takes 0.5 s.
    """

    def __init__(self, start: datetime, speed: float, real: Clock | None = None) -> None:
        if not speed > 0:
            raise ValueError(f"speed ({speed}) must be > 0")
        self.start = require_aware(start, "ScaledClock(start)")
        self.speed = speed
        self.real = real or SystemClock()
        self._origin = self.real.monotonic()

    def monotonic(self) -> float:
        return (self.real.monotonic() - self._origin) * self.speed

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.monotonic())

    def sleep(self, seconds: float, wakeup: threading.Event | None = None) -> bool:
        return self.real.sleep(seconds / self.speed, wakeup)
