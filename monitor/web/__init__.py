"""The aiohttp server: REST API, WebSocket hub, auth and roles, static wallboard, metrics."""
