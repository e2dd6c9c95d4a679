"""A trivial Serve application for the integration tests: one deployment named `chat` that answers every request.
Imported by the Serve controller from the rendered config's `import_path` (`tests.integration.serve_app:app`)."""

from __future__ import annotations

from ray import serve


@serve.deployment(name="chat")
class Chat:
    async def __call__(self, request: object) -> str:
        return "ok"


app = Chat.bind()
