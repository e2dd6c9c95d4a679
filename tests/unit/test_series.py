"""RateSeries and RequestTrace: binning arithmetic, gaps that stay gaps, and validation."""

from __future__ import annotations

import math

import pytest

from autoscaler.series import RateSeries, RequestTrace


def trace(arrivals: list[float], name: str = "t") -> RequestTrace:
    """A trace whose request i has 100 + i input tokens and 10 + i output tokens."""
    n = len(arrivals)
    return RequestTrace(name, tuple(arrivals), tuple(100 + i for i in range(n)), tuple(10 + i for i in range(n)))


def same(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """Equal, with NaN equal to NaN."""
    return len(a) == len(b) and all((math.isnan(x) and math.isnan(y)) or x == y for x, y in zip(a, b, strict=True))


# --- RequestTrace.to_rate_series -----------------------------------------------------------------------------------


def test_rate_is_count_per_bin_divided_by_step() -> None:
    # arrivals 0.0, 0.4, 0.9 | 1.0 | (none in [2, 3)) | 3.2, 3.3, 3.9; step 1 s, start at the first arrival (0).
    # bin [0,1): 3 requests -> 3 req/s; [1,2): 1 -> 1; [2,3): 0 -> 0 (a true zero, not a gap); [3,4): 3 -> 3.
    series = trace([0.0, 0.4, 0.9, 1.0, 3.2, 3.3, 3.9]).to_rate_series(1.0)
    assert series.values == (3.0, 1.0, 0.0, 3.0)
    assert series.start_s == 0.0
    assert series.step_s == 1.0
    assert series.missing_count == 0


def test_rate_with_a_step_of_two_seconds_halves_the_count() -> None:
    # same arrivals, step 2 s: [0,2) holds 4 -> 4 / 2 = 2 req/s; [2,4) holds 3 -> 1.5 req/s.
    series = trace([0.0, 0.4, 0.9, 1.0, 3.2, 3.3, 3.9]).to_rate_series(2.0)
    assert series.values == (2.0, 1.5)


def test_rate_with_a_sub_second_step() -> None:
    # step 0.5 s: [0,0.5) holds 0.0, 0.4 -> 2 / 0.5 = 4 req/s; [0.5,1) holds 0.9 -> 2; [1,1.5) holds 1.0 -> 2.
    series = trace([0.0, 0.4, 0.9, 1.0]).to_rate_series(0.5)
    assert series.values == (4.0, 2.0, 2.0)


def test_an_arrival_on_a_boundary_opens_the_next_bin() -> None:
    # bins are half-open [t, t+step): 1.0 belongs to [1, 2), and 0.3 to [0.3, 0.4) although 0.3 / 0.1 is
    # 2.9999999999999996 in floating point.
    assert trace([0.0, 1.0]).to_rate_series(1.0).values == (1.0, 1.0)
    assert trace([0.0, 0.3]).to_rate_series(0.1).values == (10.0, 0.0, 0.0, 10.0)


def test_explicit_start_and_end_pad_with_zeros_and_cut() -> None:
    # start at -2 s, end at 6 s, step 2: bins [-2,0), [0,2), [2,4), [4,6).
    # [-2,0) is empty -> 0; [0,2) holds 0.5, 1.5 -> 1 req/s; [2,4) holds 3.0 -> 0.5; [4,6) holds 5.0 -> 0.5;
    # 7.0 lies past the end and is not counted.
    series = trace([0.5, 1.5, 3.0, 5.0, 7.0]).to_rate_series(2.0, start_s=-2.0, end_s=6.0)
    assert series.start_s == -2.0
    assert series.values == (0.0, 1.0, 0.5, 0.5)


def test_arrivals_before_the_start_are_left_out() -> None:
    # start at 1 s: 0.2 and 0.7 are before it; [1,2) holds 1.0 and 1.5 -> 2 req/s.
    assert trace([0.2, 0.7, 1.0, 1.5]).to_rate_series(1.0, start_s=1.0).values == (2.0,)


def test_end_not_on_a_bin_boundary_rounds_up_to_whole_bins() -> None:
    # end 2.5 with step 1 -> 3 whole bins [0,1), [1,2), [2,3); the last one counts 2.7 as well.
    assert trace([0.0, 2.7]).to_rate_series(1.0, end_s=2.5).values == (1.0, 0.0, 1.0)


def test_empty_trace_gives_an_empty_series_unless_bins_are_asked_for() -> None:
    empty = RequestTrace("empty", (), (), ())
    assert len(empty.to_rate_series(1.0)) == 0
    assert empty.to_rate_series(1.0, start_s=0.0, end_s=3.0).values == (0.0, 0.0, 0.0)
    assert empty.duration_s == 0.0


def test_mean_of_the_rate_series_is_requests_over_covered_time() -> None:
    # 10 requests spread over [0, 4.5]: 5 one-second bins -> mean 10 / 5 = 2 req/s.
    arrivals = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5]
    series = trace(arrivals).to_rate_series(1.0)
    assert len(series) == 5
    assert series.observed_mean() == pytest.approx(2.0)
    assert series.observed_max() == 2.0


def test_token_rates_sum_the_tokens_of_the_arrivals_in_each_bin() -> None:
    # requests: (t=0.0, in 100, out 10), (t=0.5, in 101, out 11), (t=2.0, in 102, out 12); step 1 s.
    # input: [0,1) 201 tokens -> 201 tokens/s, [1,2) 0, [2,3) 102.  output: 21, 0, 12.
    inputs, outputs = trace([0.0, 0.5, 2.0]).token_rates(1.0)
    assert inputs.values == (201.0, 0.0, 102.0)
    assert outputs.values == (21.0, 0.0, 12.0)
    assert inputs.name == "t:input_tokens_per_s"
    assert outputs.name == "t:output_tokens_per_s"
    # step 2: [0,2) 201 tokens / 2 s = 100.5 tokens/s; [2,4) 102 / 2 = 51.
    inputs2, _ = trace([0.0, 0.5, 2.0]).token_rates(2.0)
    assert inputs2.values == (100.5, 51.0)


@pytest.mark.parametrize("step", [0.0, -1.0, math.nan, math.inf])
def test_to_rate_series_rejects_a_bad_step(step: float) -> None:
    with pytest.raises(ValueError, match="step_s"):
        trace([0.0]).to_rate_series(step)


def test_to_rate_series_rejects_an_end_before_the_start() -> None:
    with pytest.raises(ValueError, match="end_s"):
        trace([0.0, 1.0]).to_rate_series(1.0, start_s=5.0, end_s=2.0)


# --- RequestTrace validation ---------------------------------------------------------------------------------------


def test_request_trace_stores_tuples_and_knows_its_length_and_duration() -> None:
    t = RequestTrace("x", [1.0, 2.5], [3, 4], [5, 6], ["a", "b"])  # type: ignore[arg-type]
    assert t.arrival_s == (1.0, 2.5)
    assert t.service == ("a", "b")
    assert len(t) == 2
    assert t.duration_s == 1.5


def test_request_trace_columns_must_have_equal_lengths() -> None:
    with pytest.raises(ValueError, match="output_tokens has 1 entries but arrival_s has 2"):
        RequestTrace("x", (0.0, 1.0), (1, 2), (3,))
    with pytest.raises(ValueError, match="service has 1 entries"):
        RequestTrace("x", (0.0, 1.0), (1, 2), (3, 4), ("a",))


def test_request_trace_arrivals_must_be_sorted() -> None:
    with pytest.raises(ValueError, match=r"arrival_s\[2\] = 0.5 is earlier than arrival_s\[1\] = 1.0"):
        RequestTrace("x", (0.0, 1.0, 0.5), (1, 1, 1), (1, 1, 1))
    RequestTrace("x", (0.0, 1.0, 1.0), (1, 1, 1), (1, 1, 1))  # equal times are fine


def test_request_trace_arrivals_must_be_finite() -> None:
    with pytest.raises(ValueError, match=r"arrival_s\[1\] is not finite"):
        RequestTrace("x", (0.0, math.nan), (1, 1), (1, 1))


def test_request_trace_tokens_must_be_non_negative_integers() -> None:
    with pytest.raises(ValueError, match=r"input_tokens\[1\] is negative \(-4\)"):
        RequestTrace("x", (0.0, 1.0), (1, -4), (1, 1))
    with pytest.raises(ValueError, match=r"output_tokens\[0\] is not an integer"):
        RequestTrace("x", (0.0,), (1,), (1.5,))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"output_tokens\[0\] is not an integer"):
        RequestTrace("x", (0.0,), (1,), (True,))


def test_request_trace_accepts_numpy_columns() -> None:
    np = pytest.importorskip("numpy")
    t = RequestTrace("x", np.array([0.0, 1.5]), np.array([3, 4]), np.array([5, 6]))
    assert t.arrival_s == (0.0, 1.5)
    assert t.input_tokens == (3, 4)
    assert all(type(c) is int for c in t.input_tokens + t.output_tokens)


def test_request_trace_is_frozen() -> None:
    t = trace([0.0])
    with pytest.raises(AttributeError):
        t.name = "other"  # type: ignore[misc]


# --- RateSeries ----------------------------------------------------------------------------------------------------


def test_gaps_stay_nan_and_are_counted() -> None:
    series = RateSeries("s", 0.0, 600.0, (1.0, math.nan, 3.0, math.nan))
    assert series.missing_count == 2
    assert math.isnan(series.values[1])
    # the mean and max look at the observed bins only: (1 + 3) / 2 = 2
    assert series.observed_mean() == 2.0
    assert series.observed_max() == 3.0
    # scaling keeps gaps as gaps, not zeros
    doubled = series.scaled(2.0)
    assert same(doubled.values, (2.0, math.nan, 6.0, math.nan))
    assert doubled.missing_count == 2


def test_an_all_gap_series_has_no_mean() -> None:
    series = RateSeries("s", 0.0, 1.0, (math.nan, math.nan))
    assert math.isnan(series.observed_mean())
    assert math.isnan(series.observed_max())


def test_times_len_and_end() -> None:
    series = RateSeries("s", 100.0, 60.0, (1.0, 2.0, 3.0))
    assert series.times_s() == (100.0, 160.0, 220.0)
    assert len(series) == 3
    assert series.end_s == 280.0


def test_values_are_stored_as_a_tuple_of_floats() -> None:
    series = RateSeries("s", 0, 1, [1, 2])  # type: ignore[arg-type]
    assert series.values == (1.0, 2.0)
    assert all(isinstance(v, float) for v in series.values)
    assert isinstance(series.start_s, float)


def test_window_keeps_the_bins_that_start_inside_it() -> None:
    series = RateSeries("s", 0.0, 10.0, (0.0, 1.0, 2.0, math.nan, 4.0))  # bins start at 0, 10, 20, 30, 40
    w = series.window(10.0, 40.0)  # starts 10, 20, 30
    assert w.start_s == 10.0
    assert same(w.values, (1.0, 2.0, math.nan))
    assert w.missing_count == 1
    # a start between bin starts moves to the next bin; an end past the series is cut to the series
    cut = series.window(15.0, 1000.0)
    assert cut.start_s == 20.0
    assert same(cut.values, (2.0, math.nan, 4.0))
    # windows outside the series are empty, not errors
    assert len(series.window(100.0, 200.0)) == 0
    assert len(series.window(-50.0, -10.0)) == 0
    assert series.window(-50.0, 15.0).values == (0.0, 1.0)


def test_window_rejects_an_end_before_the_start() -> None:
    with pytest.raises(ValueError, match="bad window"):
        RateSeries("s", 0.0, 1.0, (1.0,)).window(5.0, 1.0)


def test_scaled_and_with_values() -> None:
    series = RateSeries("s", 0.0, 1.0, (1.0, 2.0))
    assert series.scaled(0.5).values == (0.5, 1.0)
    assert series.scaled(0.0).values == (0.0, 0.0)
    other = series.with_values([7.0, math.nan, 9.0])
    assert (other.name, other.start_s, other.step_s) == ("s", 0.0, 1.0)
    assert other.missing_count == 1
    with pytest.raises(ValueError, match=r"values\[0\] is negative"):
        series.with_values([-1.0])
    for k in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="scale factor"):
            series.scaled(k)


@pytest.mark.parametrize("step", [0.0, -60.0, math.nan, math.inf])
def test_rate_series_step_must_be_positive_and_finite(step: float) -> None:
    with pytest.raises(ValueError, match="step_s"):
        RateSeries("s", 0.0, step, (1.0,))


def test_rate_series_negative_value_names_the_index() -> None:
    with pytest.raises(ValueError, match=r"RateSeries 's': values\[2\] is negative \(-0.5\)"):
        RateSeries("s", 0.0, 1.0, (1.0, 2.0, -0.5))


def test_rate_series_infinite_value_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"values\[1\] is infinite"):
        RateSeries("s", 0.0, 1.0, (1.0, math.inf))


def test_rate_series_start_must_be_finite() -> None:
    with pytest.raises(ValueError, match="start_s"):
        RateSeries("s", math.nan, 1.0, (1.0,))
