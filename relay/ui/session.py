"""The dashboard's sign-in: a signed session cookie (itsdangerous, `secret_key`) naming which API key signed
in, when, and the session's CSRF token."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeSerializer
from starlette.requests import Request
from starlette.responses import Response

__all__ = ["COOKIE", "SIGN_IN_COOKIE", "Session", "Sessions", "set_cookie"]

COOKIE = "relay_ui"
# The sign-in form's own CSRF token, before there is a session (a double-submitted cookie).
SIGN_IN_COOKIE = "relay_ui_sign_in"
COOKIE_PATH = "/ui"


@dataclass(frozen=True)
class Session:
    key_id: str  # a digest of the API key that signed in: the cookie never holds the key
    csrf: str
    issued_at: float


def key_id(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()[:32]


class Sessions:
    """Issues and reads session cookies; a session ends at its age limit or when its key leaves `api_keys`."""

    def __init__(self, secret_key: str, api_keys: tuple[str, ...], max_age_s: float) -> None:
        # Its own salt: no ticket or hook token is ever taken as a session, nor the reverse.
        self._serializer = URLSafeSerializer(secret_key, salt="relay.ui-session")
        self._api_keys = api_keys
        self.max_age_s = max_age_s

    def known_key(self, presented: str) -> str | None:
        """The configured key `presented` is, compared with every key so timing tells nothing; else None."""
        found = None
        for known in self._api_keys:
            if hmac.compare_digest(presented.encode(), known.encode()):
                found = known
        return found

    def issue(self, api_key: str, now: float) -> str:
        """A cookie value for a session of `api_key` starting `now`."""
        return self._serializer.dumps([key_id(api_key), secrets.token_urlsafe(24), now])

    def read(self, cookie: str | None, now: float) -> Session | None:
        """The session a cookie holds, or None: not ours, expired, or its key no longer configured."""
        if not cookie:
            return None
        try:
            kid, csrf, issued_at = self._serializer.loads(cookie)
        except (BadSignature, ValueError, TypeError):
            return None
        if not isinstance(issued_at, int | float) or not 0 <= now - issued_at < self.max_age_s:
            return None
        if not any(hmac.compare_digest(kid, key_id(known)) for known in self._api_keys):
            return None
        return Session(str(kid), str(csrf), float(issued_at))


def set_cookie(request: Request, response: Response, name: str, value: str, max_age_s: float) -> None:
    """A cookie only the dashboard's own pages send back: HttpOnly, SameSite=Strict, Secure over HTTPS."""
    response.set_cookie(
        name,
        value,
        max_age=int(max_age_s),
        path=request.scope.get("root_path") or COOKIE_PATH,  # the dashboard's mount, behind any proxy prefix
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
