"""The web dashboard every master serves at ``/``: cluster, queue and workers, tasks,
workflows, locks, agents and schedules, live through ``WS /api/v1/events``.

It owns the page's static files (hand-written ES modules, CSS and SVG shipped as package data:
nothing is fetched at run time) and the browser's way in: a login that puts the API token in an
HttpOnly, SameSite=Strict cookie, and the CSRF check every cookie-carried write must pass. It
does not own any data: the pages read and change the cluster through the same JSON API as the
CLI, with the caller's own role. Entry point: :class:`DashboardMiddleware`, installed in
:func:`agentflow.api.create_app` between the browser guard and auth.
"""

from agentflow.api.dashboard._middleware import DashboardMiddleware

__all__ = ["DashboardMiddleware"]
