"""The Ray dashboard's REST API as the loop's `Actuator` and `InventorySource` for a Serve fleet (httpx).

- `set_replicas`: `POST /api/v1/applications/{app}/deployments/{deployment}/scale` with `{"target_num_replicas": N}`,
  which Serve accepts for applications deployed with `external_scaler_enabled: true` (`fleetscale render rayserve`
  renders them so) and applies asynchronously, keeping the replicas that run. 200: applied (the spec is N). 503 (no
  Serve controller) and transport failures are retried with backoff, then `TransientError`; 400 (an unknown name, a
  bad body) and 412 (external scaling disabled, or the deployment being deleted) are `PermanentError`s that say so;
  404 is `NotFound`; 401 and 403 say the token is missing or wrong.
- `snapshot`: `GET /api/serve/applications/`: per managed deployment, the replicas RUNNING (ready), those starting
  or recovering (starting), and the target Serve holds (the spec).

Auth: Ray turns token auth on for local clusters since 2.59. The token (`Authorization: Bearer ...`) comes from
`token` or the file `token_file` (Ray writes `~/.ray/auth_token`); it is never logged and never part of an error.
Which (service, shape) a deployment is comes from the scenario's bindings, as the render names them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from adapters.rayserve.render import bindings
from autoscaler.compiled import CompiledScenario
from autoscaler.errors import AutoscalerError, NotFound, PermanentError, TransientError
from autoscaler.model import ShapeReplicas
from autoscaler.ports import Inventory, ScaleRequest, ScaleResult
from autoscaler.shapes import Shape

READY_STATES = frozenset({"RUNNING"})
STARTING_STATES = frozenset({"STARTING", "UPDATING", "RECOVERING", "PENDING_MIGRATION"})


def _token(token: str | None, token_file: Path | None) -> str | None:
    if token:
        return token.strip()
    if token_file is None:
        return None
    try:
        return token_file.read_text(encoding="utf-8").strip() or None
    except OSError as exc:
        raise PermanentError(f"Ray token file {token_file}: {exc.strerror or exc}") from None


class RayServeDashboard:
    """See the module docstring. `retries` on 503 and transport errors, waiting `backoff_s`, doubling."""

    def __init__(
        self,
        config: CompiledScenario,
        url: str,
        *,
        token: str | None = None,
        token_file: Path | None = None,
        timeout_s: float = 10.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.retries = retries
        self.backoff_s = backoff_s
        self._sleep = sleep
        secret = _token(token, token_file)
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s, transport=transport)
        self._where: dict[tuple[str, str], tuple[str, Shape]] = {
            (b.app, b.deployment): (b.service, b.shape) for b in bindings(config)
        }
        self._names: dict[tuple[str, Shape], tuple[str, str]] = {v: k for k, v in self._where.items()}

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:  # no token in it
        return f"RayServeDashboard({self.url!r})"

    # ── HTTP ────────────────────────────────────────────────────────────────────────────────────────────────────

    def _call(self, method: str, path: str, what: str, json: Any = None) -> httpx.Response:
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                response = self._client.request(method, path, json=json)
            except httpx.TimeoutException:
                problem: AutoscalerError = TransientError(f"Ray dashboard at {self.url}: {what} timed out")
            except httpx.TransportError as exc:
                problem = TransientError(f"Ray dashboard at {self.url} is unreachable ({type(exc).__name__})")
            else:
                if response.status_code != 503:
                    return response
                problem = TransientError(f"Ray dashboard at {self.url}: {what}: 503 {_error(response)}")
            if attempt < self.retries:
                self._sleep(delay)
                delay *= 2
        raise problem

    # ── Actuator ────────────────────────────────────────────────────────────────────────────────────────────────

    def deployment_of(self, request: ScaleRequest) -> tuple[str, str]:
        workload = request.workload
        if workload is not None and workload.is_ray_serve:
            return str(workload.app), workload.name
        return self._names.get((request.service, request.shape), (request.service, request.service))

    def set_replicas(self, request: ScaleRequest) -> ScaleResult:
        app, name = self.deployment_of(request)
        what = f"scaling {app}/{name} to {request.replicas}"
        response = self._call(
            "POST",
            f"/api/v1/applications/{app}/deployments/{name}/scale",
            what,
            json={"target_num_replicas": request.replicas},
        )
        status = response.status_code
        if status == 200:
            return ScaleResult(request.replicas)
        detail = _error(response)
        if status in (401, 403):
            raise PermanentError(f"Ray dashboard at {self.url}: {what}: {status}: the token is missing or wrong")
        if status == 404:
            raise NotFound(f"Ray dashboard at {self.url}: {what}: no such application or deployment ({detail})")
        if status == 412:
            raise PermanentError(
                f"Ray dashboard at {self.url}: {what}: 412 {detail} (deploy the application with "
                "external_scaler_enabled: true, as `fleetscale render rayserve` does)"
            )
        raise PermanentError(f"Ray dashboard at {self.url}: {what}: {status} {detail}")

    # ── InventorySource ─────────────────────────────────────────────────────────────────────────────────────────

    def snapshot(self, now: datetime) -> Inventory:
        response = self._call("GET", "/api/serve/applications/", "reading the Serve applications")
        if response.status_code in (401, 403):
            raise PermanentError(f"Ray dashboard at {self.url}: {response.status_code}: the token is missing or wrong")
        if response.status_code != 200:
            raise TransientError(f"Ray dashboard at {self.url}: {response.status_code} {_error(response)}")
        try:
            details = response.json()
        except ValueError:
            raise TransientError(f"Ray dashboard at {self.url}: the applications are not JSON") from None
        return Inventory(replicas_of(details, self._where))


def replicas_of(
    details: Mapping[str, Any], where: Mapping[tuple[str, str], tuple[str, Shape]]
) -> dict[str, dict[Shape, ShapeReplicas]]:
    """Per managed deployment of Serve's instance details (`GET /api/serve/applications/`), its replicas."""
    out: dict[str, dict[Shape, ShapeReplicas]] = {}
    for app_name, app in (details.get("applications") or {}).items():
        for dep_name, dep in (app.get("deployments") or {}).items():
            key = where.get((app_name, dep_name))
            if key is None:
                continue
            states = [str(r.get("state", "")) for r in dep.get("replicas") or []]
            ready = sum(1 for s in states if s in READY_STATES)
            starting = sum(1 for s in states if s in STARTING_STATES)
            target = dep.get("target_num_replicas")
            service, shape = key
            out.setdefault(service, {})[shape] = ShapeReplicas(
                ready, starting, int(target) if isinstance(target, int | float) else None
            )
    return out


def _error(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, Mapping) and "error" in body:
        return str(body["error"])[:200]
    return str(body)[:200]
