"""The what-if report: PNG plots and a Markdown summary in one directory.

- `demand_capacity.png`: per policy, the request rate of each tick window against the capacity the ready replicas
  had (each ready replica counts its shape's capacity at SLO for the trace's token mix), so where a policy was
  short or idle shows at a glance;
- `latency_cdf.png`: the distribution of TTFT and TPOT per policy, with the SLO marked;
- `cost.png`: cost per policy, with its SLO attainment;
- `summary.md`: the comparison table, the trace and the settings.
matplotlib draws off screen (the Agg backend); nothing is shown.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from autoscaler.capacity import LatencySlo, capacity_at_slo
from autoscaler.compiled import CompiledScenario
from autoscaler.shapes import Shape
from autoscaler.sim.compare import Comparison
from autoscaler.sim.fleet import ReplayResult
from autoscaler.sim.policies import trace_mix


def _capacity_series(
    result: ReplayResult, config: CompiledScenario, service: str, times: Sequence[float]
) -> list[float]:
    """Capacity at SLO (req/s) of the ready replicas of `service` at each of `times`."""
    plan = config.plans[service]
    slo = LatencySlo(plan.service.slo.ttft_p95_s, plan.service.slo.tpot_p95_s, plan.service.slo.quantile)
    mix = trace_mix(result.requests[service])
    per_shape: dict[Shape, float] = {}
    events: list[tuple[float, float]] = []
    for span in result.replica_spans:
        if span.service != service or span.end_s <= span.ready_s:
            continue
        if span.shape not in per_shape:
            candidate = plan.candidate(span.shape)
            profile = candidate.profile if candidate is not None else None
            per_shape[span.shape] = capacity_at_slo(profile, slo, mix).rps if profile is not None else 0.0
        events.append((span.ready_s, per_shape[span.shape]))
        events.append((span.end_s, -per_shape[span.shape]))
    events.sort()
    out = []
    level = 0.0
    k = 0
    for t in times:
        while k < len(events) and events[k][0] <= t:
            level += events[k][1]
            k += 1
        out.append(max(0.0, level))
    return out


def _rates(result: ReplayResult, service: str, step_s: float, end_s: float) -> tuple[list[float], list[float]]:
    bins = max(1, math.ceil(end_s / step_s))
    counts = [0] * bins
    for t in result.requests[service].arrival_s:
        counts[min(bins - 1, int(t // step_s))] += 1
    return [i * step_s for i in range(bins)], [c / step_s for c in counts]


def write_report(
    directory: Path,
    comparison: Comparison,
    config: CompiledScenario,
    table: Sequence[Sequence[str]],
    columns: Sequence[str],
    header: Mapping[str, str],
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    names = list(comparison.results)
    any_result = next(iter(comparison.results.values()))
    services = list(any_result.requests)
    step = config.scenario.policy.tick_s
    end = max(r.end_s for r in comparison.results.values())

    fig, axes = plt.subplots(len(names), 1, figsize=(11, 2.2 * len(names)), sharex=True, squeeze=False)
    for ax, name in zip(axes[:, 0], names, strict=True):
        result = comparison.results[name]
        for service in services:
            times, rates = _rates(result, service, step, end)
            capacity = _capacity_series(result, config, service, times)
            minutes = [t / 60 for t in times]
            ax.plot(minutes, rates, lw=0.8, label=f"{service} demand")
            ax.plot(minutes, capacity, lw=1.2, drawstyle="steps-post", label=f"{service} capacity at SLO")
        ax.set_title(name, fontsize=9, loc="left")
        ax.set_ylabel("req/s")
    axes[0, 0].legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("minutes")
    fig.tight_layout()
    path = directory / "demand_capacity.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name in names:
        result = comparison.results[name]
        for ax, values in ((left, result.ttft_s), (right, result.tpot_s)):
            data = sorted(v for service in services for v in values[service] if not math.isnan(v) and v > 0)
            if data:
                ax.plot(data, [(i + 1) / len(data) for i in range(len(data))], lw=1, label=name)
    for ax, label, attr in ((left, "TTFT s", "ttft_p95_s"), (right, "TPOT s", "tpot_p95_s")):
        for service in services:
            ax.axvline(getattr(config.plans[service].service.slo, attr), color="grey", ls="--", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel(f"{label} (dashed: SLO)")
        ax.set_ylabel("share of requests")
    left.legend(fontsize=7)
    fig.tight_layout()
    path = directory / "latency_cdf.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    fig, ax = plt.subplots(figsize=(8, 3.5))
    costs = [comparison.summaries[n].cost_usd for n in names]
    bars = ax.bar(names, costs, color="#4c78a8")
    for bar, name in zip(bars, names, strict=True):
        attained = comparison.summaries[name].slo_attainment
        ax.annotate(f"{attained:.1%}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                    va="bottom", fontsize=8)  # fmt: skip
    ax.set_ylabel("cost $ (label: SLO attainment)")
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    path = directory / "cost.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    lines = [f"# What-if: {config.scenario.name}", ""]
    lines += [f"- {key}: {value}" for key, value in header.items()]
    lines += ["", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in table]
    lines += [
        "",
        "A request attains the SLO when its TTFT and TPOT are within the service's targets. `oracle` is",
        "clairvoyant under the same rules (cold starts included); `instant_start` is the same without cold starts,",
        "the physical limit. Cost counts each replica's GPU share from its creation (the cold start holds the GPU)",
        "to its end.",
        "",
        "![demand and capacity](demand_capacity.png)",
        "",
        "![latency](latency_cdf.png)",
        "",
        "![cost](cost.png)",
        "",
    ]
    path = directory / "summary.md"
    path.write_text("\n".join(lines))
    written.append(path)
    return written
