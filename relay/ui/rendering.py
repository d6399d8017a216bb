"""The dashboard's templates (Jinja2, autoescaped: every value from a provider is shown as text) and the
headers every page carries."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

import jinja2
import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.templating import Jinja2Templates

from relay.models import iso

__all__ = ["base_path", "is_htmx", "query", "render", "render_fragment", "see_other"]

# Scripts and styles from relay's own static files only: an injected `<script>` would not run even if some
# value escaped its escaping. htmx's inline indicator style is turned off in the page's htmx-config.
_SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


def _pretty(value: Any) -> str:
    """JSON indented for reading; a value JSON cannot hold (none should reach here) is shown as its repr."""
    try:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        return repr(value)


def _when(ts: float | None) -> str:
    return (iso(ts) or "—").replace("T", " ")


def _segment(text: str) -> str:
    """`text` as one URL path segment (a job ID may hold `/`, `?` or `#`)."""
    return quote(text, safe="")


_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("relay.ui", "templates"),
    autoescape=True,  # every template, whatever its name: nothing is ever rendered unescaped
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.filters.update(pretty=_pretty, when=_when, segment=_segment)
templates = Jinja2Templates(env=_ENV)


def base_path(request: Request) -> str:
    """Where the dashboard is mounted, as the browser sees it (`/ui`, under any proxy prefix)."""
    return str(request.scope.get("root_path") or "/ui")


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def query(params: dict[str, Any]) -> str:
    """`?a=1&b=2` of the non-empty `params`, or "" when none is set."""
    kept = {k: v for k, v in params.items() if v not in (None, "")}
    return f"?{urlencode(kept)}" if kept else ""


def _context(request: Request, values: dict[str, Any]) -> dict[str, Any]:
    session = getattr(request.state, "session", None)
    return {
        "request": request,
        "ui": base_path(request),
        "csrf": session.csrf if session is not None else "",
        "signed_in": session is not None,
        "active": "",
        "problem": None,
        **values,
    }


def render(request: Request, name: str, values: dict[str, Any], status: int = 200) -> Response:
    """A whole page."""
    html = _ENV.get_template(name).render(_context(request, values))
    return HTMLResponse(html, status, headers=_SECURITY_HEADERS)


def render_fragment(request: Request, name: str, values: dict[str, Any]) -> str:
    """A piece of a page (an htmx swap, a live update), as text."""
    return _ENV.get_template(name).render(_context(request, values))


def see_other(url: str) -> Response:
    """After a form's POST, the page to show (303: the browser GETs it; a reload does not post again)."""
    return Response(status_code=303, headers={"location": url, "cache-control": "no-store"})
