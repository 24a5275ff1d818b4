"""The service's published HTTP contract: `bot/openapi.yaml` (OpenAPI 3.1), served as
`GET /openapi.json` and `GET /openapi.yaml`. The YAML file is the source; tests run
schemathesis against it on a live app, so it stays true to the handlers."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

SPEC_PATH = Path(__file__).with_name("openapi.yaml")


@lru_cache(maxsize=1)
def spec_text() -> str:
    return SPEC_PATH.read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def spec() -> dict[str, Any]:
    """The specification as a dict (parsed once per process)."""
    return yaml.safe_load(spec_text())


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(spec())


async def openapi_yaml(request: web.Request) -> web.Response:
    return web.Response(text=spec_text(), content_type="application/yaml", charset="utf-8")


def register_openapi(app: web.Application) -> None:
    app.router.add_get("/openapi.json", openapi_json)
    app.router.add_get("/openapi.yaml", openapi_yaml)
