"""What a process does when told of changes another process committed to a shared database."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Changes"]


@dataclass(frozen=True, slots=True)
class Changes:
    """Hints, like the in-process hub's: whoever is woken reads the database."""

    job_changed: Callable[[str, str], object]  # wake the job's waiters and streams
    deliveries_queued: Callable[[], None]  # wake the deliverer
    missed: Callable[[], None]  # hints may have been lost: wake everything held
