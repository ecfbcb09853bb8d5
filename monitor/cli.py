"""The ``monitor`` command line.

monitor run | demo | migrate | check-config | analyze | simulate | users | apikeys | registry

Errors the user can fix print one line (``monitor: ...``) and exit 2; a traceback is
never the only message.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from monitor.config import Config, apply_env, config_errors, load_config
from monitor.errors import ConfigError, MonitorError
from monitor.logs import setup_logging

log = logging.getLogger("monitor")

# Parts add their sub-commands here: modules with ``register(subparsers)``.
COMMAND_MODULES: list[str] = ["monitor.demo", "monitor.sim.cli", "monitor.sim.registry", "monitor.series.cli",
                              "monitor.detectors.analyze"]


def _db_url(args: argparse.Namespace) -> str:
    if getattr(args, "database_url", None):
        return str(args.database_url)
    if getattr(args, "config", None):
        return load_config(args.config).database.url
    return apply_env(Config()).database.url


def _run(coro: Coroutine[Any, Any, int]) -> int:
    return asyncio.run(coro)


# --- check-config -------------------------------------------------------------------


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        with open(args.file, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        print(f"monitor: {args.file}: cannot read: {e.strerror}", file=sys.stderr)
        return 2
    cfg, errs = config_errors(text, args.file)
    for err in errs:
        print(str(err), file=sys.stderr)
    if errs or cfg is None:
        print(f"monitor: {len(errs)} error(s) in {args.file}", file=sys.stderr)
        return 2
    print(cfg.summary())
    return 0


# --- migrate ------------------------------------------------------------------------


def cmd_migrate(args: argparse.Namespace) -> int:
    from monitor.store.migrate import migrate_url

    applied, ts = asyncio.run(migrate_url(_db_url(args)))
    path = "TimescaleDB" if ts else "plain PostgreSQL"
    print(f"{len(applied)} migration script(s) applied ({path} path)")
    for a in applied:
        print(f"  {a}")
    return 0


# --- run ----------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from monitor.app import ALL_ROLES, run

    cfg = load_config(args.config)
    roles = ALL_ROLES if args.role == "all" else frozenset(args.role.split(","))
    unknown = roles - ALL_ROLES
    if unknown:
        raise ConfigError(f"--role: unknown {', '.join(sorted(unknown))}; one of all, {', '.join(sorted(ALL_ROLES))}")
    log.info("monitor starting: %s; roles %s", cfg.summary(), ",".join(sorted(roles)))
    run(cfg, roles=roles, host=args.host, port=args.port)
    return 0


# --- users / apikeys ------------------------------------------------------------------


async def _with_conn(url: str, fn: Callable[[Any], Coroutine[Any, Any, int]]) -> int:
    import psycopg
    from psycopg.rows import dict_row

    from monitor.errors import DatabaseUnavailable

    try:
        conn = await psycopg.AsyncConnection.connect(url, row_factory=dict_row, connect_timeout=5)
    except psycopg.OperationalError as e:
        raise DatabaseUnavailable(f"cannot connect to the database: {str(e).strip().splitlines()[0]}") from e
    async with conn:
        return await fn(conn)


def _read_password(args: argparse.Namespace) -> str:
    if sys.stdin.isatty():
        pw = getpass.getpass("password: ")
        if getpass.getpass("again: ") != pw:
            raise ConfigError("passwords differ")
        return pw
    return sys.stdin.readline().rstrip("\n")


def _cli_actor() -> Any:
    from monitor.store.audit import Actor

    return Actor(f"cli:{os.environ.get('USER', 'unknown')}", "admin", "local")


def cmd_users(args: argparse.Namespace) -> int:
    from monitor.web import auth

    url = _db_url(args)
    if args.action == "add":
        pw = _read_password(args)

        async def add(conn: Any) -> int:
            uid = await auth.add_user(conn, _cli_actor(), args.name, args.role, pw)
            print(f"user {args.name} added (id {uid}, role {args.role})")
            return 0

        return _run(_with_conn(url, add))
    if args.action == "passwd":
        pw = _read_password(args)

        async def passwd(conn: Any) -> int:
            await auth.set_password(conn, _cli_actor(), args.name, pw)
            print(f"password of {args.name} changed; their sessions ended")
            return 0

        return _run(_with_conn(url, passwd))
    if args.action in ("disable", "enable", "role"):

        async def change(conn: Any) -> int:
            if args.action == "role":
                await auth.set_user(conn, _cli_actor(), args.name, role=args.role)
            else:
                await auth.set_user(conn, _cli_actor(), args.name, disabled=args.action == "disable")
            print(f"user {args.name}: {args.action} done")
            return 0

        return _run(_with_conn(url, change))

    async def lst(conn: Any) -> int:
        rows = await auth.list_users(conn)
        if args.json:
            print(json.dumps(rows, default=str))
        else:
            for r in rows:
                print(f"{r['username']:<24} {r['role']:<11} {'disabled' if r['disabled'] else 'active'}")
        return 0

    return _run(_with_conn(url, lst))


def cmd_apikeys(args: argparse.Namespace) -> int:
    from monitor.web import auth

    url = _db_url(args)
    if args.action == "add":

        async def add(conn: Any) -> int:
            key = await auth.add_api_key(conn, _cli_actor(), args.name, args.site)
            print(key)
            print(f"# API key {args.name} created; it is shown only this once", file=sys.stderr)
            return 0

        return _run(_with_conn(url, add))
    if args.action == "revoke":

        async def revoke(conn: Any) -> int:
            await auth.revoke_api_key(conn, _cli_actor(), args.name)
            print(f"API key {args.name} revoked")
            return 0

        return _run(_with_conn(url, revoke))

    async def lst(conn: Any) -> int:
        for r in await auth.list_api_keys(conn):
            print(f"{r['name']:<24} mk_{r['prefix']}_…  site={r['site_id'] or '*'}  {'revoked' if r['revoked'] else ''}")
        return 0

    return _run(_with_conn(url, lst))


# --- parser -------------------------------------------------------------------------

def simulate_actions(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """The sub-actions of the one ``simulate`` command (``simulate scenes``, ``simulate registry``).

    Parts call this from their ``register(sub)``; the first call creates ``simulate``.
    """
    parser = sub.choices.get("simulate")
    if parser is None:
        parser = sub.add_parser("simulate", help="generate a simulated city's data (scenes, registry, ...)")
        return parser.add_subparsers(dest="action", required=True, metavar="WHAT")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return parser.add_subparsers(dest="action", required=True, metavar="WHAT")



def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="monitor", description="LPG supervision centre (燃气智慧监管)")
    p.add_argument("--log-json", action="store_true", help="one JSON object per log line")
    p.add_argument("--log-level", default=os.environ.get("MONITOR_LOG_LEVEL", "INFO"))
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("check-config", help="validate a configuration file")
    c.add_argument("file")
    c.set_defaults(func=cmd_check_config)

    c = sub.add_parser("migrate", help="apply database migrations")
    c.add_argument("--config")
    c.add_argument("--database-url")
    c.set_defaults(func=cmd_migrate)

    c = sub.add_parser("run", help="run the service")
    c.add_argument("--config", required=True)
    c.add_argument("--role", default="all", help="all, or a comma list of api, video, control")
    c.add_argument("--host")
    c.add_argument("--port", type=int)
    c.set_defaults(func=cmd_run)

    c = sub.add_parser("users", help="people and their roles")
    c.add_argument("--config")
    c.add_argument("--database-url")
    us = c.add_subparsers(dest="action", required=True)
    a = us.add_parser("add", help="add a person (password from standard input)")
    a.add_argument("name")
    a.add_argument("--role", required=True, choices=["viewer", "operator", "supervisor", "admin"])
    a = us.add_parser("passwd", help="change a password (from standard input)")
    a.add_argument("name")
    a = us.add_parser("role", help="change a role")
    a.add_argument("name")
    a.add_argument("--role", required=True, choices=["viewer", "operator", "supervisor", "admin"])
    for act in ("disable", "enable"):
        a = us.add_parser(act)
        a.add_argument("name")
    a = us.add_parser("list")
    a.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_users)

    c = sub.add_parser("apikeys", help="keys for apps and devices")
    c.add_argument("--config")
    c.add_argument("--database-url")
    ks = c.add_subparsers(dest="action", required=True)
    a = ks.add_parser("add", help="create a key; printed once")
    a.add_argument("name")
    a.add_argument("--site")
    a = ks.add_parser("revoke")
    a.add_argument("name")
    ks.add_parser("list")
    c.set_defaults(func=cmd_apikeys)

    for mod in COMMAND_MODULES:
        importlib.import_module(mod).register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(json_lines=args.log_json, level=args.log_level)
    try:
        rc = args.func(args)
    except MonitorError as e:
        print(f"monitor: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
