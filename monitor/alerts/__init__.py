"""Alerts and incidents: findings become alerts with a lifecycle operators can trust.

- ``model``      the alert, its states and the transitions people may make
- ``policy``     holds, ack timeouts and latching per rule; silences and maintenance
- ``book``       the pure core: findings and the clock in, changes out
- ``engine``     the async edge: batches findings into PostgreSQL, ticks, tells the wall
- ``evidence``   evidence packs (snapshot, clip, scale trace, scans), gathered after commit
- ``incidents``  an alert with its evidence, actions and disposition; export archives
- ``silences``   silences and maintenance windows, audited
- ``stats``      operators' load per hour
- ``api``        the HTTP routes; ``service`` wires it all into the app

``correlation/`` (owned by the series part) holds the rules that correlate the series.
"""

from __future__ import annotations

from aiohttp import web


def setup(app: web.Application) -> None:
    """Plug the alerts part into the app: routes (api role), and one cleanup context (engine,
    evidence) in every role, since findings are made in every role."""
    from monitor.alerts import api
    from monitor.alerts.service import alerts_ctx
    from monitor.web.keys import ROLES

    if "api" in app[ROLES]:
        app.add_routes(api.routes)
    app.cleanup_ctx.append(alerts_ctx)  # the engine runs wherever findings are made (every role)
