"""Camera leases on real PostgreSQL: fair shares, no double claims, take-over after a death."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from psycopg.rows import dict_row

from monitor.store.leases import UNASSIGNED, LeaseKeeper, shares
from monitor.store.migrate import migrate_url


async def _conn(url: str) -> psycopg.AsyncConnection[dict[str, Any]]:
    return await psycopg.AsyncConnection.connect(url, row_factory=dict_row)


async def _city(url: str, n: int) -> None:
    await migrate_url(url)
    async with await _conn(url) as c:
        await c.execute("INSERT INTO sites (id, kind, storage_capacity) VALUES ('ol-x', 'outlet', 10)")
        for i in range(n):
            await c.execute("INSERT INTO cameras (id, site_id, url) VALUES (%s, 'ol-x', 'rtsp://127.0.0.1/x')",
                            (f"cam-{i:02d}",))
        await c.commit()


async def test_two_workers_share_and_take_over(fresh_db: str) -> None:
    await _city(fresh_db, 10)
    a, b = LeaseKeeper("a", ttl_s=2.0), LeaseKeeper("b", ttl_s=2.0)
    ca, cb = await _conn(fresh_db), await _conn(fresh_db)
    async with ca, cb:
        await a.register(ca)
        first = await a.tick(ca)
        assert len(first.gained) == 10  # alone: takes everything
        await b.register(cb)
        for _ in range(3):  # b arrives: a gives back above its share, b claims it
            await b.tick(cb)
            await a.tick(ca)
        assert len(a.held) == 5 and len(b.held) == 5
        assert not set(a.held) & set(b.held)
        # a dies (stops renewing): after the TTL b takes over every camera
        await asyncio.sleep(1.1)
        assert not (await b.tick(cb)).gained  # b renews its own; a's have not expired yet
        await asyncio.sleep(1.1)
        ch = await b.tick(cb)
        assert set(ch.gained) == set(a.held) and len(b.held) == 10
        # a comes back from a pause: it has lost them all and its old generation is fenced off
        cam, gen = next(iter(a.held.items()))
        assert not await a.still_holds(ca, cam, gen)
        lost = await a.tick(ca)
        assert lost.lost == set(ch.gained)


async def test_concurrent_claims_never_overlap(fresh_db: str) -> None:
    await _city(fresh_db, 30)
    keepers = [LeaseKeeper(f"w{i}") for i in range(4)]
    conns = [await _conn(fresh_db) for _ in keepers]
    try:
        for k, c in zip(keepers, conns, strict=True):
            await k.register(c)
        for _ in range(4):
            await asyncio.gather(*(k.tick(c) for k, c in zip(keepers, conns, strict=True)))
        held = [set(k.held) for k in keepers]
        assert sum(len(h) for h in held) == 30
        assert len(set().union(*held)) == 30
        assert max(len(h) for h in held) <= 8
    finally:
        for c in conns:
            await c.close()


async def test_a_paused_worker_is_fenced_off_without_asking(fresh_db: str) -> None:
    """``generation()`` answers from memory: ours until the TTL from the renewal that wrote
    the lease has passed, whatever ``held`` still says (a worker paused past it, or cut off)."""
    await _city(fresh_db, 2)
    a, b = LeaseKeeper("a", ttl_s=2.0, renew_s=0.5), LeaseKeeper("b", ttl_s=2.0, renew_s=0.5)
    ca, cb = await _conn(fresh_db), await _conn(fresh_db)
    async with ca, cb:
        await a.register(ca)
        await a.tick(ca)
        gens = {c: a.generation(c) for c in ("cam-00", "cam-01")}
        assert gens == a.held and None not in gens.values()
        assert b.generation("cam-00") is None  # never held
        await asyncio.sleep(2.1)  # a is "paused": no renewal for longer than the TTL
        assert set(a.held) == {"cam-00", "cam-01"} and a.generation("cam-00") is None
        await b.register(cb)
        taken = await b.tick(cb)
        assert set(taken.gained) == {"cam-00", "cam-01"}
        assert all(b.generation(c) == g and g > gens[c] for c, g in taken.gained.items())
        ch = await a.tick(ca)  # a wakes up: its next tick says what it lost
        assert ch.lost == {"cam-00", "cam-01"} and a.generation("cam-00") is None
        a.drop()
        assert a.held == {} and a.generation("cam-01") is None


def test_shares_are_even_but_never_above_a_workers_capacity() -> None:
    assert shares(10, {"a": None, "b": None}) == {"a": 5, "b": 5}
    assert shares(10, {"a": 3, "b": None}) == {"a": 3, "b": 7}  # what a cannot take goes to b
    assert shares(10, {"a": 3, "b": 2}) == {"a": 3, "b": 2}  # 5 cameras beyond both
    assert sum(shares(30, {f"w{i}": None for i in range(4)}).values()) == 30
    assert shares(0, {"a": 4}) == {"a": 0}
    # uneven: the worker holding more keeps the larger share (fewer cameras move)
    assert shares(3, {"a": None, "b": None}, {"b": 3}) == {"b": 2, "a": 1}


async def test_a_worker_takes_no_more_than_its_capacity_and_the_rest_are_reported(fresh_db: str) -> None:
    await _city(fresh_db, 10)
    a, b = LeaseKeeper("a", ttl_s=2.0, capacity=3), LeaseKeeper("b", ttl_s=2.0)
    ca, cb = await _conn(fresh_db), await _conn(fresh_db)
    async with ca, cb:
        await ca.execute("UPDATE cameras SET rules = '{antistatic}' WHERE id IN ('cam-07', 'cam-09')")
        await ca.execute("UPDATE cameras SET rules = '{storage}' WHERE id = 'cam-08'")
        await ca.commit()
        await a.register(ca)
        await a.tick(ca)
        assert len(a.held) == 3 and len(a.unassigned) == 7 and a.short == 7
        # short of capacity: the anti-static cameras first, then those with any rule
        assert sorted(a.held) == ["cam-07", "cam-08", "cam-09"]
        assert UNASSIGNED._value.get() == 7  # the metric an operator's alerting watches
        await b.register(cb)
        for _ in range(3):
            await b.tick(cb)
            await a.tick(ca)
        assert len(a.held) == 3 and len(b.held) == 7  # b takes what a cannot
        assert a.unassigned == [] and a.short == 0 and UNASSIGNED._value.get() == 0
        # b stops: its cameras do not all fall to a, which stays at its capacity
        await b.release_all(cb)
        await a.tick(ca)
        assert len(a.held) == 3 and a.short == 7 and len(a.unassigned) == 7
        cur = await ca.execute("SELECT capacity FROM video_workers WHERE worker = 'a'")
        assert (await cur.fetchone()) == {"capacity": 3}
