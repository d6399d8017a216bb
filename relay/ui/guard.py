"""Every dashboard page but the sign-in form needs a session; every POST, the session's CSRF token. A
failure of the action itself (a RelayError) is shown on the page, not as the API's JSON."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from relay.errors import RelayError
from relay.routes.common import services
from relay.ui.csrf import read_form, token_ok
from relay.ui.rendering import base_path, is_htmx, query, render, render_fragment
from relay.ui.session import COOKIE, Session, Sessions

__all__ = ["Handler", "sessions", "signed_in"]

Handler = Callable[[Request], Awaitable[Response]]


def sessions(request: Request) -> Sessions:
    settings = services(request).settings
    return Sessions(settings.secret_key, settings.api_keys, settings.ui_session_max_age_s)


def current_session(request: Request) -> Session | None:
    return sessions(request).read(request.cookies.get(COOKIE), services(request).clock())


def _to_sign_in(request: Request) -> Response:
    """The sign-in form, coming back here afterwards (htmx is told to load it as a whole page)."""
    back = request.url.path if request.method == "GET" else ""
    if request.url.query and back:
        back += f"?{request.url.query}"
    url = f"{base_path(request)}/sign-in{query({'next': back})}"
    if is_htmx(request):
        return Response(status_code=200, headers={"hx-redirect": url})
    return Response(status_code=303, headers={"location": url, "cache-control": "no-store"})


def _problem(request: Request, message: str, status: int) -> Response:
    """What went wrong: the whole page, or for htmx the page's alert box (htmx swaps no 4xx answer)."""
    if is_htmx(request):
        html = render_fragment(request, "problem.html", {"message": message})
        headers = {"hx-retarget": "#problem", "hx-reswap": "innerHTML"}
        return HTMLResponse(html, 200, headers=headers)
    return render(request, "problem_page.html", {"message": message}, status)


def signed_in(handler: Handler) -> Handler:
    """`handler` for a signed-in session only; a POST must also carry the session's CSRF token."""

    @wraps(handler)
    async def guarded(request: Request) -> Response:
        session = current_session(request)
        if session is None:
            return _to_sign_in(request)
        request.state.session = session
        try:
            if request.method == "POST":
                form = await read_form(request)
                if not token_ok(form, session.csrf):
                    return _problem(request, "This form is stale or was not sent by this dashboard.", 403)
                request.state.form = form
            return await handler(request)
        except RelayError as exc:
            return _problem(request, exc.message, exc.status)

    return guarded
