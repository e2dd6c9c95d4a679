"""`fleetscale explain --audit FILE [--service S] [--since T]`: the audit trail told in sentences."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from autoscaler.audit import read_audit
from autoscaler.backtest_cli import parse_duration
from autoscaler.cli.common import fail, out
from autoscaler.errors import DataQualityError
from autoscaler.explain import explain_lines, notable, pair, summary


def _since(text: str, last: datetime) -> datetime:
    """An ISO 8601 time (UTC when it names no offset) or a duration back from the trail's last event (`1h`)."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        try:
            return last - timedelta(seconds=parse_duration(text))
        except ValueError:
            raise fail(
                f"--since {text}: not a time (2026-01-05T09:00:00Z) or a duration back from the end (1h)"
            ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def explain_command(
    audit: Annotated[Path, typer.Option(help="The audit trail (JSON Lines of CloudEvents; rotated files included).")],
    service: Annotated[str | None, typer.Option(help="Only this service's decisions.")] = None,
    since: Annotated[
        str | None, typer.Option(help="From this time on (ISO 8601, UTC unless it says), or the last DURATION (1h).")
    ] = None,
    all_decisions: Annotated[
        bool, typer.Option("--all", help="Also the steady decisions (recorded when their reason changed).")
    ] = False,
) -> None:
    """Why each change happened and what it cost, from the audit trail."""
    if not audit.exists():
        raise fail(f"--audit {audit}: no such file")
    try:
        events = list(read_audit(audit))
    except DataQualityError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"--audit {audit}: {exc.strerror or exc}") from None
    start = None
    if since is not None and events:
        start = _since(since, max(e.time for e in events))
    items = pair(events, service, start)
    for line in explain_lines(i for i in items if all_decisions or notable(i)):
        out.print(line, markup=False)
    out.print(summary(items), markup=False)
