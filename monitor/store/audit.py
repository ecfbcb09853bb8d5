"""The append-only audit trail. Write it in the same transaction as the action it records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb


@dataclass(frozen=True)
class Actor:
    """Who does something: a person (with role), an API key, or the system itself."""

    name: str
    role: str
    address: str | None = None
    user_id: int | None = None

    @classmethod
    def system(cls, what: str = "system") -> Actor:
        return cls(name=what, role="system")


async def record(
    conn: psycopg.AsyncConnection[Any],
    actor: Actor,
    action: str,
    target: str | None = None,
    *,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> int:
    """Append one audit row on ``conn`` (inside the caller's transaction); returns its id."""
    cur = await conn.execute(
        """INSERT INTO audit (actor, role, action, target, reason, address, details)
           VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id""",
        (actor.name, actor.role, action, target, reason, actor.address, Jsonb(details or {})),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row["id"] if isinstance(row, dict) else row[0])


async def list_audit(
    conn: psycopg.AsyncConnection[Any], *, target: str | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    if target is None:
        cur = await conn.execute("SELECT * FROM audit ORDER BY ts DESC, id DESC LIMIT %s", (limit,))
    else:
        cur = await conn.execute(
            "SELECT * FROM audit WHERE target = %s OR target LIKE %s ORDER BY ts DESC, id DESC LIMIT %s",
            (target, target + "/%", limit),
        )
    return [dict(r) for r in await cur.fetchall()]
