"""The Ray Serve dashboard client's retries, error mapping and token handling, on scripted HTTP answers (the real
dashboard, its scale API, 404 and 412 are in tests/integration/test_rayserve_dashboard.py; a 503 or a refused token
cannot be provoked there on demand)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from adapters.rayserve.dashboard import RayServeDashboard, replicas_of
from autoscaler.catalog import Catalog
from autoscaler.compiled import CompiledScenario
from autoscaler.errors import PermanentError, TransientError
from autoscaler.perf import ProfileBook
from autoscaler.ports import ScaleRequest
from autoscaler.shapes import parse_shape
from tests.unit.conftest import compile_dict, scenario_dict

H100 = parse_shape("H100-80GB")
SECRET = "s3cr3t-token"


@pytest.fixture(scope="module")
def chat(catalog: Catalog, book: ProfileBook) -> CompiledScenario:
    return compile_dict(scenario_dict(), catalog, book)


def client(
    chat: CompiledScenario, answer: Callable[[httpx.Request], httpx.Response], **kwargs: object
) -> tuple[RayServeDashboard, list[float]]:
    slept: list[float] = []
    fleet = RayServeDashboard(
        chat,
        "http://127.0.0.1:8265",
        transport=httpx.MockTransport(answer),
        sleep=slept.append,
        **kwargs,  # type: ignore[arg-type]
    )
    return fleet, slept


def test_503_is_retried_with_backoff_then_transient(chat: CompiledScenario) -> None:
    calls: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(503, json={"error": "Serve controller is not available"})

    fleet, slept = client(chat, answer, retries=3, backoff_s=0.5)
    with pytest.raises(TransientError, match="503 Serve controller is not available"):
        fleet.set_replicas(ScaleRequest("chat", H100, 4, None, "d"))
    assert len(calls) == 4 and slept == [0.5, 1.0, 2.0]


def test_a_503_then_success_applies(chat: CompiledScenario) -> None:
    answers = iter([httpx.Response(503), httpx.Response(200, json={"message": "ok"})])
    fleet, _ = client(chat, lambda request: next(answers))
    assert fleet.set_replicas(ScaleRequest("chat", H100, 4, None, "d")).applied == 4


@pytest.mark.parametrize(
    ("status", "error", "words"),
    [
        (400, PermanentError, "400 Invalid request body"),
        (401, PermanentError, "the token is missing or wrong"),
        (403, PermanentError, "the token is missing or wrong"),
    ],
)
def test_refusals_are_permanent_and_say_why(
    chat: CompiledScenario, status: int, error: type[Exception], words: str
) -> None:
    fleet, slept = client(chat, lambda request: httpx.Response(status, json={"error": "Invalid request body"}))
    with pytest.raises(error, match=words):
        fleet.set_replicas(ScaleRequest("chat", H100, 4, None, "d"))
    assert slept == []  # a refusal is not retried


def test_an_unreachable_dashboard_is_transient(chat: CompiledScenario) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    fleet, _ = client(chat, refuse, retries=1)
    with pytest.raises(TransientError, match="is unreachable"):
        fleet.snapshot(datetime.now(UTC))


def test_the_token_is_sent_and_never_shown(chat: CompiledScenario, tmp_path: Path) -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization", ""))
        return httpx.Response(401, json={"error": f"bad token {SECRET}?"})

    token_file = tmp_path / "auth_token"
    token_file.write_text(SECRET + "\n", encoding="utf-8")
    fleet, _ = client(chat, answer, token_file=token_file)
    with pytest.raises(PermanentError) as caught:
        fleet.set_replicas(ScaleRequest("chat", H100, 4, None, "d"))
    assert seen == [f"Bearer {SECRET}"]
    assert SECRET not in str(caught.value) and SECRET not in repr(fleet)
    with pytest.raises(PermanentError, match="token file"):
        RayServeDashboard(chat, "http://127.0.0.1:8265", token_file=tmp_path / "missing")


def test_replicas_by_state() -> None:
    details = {
        "applications": {
            "chat": {
                "deployments": {
                    "chat": {
                        "target_num_replicas": 4,
                        "replicas": [
                            {"state": "RUNNING"}, {"state": "RUNNING"}, {"state": "STARTING"}, {"state": "STOPPING"},
                        ],
                    },
                    "other": {"target_num_replicas": 1, "replicas": [{"state": "RUNNING"}]},
                }
            }
        }
    }  # fmt: skip
    got = replicas_of(details, {("chat", "chat"): ("chat", H100)})
    assert got == {"chat": {H100: got["chat"][H100]}}
    r = got["chat"][H100]
    assert (r.ready, r.starting, r.spec) == (2, 1, 4)
