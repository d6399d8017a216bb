"""Signed tokens (itsdangerous): per-job read tickets, and the URL tokens of unsigned providers."""

from __future__ import annotations

from itsdangerous import BadSignature, URLSafeSerializer

__all__ = ["Tokens"]


class Tokens:
    """Each token kind has its own salt, so a ticket is never accepted as a URL token or the reverse."""

    def __init__(self, secret_key: str) -> None:
        self._tickets = URLSafeSerializer(secret_key, salt="relay.job-ticket")
        self._hook_tokens = URLSafeSerializer(secret_key, salt="relay.hook-url")

    def ticket(self, source: str, job_id: str) -> str:
        """A read-only token for one job."""
        return self._tickets.dumps([source, job_id])

    def ticket_job(self, ticket: str) -> tuple[str, str] | None:
        """The job a ticket reads, or None when it is not one of ours."""
        try:
            source, job_id = self._tickets.loads(ticket)
        except (BadSignature, ValueError, TypeError):
            return None
        return str(source), str(job_id)

    def hook_token(self, source: str) -> str:
        """The token that authenticates `POST /hooks/{source}/{token}`."""
        return self._hook_tokens.dumps(source)

    def hook_token_valid(self, source: str, token: str) -> bool:
        try:
            return bool(self._hook_tokens.loads(token) == source)
        except BadSignature:
            return False
