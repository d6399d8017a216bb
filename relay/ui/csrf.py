"""Forms and their CSRF tokens: every form that changes something carries the session's token (or, to sign
in, the token of the sign-in cookie), and a POST without the right one is refused."""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import parse_qs

from starlette.requests import Request

from relay.errors import BadRequest
from relay.routes.common import read_body

__all__ = ["FIELD", "Form", "new_token", "read_form", "token_ok"]

FIELD = "csrf"
# A dashboard form holds a few short fields; anything larger is no form of ours.
_MAX_FORM_BYTES = 64 * 1024


class Form(dict[str, list[str]]):
    """An urlencoded form body: each field's values, in order."""

    def one(self, name: str) -> str:
        """The field's first value, or "" when it is absent."""
        values = self.get(name)
        return values[0] if values else ""


async def read_form(request: Request) -> Form:
    """The body as an urlencoded form (what a browser sends for `<form method="post">`)."""
    body = await read_body(request, _MAX_FORM_BYTES)
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise BadRequest("the form is not UTF-8", "bad_form") from None
    return Form(parse_qs(text, keep_blank_values=True))


def new_token() -> str:
    return secrets.token_urlsafe(24)


def token_ok(form: Form, expected: str | None) -> bool:
    """Whether the form's CSRF field is `expected` (compared in constant time)."""
    presented = form.one(FIELD)
    if not expected or not presented:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())
