"""The dashboard at `/ui`: server-rendered pages (Jinja2, htmx vendored in static/) on the same store and
rules as the API. `ui = false` leaves it out."""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from relay.routes.common import RawPathRoute
from relay.settings import Settings
from relay.ui import pages_auth, pages_deliveries, pages_jobs, pages_sources, pages_subscriptions
from relay.ui.callback_window import CallbackWindow

__all__ = ["MOUNT", "CallbackWindow", "routes"]

MOUNT = "/ui"


def routes(settings: Settings) -> list[BaseRoute]:
    """The `/ui` mount, or nothing when the dashboard is turned off."""
    if not settings.ui:
        return []
    pages: list[BaseRoute] = [
        Route("/", pages_jobs.jobs_list, methods=["GET"]),
        Route("/sign-in", pages_auth.sign_in_form, methods=["GET"]),
        Route("/sign-in", pages_auth.sign_in, methods=["POST"]),
        Route("/sign-out", pages_auth.sign_out, methods=["POST"]),
        Route("/jobs/live", pages_jobs.jobs_live, methods=["GET"]),
        RawPathRoute("/jobs/{source}/{job_id}", pages_jobs.job_page, methods=["GET"]),
        Route("/deliveries", pages_deliveries.deliveries_list, methods=["GET"]),
        Route("/deliveries/{id}", pages_deliveries.delivery_item, methods=["GET"]),
        Route("/deliveries/{id}/retry", pages_deliveries.retry_item, methods=["POST"]),
        Route("/subscriptions", pages_subscriptions.subscriptions_list, methods=["GET"]),
        Route("/subscriptions", pages_subscriptions.create, methods=["POST"]),
        Route("/subscriptions/{id}/enabled", pages_subscriptions.set_enabled, methods=["POST"]),
        Route("/subscriptions/{id}/rotate-secret", pages_subscriptions.rotate, methods=["POST"]),
        Route("/subscriptions/{id}/delete", pages_subscriptions.delete, methods=["POST"]),
        Route("/sources", pages_sources.sources_list, methods=["GET"]),
        Mount("/static", app=StaticFiles(packages=[("relay.ui", "static")]), name="ui-static"),
    ]
    return [Mount(MOUNT, routes=pages)]
