"""Trivial Serve applications for the integration tests, one deployment each, named as the rendered config names
them (`chat`, `tiny`, `tp`), answering every request. The Serve controller imports them from the rendered config's
`import_path` (`tests.integration.serve_app:app`, `:tiny_app`, `:tp_app`)."""

from __future__ import annotations

from ray import serve


@serve.deployment(name="chat")
class Chat:
    async def __call__(self, request: object) -> str:
        return "ok"


app = Chat.bind()


@serve.deployment(name="tiny")
class Tiny:
    async def __call__(self, request: object) -> str:
        return "ok"


@serve.deployment(name="tp")
class TensorParallel:
    async def __call__(self, request: object) -> str:
        return "ok"


tiny_app = Tiny.bind()
tp_app = TensorParallel.bind()
