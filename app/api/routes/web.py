"""``GET /``: the small web page (static files shipped in the package under ``app/web``).

The page calls only the public API from the browser: ``/v1`` with the API key the user types, and
``/readyz`` (no key) for the default class set's name, the model (a note when its weights are
random) and why the server is not ready yet. The server embeds nothing in it. No build step and
nothing from a CDN.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

router = APIRouter(include_in_schema=False)

_MEDIA_TYPES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
                "style.css": "text/css; charset=utf-8"}
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; "
                               "base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


@cache
def _read(name: str) -> bytes:
    return resources.files("app.web").joinpath(name).read_bytes()


def _file(name: str) -> Response:
    return Response(_read(name), media_type=_MEDIA_TYPES[name], headers=_HEADERS)


@router.get("/")
async def index() -> Response:
    return _file("index.html")


@router.get("/web/{name}")
async def asset(name: str) -> Response:
    if name not in _MEDIA_TYPES or name == "index.html":
        return Response("Not found", status_code=404, media_type="text/plain")
    return _file(name)
