"""The what-if's one-line verdict: the cheapest policy at the target attainment, and where fleetscale stands."""

from __future__ import annotations

from autoscaler.sim.compare import Comparison
from autoscaler.sim.summary import PolicySummary
from autoscaler.sim.whatif import cheapest_reaching, verdict


def _comparison(figures: dict[str, tuple[float, float]]) -> Comparison:
    """Policies by name with (attainment, cost)."""
    summaries = {
        name: PolicySummary(name, 1000, attainment, 0.2, 0.02, 1.0, cost, 0, 0)
        for name, (attainment, cost) in figures.items()
    }
    return Comparison(summaries, {})


def test_the_bounds_never_win_and_below_target_never_counts() -> None:
    comparison = _comparison(
        {
            "fleetscale": (0.995, 50.0),
            "static": (0.992, 45.0),
            "hpa": (0.97, 30.0),
            "oracle": (0.999, 40.0),
            "instant_start": (0.999, 20.0),
        }
    )
    assert cheapest_reaching(comparison, 0.99) == "static"
    assert verdict(comparison, 0.99) == "cheapest at >= 99.00% attainment: static ($45.00); fleetscale $50.00 (1.11x)"
    assert cheapest_reaching(comparison, 0.9) == "hpa"


def test_fleetscale_below_the_target_is_said_so() -> None:
    comparison = _comparison({"fleetscale": (0.988, 40.0), "static": (0.992, 45.0), "oracle": (0.999, 90.0)})
    assert verdict(comparison, 0.99) == (
        "cheapest at >= 99.00% attainment: static ($45.00); fleetscale $40.00 at 98.80%, below it"
    )


def test_when_fleetscale_is_cheapest_or_nothing_reaches() -> None:
    assert verdict(_comparison({"fleetscale": (0.995, 40.0), "static": (0.992, 45.0)}), 0.99) == (
        "cheapest at >= 99.00% attainment: fleetscale ($40.00)"
    )
    nothing = _comparison({"fleetscale": (0.95, 40.0), "oracle": (0.999, 90.0)})
    assert cheapest_reaching(nothing, 0.99) is None
    assert verdict(nothing, 0.99).startswith("cheapest at >= 99.00% attainment: no policy reaches it; fleetscale")
