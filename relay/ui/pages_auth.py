"""Signing in with an API key and out again."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from relay.routes.common import services
from relay.ui.csrf import new_token, read_form, token_ok
from relay.ui.guard import current_session, sessions, signed_in
from relay.ui.rendering import base_path, render, see_other
from relay.ui.session import COOKIE, SIGN_IN_COOKIE, set_cookie

__all__ = ["sign_in", "sign_in_form", "sign_out"]

# Long enough to type a key; the form is served again with a new token after this.
_SIGN_IN_FORM_S = 3600.0


def _next_page(request: Request, wanted: str) -> str:
    """Where to go after signing in: a dashboard page asked for, never another site (`//host`)."""
    ui = base_path(request)
    if wanted.startswith(f"{ui}/") and not wanted.startswith("//") and "\\" not in wanted:
        return wanted
    return f"{ui}/"


def _form(request: Request, next_page: str, problem: str | None = None, status: int = 200) -> Response:
    token = new_token()
    values = {"next": next_page, "sign_in_token": token, "problem": problem}
    page = render(request, "sign_in.html", values, status)
    set_cookie(request, page, SIGN_IN_COOKIE, token, _SIGN_IN_FORM_S)
    return page


async def sign_in_form(request: Request) -> Response:
    """The sign-in form (or the jobs list, for a session already signed in)."""
    wanted = _next_page(request, request.query_params.get("next", ""))
    if current_session(request) is not None:
        return see_other(wanted)
    return _form(request, wanted)


async def sign_in(request: Request) -> Response:
    """Check the key, then start a session: a new cookie (and CSRF token) at each sign-in."""
    form = await read_form(request)
    wanted = _next_page(request, form.one("next"))
    if not token_ok(form, request.cookies.get(SIGN_IN_COOKIE)):
        return _form(request, wanted, "The form had expired: sign in again.", 403)
    api_key = sessions(request).known_key(form.one("api_key").strip())
    if api_key is None:
        return _form(request, wanted, "That API key is not one of this relay's.", 401)
    store = sessions(request)
    answer = see_other(wanted)
    set_cookie(request, answer, COOKIE, store.issue(api_key, services(request).clock()), store.max_age_s)
    answer.delete_cookie(SIGN_IN_COOKIE, path=base_path(request))
    return answer


@signed_in
async def sign_out(request: Request) -> Response:
    answer = see_other(f"{base_path(request)}/sign-in")
    answer.delete_cookie(COOKIE, path=base_path(request))
    return answer
