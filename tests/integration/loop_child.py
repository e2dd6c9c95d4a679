"""A `ControlLoop` in a process of its own, over real files, whose actuator a crash test controls.

tests/integration/test_crash_safety.py runs this script as a child process (`python loop_child.py ARGS`) and
kills it with SIGKILL in the middle of actuation, then runs it again on the same files. What it builds:

- the loop's own durable ports, for real: a `FileStateStore` (`--state`) and an `AuditFile` (`--audit`);
- a `FakeClock` (time is data, STYLE.md convention 3): each run starts it at `T0 + tick_s x saved ticks`, so tick
  k of the whole story (both runs) happens at `T0 + tick_s x (k - 1)` whichever process runs it, and `run()`
  advances it by a tick per sleep, so the ticks follow each other at once;
- a `FakeMetricsSource` reporting a constant demand (`--rate`) high enough to scale up over several rate-limited
  ticks;
- a `FakeFleet` (the platform) whose spec counts survive the process: loaded from `--fleet` at start and written
  there, atomically, after every `set_replicas` that returns. A call killed before that write never reached the
  platform, as a real API call killed before it was sent;
- an actuator around the fleet that, on tick `--block-tick`, writes `--marker` and then blocks inside
  `set_replicas`: before the fleet applies the call (`--block-when before`) or after the fleet applied it and its
  file was written, but before `set_replicas` returns and the loop records the outcome (`--block-when after`).
  Without `--block-tick` nothing blocks (the "continue" run).

It prints one JSON object a line on stdout: `{"start": ...}` after `ControlLoop.start()`, then one `{"tick": ...}`
per tick (the service's reason, target, desired and the actuations), so that the test can follow every tick, not
only those the audit trail records. It runs only as a script (`if __name__ == "__main__"`): importing it does
nothing but define things.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from autoscaler.audit import AuditFile
from autoscaler.catalog import load_catalog
from autoscaler.compiled import compile_scenario
from autoscaler.config import Mode, load_scenario
from autoscaler.loop import ControlLoop, TickReport
from autoscaler.perf import load_profile_book
from autoscaler.ports import ScaleRequest, ScaleResult
from autoscaler.shapes import parse_shape
from autoscaler.state_store import FileStateStore
from autoscaler.testing import FakeClock, FakeFleet, FakeMetricsSource

T0 = datetime(2000, 1, 1, tzinfo=UTC)
"""Tick 1 of a fresh story happens here (a fixed instant, as FakeClock's default)."""
BLOCK_S = 120.0
"""How long the blocked call sleeps. The test kills the child long before; the bound only makes sure that a child
whose test runner died does not live on for ever (it then exits with BLOCK_EXPIRED, recording nothing more)."""
BLOCK_EXPIRED = 4
NEVER_BLOCKED = 3
BLOCK_WHEN = ("before", "after")


def load_fleet(path: Path) -> FakeFleet:
    """The platform as the last run left it: `{service: {shape: spec}}`, each spec count running and ready."""
    fleet = FakeFleet()
    if path.exists():
        for service, shapes in json.loads(path.read_text(encoding="utf-8")).items():
            for shape, replicas in shapes.items():
                fleet.seed(service, parse_shape(shape), int(replicas))
    return fleet


def save_fleet(fleet: FakeFleet, services: list[str], path: Path) -> None:
    """Write the fleet's spec counts, atomically (a temporary file renamed over the old one), so that a kill at
    any point leaves the old platform or the new one, never half a file."""
    document = {name: {str(shape): n for shape, n in fleet.specs(name).items()} for name in services}
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(document, sort_keys=True), encoding="utf-8")
    os.replace(temporary, path)


class ControlledActuator:
    """`FakeFleet` as the `Actuator`, saving the fleet after each call, and blocking on one tick (see the module
    docstring). The tick of a call is read from its decision id (`<run id>-<tick, 6 digits>`)."""

    def __init__(
        self,
        fleet: FakeFleet,
        services: list[str],
        fleet_file: Path,
        marker: Path,
        block_tick: int | None,
        block_when: str,
    ) -> None:
        self.fleet = fleet
        self.services = services
        self.fleet_file = fleet_file
        self.marker = marker
        self.block_tick = block_tick
        self.block_when = block_when
        self.blocked = False

    def set_replicas(self, request: ScaleRequest) -> ScaleResult:
        tick = int(request.decision_id.rsplit("-", 1)[1])
        block = tick == self.block_tick
        previous = self.fleet.specs(request.service).get(request.shape)
        if block and self.block_when == "before":
            self._block(request, previous)  # the call never reaches the platform
        result = self.fleet.set_replicas(request)
        save_fleet(self.fleet, self.services, self.fleet_file)
        if block and self.block_when == "after":
            self._block(request, previous)  # the platform holds the new count; the loop never hears back
        return result

    def _block(self, request: ScaleRequest, previous: int | None) -> None:
        """Write the marker (the call, and the spec count the platform held before it), then sleep."""
        self.blocked = True
        note = {
            "decision_id": request.decision_id,
            "service": request.service,
            "shape": str(request.shape),
            "from": previous,
            "replicas": request.replicas,
            "when": self.block_when,
        }
        # The marker is written whole, then renamed into place: the test reads it as soon as it exists.
        temporary = self.marker.with_name(f".{self.marker.name}.tmp")
        temporary.write_text(json.dumps(note), encoding="utf-8")
        os.replace(temporary, self.marker)
        time.sleep(BLOCK_S)
        # Still alive: nobody killed us. Leave without recording an outcome, as a crash would.
        print(json.dumps({"error": f"blocked {BLOCK_S:g} s and was not killed"}), flush=True)
        os._exit(BLOCK_EXPIRED)


def tick_record(report: TickReport) -> dict[str, Any]:
    """One tick, as the line the child prints."""
    services: dict[str, Any] = {}
    if report.decision is not None:
        for result in report.decision.services:
            services[result.service] = {
                "reason": result.reason.value,
                "hold": result.hold,
                "target": {str(s): n for s, n in result.target.items()},
                "desired": {str(s): n for s, n in result.desired.items()},
            }
    return {
        "tick": report.number,
        "decision_id": report.decision_id,
        "at": report.at.isoformat(),
        "services": services,
        "actuations": [
            {"service": a.service, "shape": str(a.shape), "requested": a.requested, "applied": a.applied}
            for a in report.actuations
        ],
        "problems": list(report.problems),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scenario", type=Path, required=True)
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--audit", type=Path, required=True)
    parser.add_argument("--fleet", type=Path, required=True)
    parser.add_argument("--marker", type=Path, required=True)
    parser.add_argument("--run-id", required=True, help="prefix of this run's decision ids")
    parser.add_argument("--rate", type=float, required=True, help="the demand of every service, req/s")
    parser.add_argument("--ticks", type=int, required=True, help="the most ticks this run makes")
    parser.add_argument("--block-tick", type=int, default=None, help="block inside set_replicas on this tick")
    parser.add_argument("--block-when", choices=BLOCK_WHEN, default="before")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    catalog = load_catalog()
    book = load_profile_book(catalog)
    config = compile_scenario(load_scenario(args.scenario, catalog, book), catalog, book)
    services = [plan.service.name for plan in config.plans.values()]

    # The clock continues the story where the saved state left it: the next tick is one tick after the last one.
    store = FileStateStore(args.state)
    stored = store.load()
    tick_s = config.scenario.policy.tick_s
    clock = FakeClock(T0 + timedelta(seconds=tick_s * (0 if stored is None else stored.ticks)))
    metrics = FakeMetricsSource(clock)
    for name in services:
        metrics.set_rate(name, args.rate)
    fleet = load_fleet(args.fleet)
    actuator = ControlledActuator(fleet, services, args.fleet, args.marker, args.block_tick, args.block_when)
    audit = AuditFile(args.audit)

    loop = ControlLoop(
        config, clock=clock, metrics=metrics, inventory=fleet, actuator=actuator, store=store, audit=audit,
        mode=Mode.APPLY, run_id=args.run_id,
    )  # fmt: skip
    try:
        started = loop.start()
        print(json.dumps({"start": {"loaded": started.loaded, "ticks": loop.ticks}}), flush=True)
        loop.run(
            threading.Event(),
            on_tick=lambda report: print(json.dumps(tick_record(report)), flush=True),
            max_ticks=args.ticks,
        )
    finally:
        loop.close()
    if args.block_tick is not None and not actuator.blocked:
        print(json.dumps({"error": f"tick {args.block_tick} made no set_replicas call to block"}), flush=True)
        return NEVER_BLOCKED
    return 0


if __name__ == "__main__":
    sys.exit(main())
