"""The web console: one HTML page and its plain JavaScript and CSS, served from ``static/``.

The page calls the REST API with ``fetch``; nothing is rendered on the server. Responses carry
a strict Content-Security-Policy (scripts and styles from this origin only, no inline code), so
a workflow id or an event attribute that contains markup can never run as code; the script
also inserts all data as text.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC_DIR = Path(__file__).parent / "static"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

routes = web.RouteTableDef()


@routes.get("/")
async def index(request: web.Request) -> web.FileResponse:
    """The console page."""
    return web.FileResponse(STATIC_DIR / "index.html", headers=SECURITY_HEADERS)


@routes.get("/favicon.ico")
async def favicon(request: web.Request) -> web.FileResponse:
    """The console's icon."""
    return web.FileResponse(STATIC_DIR / "favicon.svg", headers={"Content-Type": "image/svg+xml"})


@routes.get("/static/{name}")
async def static_asset(request: web.Request) -> web.FileResponse:
    """A script, style sheet or image of the console, revalidated on every load (``no-cache``
    with an ETag) so that a browser never pairs a new page with an old script."""
    name = request.match_info["name"]
    path = (STATIC_DIR / name).resolve()
    if path.parent != STATIC_DIR.resolve() or not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(
        path, headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    )
