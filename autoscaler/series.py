"""Value types for load over time: a rate series and a request trace.

`RateSeries` is a regular time series of a rate (requests/s, tokens/s) in fixed bins of `step_s` seconds that
start at `start_s`. NaN in it means *missing data* (nobody observed that bin), which is not the same as zero load:
forecasters and the simulator must treat a gap as unknown, and the safety rules never scale down on it.

`RequestTrace` is a list of requests, each with its arrival time (seconds from the trace's start) and its prompt
and output lengths, optionally the service it was sent to. A request trace observes every request, so a bin of
its rate series without arrivals is a true zero, never a gap.

Both are frozen and validated when built: a bad value raises `ValueError` naming the field and the index.
Pure module: no I/O, no clock, no numpy (the loaders in `adapters/traces` build these from files).

Binning rule (`RequestTrace.to_rate_series`, `token_rates`): bin i covers [start + i*step, start + (i+1)*step);
an arrival within 1e-9 of a step of a boundary counts as on that boundary, so that float noise such as
0.3 / 0.1 = 2.9999999999999996 does not move it into the previous bin.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from numbers import Integral

# Relative tolerance, in units of one step, for deciding which bin a time falls in.
_BIN_DIGITS = 9
_BIN_TOL = 1e-9


def _bin_index(offset_s: float, step_s: float) -> int:
    """Index of the bin that a time `offset_s` after the series start falls in (robust to float noise)."""
    return math.floor(round(offset_s / step_s, _BIN_DIGITS))


def _check_step(step_s: float, what: str) -> None:
    if not (isinstance(step_s, int | float) and math.isfinite(step_s) and step_s > 0):
        raise ValueError(f"{what}: step_s must be a finite number > 0, got {step_s!r}")


@dataclass(frozen=True, slots=True)
class RateSeries:
    """A rate sampled in fixed bins: `values[i]` is the mean rate over [start_s + i*step_s, start_s + (i+1)*step_s).

    NaN marks a bin with no data (a gap), not zero load. Values are otherwise finite and >= 0.
    Any sequence of numbers is accepted for `values`; it is stored as a tuple of floats.
    """

    name: str
    start_s: float
    step_s: float
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        _check_step(self.step_s, f"RateSeries {self.name!r}")
        if not (isinstance(self.start_s, int | float) and math.isfinite(self.start_s)):
            raise ValueError(f"RateSeries {self.name!r}: start_s must be a finite number, got {self.start_s!r}")
        values = tuple(float(v) for v in self.values)
        for i, v in enumerate(values):
            if math.isnan(v) or (0.0 <= v < math.inf):
                continue
            if math.isinf(v):
                raise ValueError(f"RateSeries {self.name!r}: values[{i}] is infinite ({v}); use NaN for a gap")
            raise ValueError(f"RateSeries {self.name!r}: values[{i}] is negative ({v}); a rate cannot be negative")
        object.__setattr__(self, "start_s", float(self.start_s))
        object.__setattr__(self, "step_s", float(self.step_s))
        object.__setattr__(self, "values", values)

    def __len__(self) -> int:
        return len(self.values)

    @property
    def end_s(self) -> float:
        """End of the last bin (exclusive): start_s + len * step_s."""
        return self.start_s + len(self.values) * self.step_s

    @property
    def missing_count(self) -> int:
        """How many bins are gaps (NaN)."""
        return sum(1 for v in self.values if math.isnan(v))

    def times_s(self) -> tuple[float, ...]:
        """Start time of every bin."""
        return tuple(self.start_s + i * self.step_s for i in range(len(self.values)))

    def window(self, start_s: float, end_s: float) -> RateSeries:
        """The bins whose start time lies in [start_s, end_s), as a series of its own (possibly empty).

        Bin starts within 1e-9 of a step of `start_s` or `end_s` count as equal to it.
        """
        if not (math.isfinite(start_s) and math.isfinite(end_s)) or end_s < start_s:
            raise ValueError(f"RateSeries {self.name!r}: bad window [{start_s}, {end_s})")
        n = len(self.values)
        first = min(n, max(0, math.ceil((start_s - self.start_s) / self.step_s - _BIN_TOL)))
        stop = min(n, max(first, math.ceil((end_s - self.start_s) / self.step_s - _BIN_TOL)))
        return RateSeries(self.name, self.start_s + first * self.step_s, self.step_s, self.values[first:stop])

    def scaled(self, k: float) -> RateSeries:
        """Every value times `k` (>= 0, finite); gaps stay gaps. Replays scale a trace to load a fleet of real size."""
        if not (math.isfinite(k) and k >= 0):
            raise ValueError(f"RateSeries {self.name!r}: scale factor must be finite and >= 0, got {k!r}")
        return RateSeries(self.name, self.start_s, self.step_s, tuple(v * k for v in self.values))

    def with_values(self, values: Iterable[float]) -> RateSeries:
        """The same name, start and step with other values (validated again)."""
        return RateSeries(self.name, self.start_s, self.step_s, tuple(values))

    def observed_mean(self) -> float:
        """Mean over the observed bins (gaps left out); NaN if no bin is observed."""
        observed = [v for v in self.values if not math.isnan(v)]
        return math.fsum(observed) / len(observed) if observed else math.nan

    def observed_max(self) -> float:
        """Largest observed value; NaN if no bin is observed."""
        observed = [v for v in self.values if not math.isnan(v)]
        return max(observed) if observed else math.nan


@dataclass(frozen=True, slots=True)
class RequestTrace:
    """Requests in arrival order: `arrival_s[i]` (seconds from the trace's start), `input_tokens[i]` (prompt length),
    `output_tokens[i]` (generated length) and, optionally, `service[i]` (which service received it).

    Arrivals are finite and sorted (equal times allowed); token counts are integers >= 0 (any integral type, stored
    as int); all columns have the same length. Any sequences are accepted and stored as tuples.
    """

    name: str
    arrival_s: tuple[float, ...]
    input_tokens: tuple[int, ...]
    output_tokens: tuple[int, ...]
    service: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        who = f"RequestTrace {self.name!r}"
        arrivals = tuple(float(t) for t in self.arrival_s)
        inputs = tuple(self.input_tokens)
        outputs = tuple(self.output_tokens)
        services = None if self.service is None else tuple(self.service)
        n = len(arrivals)
        lengths = {"input_tokens": len(inputs), "output_tokens": len(outputs)}
        if services is not None:
            lengths["service"] = len(services)
        for column, length in lengths.items():
            if length != n:
                raise ValueError(f"{who}: {column} has {length} entries but arrival_s has {n}")
        previous = -math.inf
        for i, t in enumerate(arrivals):
            if not math.isfinite(t):
                raise ValueError(f"{who}: arrival_s[{i}] is not finite ({t})")
            if t < previous:
                raise ValueError(f"{who}: arrival_s[{i}] = {t} is earlier than arrival_s[{i - 1}] = {previous}")
            previous = t
        for column, tokens in (("input_tokens", inputs), ("output_tokens", outputs)):
            for i, count in enumerate(tokens):
                if isinstance(count, bool) or not isinstance(count, Integral):
                    raise ValueError(f"{who}: {column}[{i}] is not an integer ({count!r})")
                if count < 0:
                    raise ValueError(f"{who}: {column}[{i}] is negative ({count})")
        if not all(type(c) is int for c in inputs):
            inputs = tuple(int(c) for c in inputs)
        if not all(type(c) is int for c in outputs):
            outputs = tuple(int(c) for c in outputs)
        if services is not None:
            for i, s in enumerate(services):
                if not isinstance(s, str):
                    raise ValueError(f"{who}: service[{i}] is not a string ({s!r})")
        object.__setattr__(self, "arrival_s", arrivals)
        object.__setattr__(self, "input_tokens", inputs)
        object.__setattr__(self, "output_tokens", outputs)
        object.__setattr__(self, "service", services)

    def __len__(self) -> int:
        return len(self.arrival_s)

    @property
    def duration_s(self) -> float:
        """Time from the first to the last arrival (0 for fewer than two requests)."""
        return self.arrival_s[-1] - self.arrival_s[0] if self.arrival_s else 0.0

    def _bins(self, step_s: float, start_s: float | None, end_s: float | None) -> tuple[float, int]:
        """Start time and number of bins; see `to_rate_series`."""
        _check_step(step_s, f"RequestTrace {self.name!r}")
        if start_s is None:
            start_s = self.arrival_s[0] if self.arrival_s else 0.0
        if not math.isfinite(start_s):
            raise ValueError(f"RequestTrace {self.name!r}: start_s must be finite, got {start_s!r}")
        if end_s is None:
            if not self.arrival_s or self.arrival_s[-1] < start_s:
                return start_s, 0
            return start_s, _bin_index(self.arrival_s[-1] - start_s, step_s) + 1
        if not math.isfinite(end_s) or end_s < start_s:
            raise ValueError(f"RequestTrace {self.name!r}: end_s must be finite and >= start_s, got {end_s!r}")
        return start_s, max(0, math.ceil((end_s - start_s) / step_s - _BIN_TOL))

    def _binned_sums(self, step_s: float, start_s: float, n: int, weights: tuple[int, ...] | None) -> list[float]:
        sums = [0.0] * n
        for i, t in enumerate(self.arrival_s):
            k = _bin_index(t - start_s, step_s)
            if k < 0:
                continue
            if k >= n:
                break  # arrivals are sorted: every later one is past the end too
            sums[k] += 1.0 if weights is None else weights[i]
        return sums

    def to_rate_series(self, step_s: float, start_s: float | None = None, end_s: float | None = None) -> RateSeries:
        """Mean requests per second in each bin [t, t + step_s): the count of arrivals in it divided by step_s.

        A bin without arrivals is 0 (a request trace sees every request), never NaN.
        `start_s` defaults to the first arrival (0 for an empty trace). Without `end_s` the bins run until the
        one that holds the last arrival; with it, they cover whole bins up to `end_s` (the last bin may reach past
        `end_s`, and it counts the arrivals in all of it). Arrivals outside the bins are left out.
        """
        start, n = self._bins(step_s, start_s, end_s)
        counts = self._binned_sums(step_s, start, n, None)
        return RateSeries(self.name, start, step_s, tuple(c / step_s for c in counts))

    def token_rates(
        self, step_s: float, start_s: float | None = None, end_s: float | None = None
    ) -> tuple[RateSeries, RateSeries]:
        """(input tokens/s, output tokens/s) in the same bins as `to_rate_series`: the tokens of the requests that
        arrive in a bin, divided by step_s. Named `<name>:input_tokens_per_s` and `<name>:output_tokens_per_s`."""
        start, n = self._bins(step_s, start_s, end_s)
        inputs = self._binned_sums(step_s, start, n, self.input_tokens)
        outputs = self._binned_sums(step_s, start, n, self.output_tokens)
        return (
            RateSeries(f"{self.name}:input_tokens_per_s", start, step_s, tuple(s / step_s for s in inputs)),
            RateSeries(f"{self.name}:output_tokens_per_s", start, step_s, tuple(s / step_s for s in outputs)),
        )
