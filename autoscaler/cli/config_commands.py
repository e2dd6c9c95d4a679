"""`validate`, `schema`, `catalog show|mig-check` and `profile show|capacity`: what the configuration and the
data files say."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.table import Table

from autoscaler.capacity import LatencySlo, LengthSpread, Routing, TokenMix, capacity_at_slo
from autoscaler.catalog import load_catalog
from autoscaler.cli.common import err, fail, load_book, out
from autoscaler.config import ConfigIssue, Scenario, check_scenario, issues_from_validation_error
from autoscaler.datafiles import load_yaml
from autoscaler.errors import ConfigError
from autoscaler.perf import Precision
from autoscaler.shapes import parse_shape


def validate(files: Annotated[list[Path], typer.Argument(help="Scenario files (YAML).")]) -> None:
    """Check scenario files; print one line per problem (file, field path, value, what is wrong); exit 2 if any."""
    catalog, book = load_book()
    problems = 0
    for path in files:
        try:
            data = load_yaml(path)
        except ConfigError as exc:
            err.print(str(exc), markup=False)
            problems += 1
            continue
        issues: list[ConfigIssue]
        try:
            scenario = Scenario.model_validate(data)
            issues = check_scenario(scenario, catalog, book)
        except ValidationError as exc:
            issues = issues_from_validation_error(exc)
        for issue in issues:
            err.print(issue.format(str(path)), markup=False)
        problems += len(issues)
        if not issues:
            out.print(f"{path}: ok")
    if problems:
        raise fail(f"{problems} problem(s) found")


def schema() -> None:
    """Print the JSON schema of a scenario file."""
    out.print_json(json.dumps(Scenario.model_json_schema()))


def catalog_show(gpu: Annotated[str | None, typer.Argument(help="One GPU type (or alias) to detail.")] = None) -> None:
    """Print the catalog, or one GPU type with its MIG profiles and presets."""
    catalog = load_catalog()
    if gpu is None:
        table = Table(title="GPU catalog")
        for column in ("GPU", "memory GB", "TB/s", "BF16 TFLOPS", "FP8 TFLOPS", "MIG", "$/GPU-h", "price date"):
            table.add_column(column)
        for g in catalog.gpus.values():
            price = "-" if g.price.usd_per_gpu_h is None else f"{g.price.usd_per_gpu_h:.2f}"
            fp8 = "-" if g.fp8_dense_tflops is None else f"{g.fp8_dense_tflops:g}"
            mig = "-" if g.mig is None else f"{len(g.mig.profiles)} profiles"
            table.add_row(
                g.name, f"{g.memory_gb:g}", f"{g.memory_bandwidth_tb_per_s:g}", f"{g.bf16_dense_tflops:g}", fp8, mig,
                price, g.price.date or "-",
            )  # fmt: skip
        out.print(table)
        return
    try:
        g = catalog.gpu(gpu)
    except KeyError as exc:
        raise fail(str(exc.args[0])) from None
    out.print(
        f"[bold]{g.name}[/] (aliases: {', '.join(g.aliases) or '-'}): {g.memory_gb:g} GB, "
        f"{g.memory_bandwidth_tb_per_s:g} TB/s, {g.bf16_dense_tflops:g} BF16 TFLOPS, {g.interconnect}"
    )
    out.print(f"  spec: {g.spec_source} [{g.spec_confidence}]", markup=False)
    price = "none" if g.price.usd_per_gpu_h is None else f"${g.price.usd_per_gpu_h:.4g}/GPU-h"
    out.print(f"  price: {price}; {g.price.source} ({g.price.date or 'no date'})", markup=False)
    if g.mig is None:
        out.print("  no MIG")
        return
    table = Table(title=f"{g.name} MIG profiles ({g.mig.geometry_confidence})")
    for column in ("profile", "compute slices", "memory slices", "memory GB", "legal starts", "max per GPU"):
        table.add_column(column)
    for p in g.mig.profiles.values():
        table.add_row(
            p.name, str(p.compute_slices), str(p.memory_slices), f"{p.memory_gb:g}",
            ",".join(map(str, p.starts)), str(p.max_instances),
        )  # fmt: skip
    out.print(table)
    presets = Table(title="NVIDIA mig-parted presets")
    presets.add_column("preset")
    presets.add_column("layout")
    for name, layout in g.mig.presets.items():
        presets.add_row(name, " + ".join(f"{n} x {p}" for p, n in layout.items()))
    out.print(presets)


def _expand_profiles(items: list[str]) -> list[str]:
    """`3g.40gb`, `2x3g.40gb` and `2*3g.40gb` all work; the count repeats the profile. Bad counts: ValueError."""
    profiles: list[str] = []
    for item in items:
        for sep in ("x", "*"):
            head, found, tail = item.partition(sep)
            if found and head.isdigit():
                if int(head) < 1 or not tail:
                    raise ValueError(f"{item!r}: write COUNTxPROFILE with a count of at least 1, e.g. 2x1g.10gb")
                profiles.extend([tail] * int(head))
                break
        else:
            profiles.append(item)
    return profiles


def catalog_mig_check(
    gpu: Annotated[str, typer.Argument(help="GPU type, e.g. H100-80GB.")],
    profiles: Annotated[list[str], typer.Argument(help="Profiles, e.g. 3g.40gb 2x1g.10gb.")],
) -> None:
    """Say whether the profiles form a valid MIG layout of one GPU; print the start slots (exit 0) or why not (1)."""
    catalog = load_catalog()
    try:
        catalog.gpu(gpu)
    except KeyError as exc:
        raise fail(str(exc.args[0])) from None
    try:
        wanted = _expand_profiles(profiles)
    except ValueError as exc:
        raise fail(str(exc)) from None
    result = catalog.check_mig_layout(gpu, wanted)
    layout = " + ".join(f"{n} x {p}" for p, n in Counter(wanted).items())
    if not result.valid:
        out.print(f"invalid: {layout} on {result.gpu_type}: {result.reason}", markup=False)
        raise typer.Exit(1)
    gpu_type = catalog.gpu(gpu)
    assert gpu_type.mig is not None
    slots = ["."] * gpu_type.mig.memory_slices
    for index, placement in enumerate(result.placements):
        for s in range(placement.start, placement.start + placement.memory_slices):
            slots[s] = "ABCDEFGH"[index]
    out.print(f"valid: {layout} on {result.gpu_type}")
    for index, placement in enumerate(result.placements):
        end = placement.start + placement.memory_slices - 1
        label = "ABCDEFGH"[index]
        out.print(f"  {label}  {placement.profile:<12} start {placement.start}  memory slices {placement.start}-{end}")
    out.print(f"  memory slices: [{''.join(slots)}]  free: {list(result.free_memory_slices) or 'none'}")


def profile_show(
    model: Annotated[str, typer.Argument(help="Model name or alias.")],
    shape: Annotated[str, typer.Option(help="Shape, e.g. H100-80GB, 4xH100-80GB, H100-80GB/3g.40gb.")] = "H100-80GB",
    precision: Annotated[Precision, typer.Option(help="Weight precision.")] = Precision.BF16,
) -> None:
    """Print every number of a replica profile with `measured` or `derived` and its source."""
    _catalog, book = load_book()
    try:
        profile = book.profile(model, parse_shape(shape), precision)
    except (KeyError, ValueError) as exc:
        raise fail(str(exc.args[0] if exc.args else exc)) from None
    table = Table(title=f"{profile.model} {precision} on {profile.shape}")
    for column in ("figure", "value", "kind", "source"):
        table.add_column(column, overflow="fold")
    for name, figure in profile.figures().items():
        table.add_row(name, f"{figure.value:,.4g}", figure.kind, figure.source)
    out.print(table)


def profile_capacity(
    model: Annotated[str, typer.Argument(help="Model name or alias.")],
    shape: Annotated[str, typer.Argument(help="Shape, e.g. H100-80GB.")],
    ttft_p95_s: Annotated[float, typer.Option(help="TTFT bound, s.", min=1e-6)] = 1.0,
    tpot_p95_s: Annotated[float, typer.Option(help="TPOT bound, s.", min=1e-6)] = 0.05,
    input_tokens: Annotated[float, typer.Option(help="Mean prompt tokens.", min=1)] = 1000,
    output_tokens: Annotated[float, typer.Option(help="Mean output tokens.", min=1)] = 200,
    lengths: Annotated[
        LengthSpread, typer.Option(help="How lengths spread around their means (fixed: all at the mean).")
    ] = LengthSpread.EXPONENTIAL,
    quantile: Annotated[float, typer.Option(help="Share of requests within both bounds.", min=0.5, max=0.9999)] = 0.95,
    replicas: Annotated[int, typer.Option(help="Replicas behind one router (each sustains more).", min=1)] = 1,
    routing: Annotated[
        Routing, typer.Option(help="How the router spreads requests (only least_loaded credits more replicas).")
    ] = Routing.LEAST_LOADED,
    precision: Annotated[Precision, typer.Option(help="Weight precision.")] = Precision.BF16,
) -> None:
    """Print the capacity at SLO of one replica, what binds it, and the latency there."""
    _catalog, book = load_book()
    try:
        profile = book.profile(model, parse_shape(shape), precision, int(input_tokens + output_tokens))
    except (KeyError, ValueError) as exc:
        raise fail(str(exc.args[0] if exc.args else exc)) from None
    slo = LatencySlo(ttft_p95_s, tpot_p95_s, quantile)
    result = capacity_at_slo(profile, slo, TokenMix(input_tokens, output_tokens, lengths), replicas, routing)
    at = result.at_capacity
    each = f" each of {replicas} replicas behind {routing} routing" if replicas > 1 else ""
    out.print(f"{profile.model} on {profile.shape}: {result.rps:.4g} req/s{each} at the SLO, bound by {result.binding}")
    if result.reason:
        out.print(f"  {result.reason}", markup=False)
    share = f"p{quantile * 100:g}"
    out.print(
        f"  at capacity: {share} TTFT {at.ttft_s:.3f} s, {share} TPOT {at.tpot_s:.4f} s, batch {at.mean_batch:.1f}, "
        f"prefill busy {at.prefill_utilization:.0%}, slots {at.slots}"
    )
