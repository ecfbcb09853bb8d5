"""The engine on a real PostgreSQL with an injected clock: what is stored, in what state,
through holds, escalation, latching, restarts, and people's actions (with their audit rows)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from monitor.alerts.model import TransitionRefused
from monitor.errors import Forbidden, NotFound
from monitor.store.audit import Actor
from tests.alerts.conftest import engine_env, later, make_finding

OP = Actor("op-ann", "operator", "10.0.0.5")
SUP = Actor("sup-bo", "supervisor", "10.0.0.6")


async def test_findings_are_deduplicated_stored_and_announced(alerts_db: str, tmp_path: Path) -> None:
    async with engine_env(alerts_db, tmp_path) as env:
        fs = [make_finding(subject="track-1", ts=later(i)) for i in range(5)]
        fs.append(make_finding(subject="track-2", ts=later(3)))
        await env.engine.process(fs[:2])  # two batches: raised, then updated
        await env.engine.process(fs[2:])
        alerts = await env.rows("SELECT * FROM alerts ORDER BY id")
        assert [(a["subject"], a["count"], a["state"]) for a in alerts] == [("track-1", 5, "open"),
                                                                           ("track-2", 1, "open")]
        assert alerts[0]["first_seen"] == later(0) and alerts[0]["last_seen"] == later(4)
        stored = await env.rows("SELECT alert_id, count(*) AS n FROM findings GROUP BY 1 ORDER BY 1")
        assert [(r["alert_id"], r["n"]) for r in stored] == [(alerts[0]["id"], 5), (alerts[1]["id"], 1)]
        assert env.kinds() == ["raised", "raised", "updated"]
        assert all(e["alert"]["id"] is not None for e in env.events)
        tl = await env.rows("SELECT alert_id, action, actor FROM alert_actions ORDER BY alert_id")
        assert [(r["action"], r["actor"]) for r in tl] == [("raised", "system")] * 2


async def test_raise_hold_files_the_held_findings_under_the_alert(alerts_db: str, tmp_path: Path) -> None:
    async with engine_env(alerts_db, tmp_path, rules={"storage_over_capacity": {"raise_hold_s": 10}}) as env:
        f = make_finding("storage_over_capacity", source="ol-qingnian-store", site="ol-qingnian", subject="storage")
        await env.engine.process([f])
        env.clock.advance(5)
        await env.engine.process([make_finding("storage_over_capacity", source="ol-qingnian-store",
                                               site="ol-qingnian", subject="storage", ts=later(5))])
        assert await env.rows("SELECT * FROM alerts") == []
        assert [r["alert_id"] for r in await env.rows("SELECT alert_id FROM findings")] == [None, None]
        env.clock.advance(4.9)
        assert await env.engine.tick() == []
        env.clock.advance(0.1)
        (c,) = await env.engine.tick()
        assert c.kind == "raised" and c.alert.count == 2
        (a,) = await env.rows("SELECT * FROM alerts")
        assert a["count"] == 2 and a["first_seen"] == later(0) and a["opened_at"] == later(10)
        assert {r["alert_id"] for r in await env.rows("SELECT alert_id FROM findings")} == {a["id"]}


async def test_escalation_stops_at_ack_and_reminders_follow(alerts_db: str, tmp_path: Path) -> None:
    async with engine_env(alerts_db, tmp_path, remind_after_s=1800) as env:
        await env.engine.process([make_finding("overfill", source="s1", subject="CYL000123")])
        (a,) = await env.rows("SELECT * FROM alerts")
        env.clock.advance(119)
        assert await env.engine.tick() == []
        env.clock.advance(1)
        (c,) = await env.engine.tick()
        assert c.kind == "escalated" and c.level == 1
        esc = [e for e in env.events if e["change"] == "escalated"]
        assert esc[-1]["level"] == 1 and esc[-1]["audience"] == "supervisor"
        env.clock.advance(120)
        assert [c.level for c in await env.engine.tick()] == [2]
        env.clock.advance(30)
        row = await env.engine.ack(a["id"], OP, "on the phone with the station")
        assert row["state"] == "acknowledged" and row["escalation"] == 2 and row["acked_by"] == "op-ann"
        env.clock.advance(1000)
        assert await env.engine.tick() == []  # acknowledged: no more escalation
        env.clock.advance(800)
        assert [c.kind for c in await env.engine.tick()] == ["reminded"]
        (a,) = await env.rows("SELECT * FROM alerts")
        assert a["escalation"] == 2 and a["reminded_at"] == later(2070)
        tl = await env.rows("SELECT action, actor, level, latency_s FROM alert_actions ORDER BY ts, action")
        assert [(r["action"], r["level"]) for r in tl] == [
            ("raised", None), ("escalated", 1), ("escalated", 2), ("acknowledged", None), ("reminded", None)]
        assert tl[3]["actor"] == "op-ann" and tl[3]["latency_s"] == pytest.approx(270)


async def test_latched_alert_survives_its_condition_clearing(alerts_db: str, tmp_path: Path) -> None:
    async with engine_env(alerts_db, tmp_path, clear_hold_s=5) as env:
        on = make_finding("antistatic_during_fill", subject="track-9")
        await env.engine.process([on])
        env.clock.advance(10)
        await env.engine.process([make_finding("antistatic_during_fill", subject="track-9", ts=later(10),
                                               active=False)])
        env.clock.advance(3600)
        await env.engine.tick()
        (a,) = await env.rows("SELECT * FROM alerts")
        assert a["state"] == "open" and a["latched"] and a["condition_active"] is False
        await env.engine.ack(a["id"], OP, None)
        env.clock.advance(86_400)
        await env.engine.tick()
        (a,) = await env.rows("SELECT * FROM alerts")
        assert a["state"] == "acknowledged"
        row = await env.engine.close(a["id"], SUP, "confirmed_violation", "worker retrained; video kept")
        assert row["state"] == "closed" and row["disposition"] == "confirmed_violation"
        assert env.engine.book.live == {}


async def test_condition_resolves_after_clear_hold_and_reopens_when_back(alerts_db: str, tmp_path: Path) -> None:
    async with engine_env(alerts_db, tmp_path, clear_hold_s=30) as env:
        def cam(active: bool, t: float) -> object:
            return make_finding("camera_offline", source="st-minwang-store", subject="st-minwang-store",
                                ts=later(t), active=active)
        await env.engine.process([cam(True, 0)])
        env.clock.advance(60)
        await env.engine.process([cam(False, 60)])
        env.clock.advance(29)
        await env.engine.tick()
        (a,) = await env.rows("SELECT * FROM alerts")
        assert a["state"] == "open" and a["cleared_at"] == later(60)
        env.clock.advance(1)
        assert [c.kind for c in await env.engine.tick()] == ["resolved"]
        (a,) = await env.rows("SELECT * FROM alerts")
        assert a["state"] == "resolved" and a["resolved_at"] == later(90)
        env.clock.advance(10)
        await env.engine.process([cam(True, 100)])
        (b,) = await env.rows("SELECT * FROM alerts")
        assert b["id"] == a["id"] and b["state"] == "open" and b["opened_at"] == later(100) and b["count"] == 2
        assert env.kinds() == ["raised", "cleared", "resolved", "reopened"]


async def test_restart_keeps_every_alert_and_its_state(alerts_db: str, tmp_path: Path) -> None:
    async with engine_env(alerts_db, tmp_path) as env:
        await env.engine.process([make_finding(subject=f"track-{i}") for i in range(3)])
        ids = [r["id"] for r in await env.rows("SELECT id FROM alerts ORDER BY id")]
        await env.engine.ack(ids[0], OP, "seen")
        await env.engine.close(ids[1], SUP, "false_alarm", "a shadow")
        env.clock.advance(120)
        before = await env.rows("SELECT * FROM alerts ORDER BY id")
    async with engine_env(alerts_db, tmp_path) as env2:  # a new engine on the same database
        env2.clock.set(later(121))
        assert sorted(a.id for a in env2.engine.book.live.values()) == [ids[0], ids[2]]  # type: ignore[type-var]
        assert await env2.rows("SELECT * FROM alerts ORDER BY id") == before
        await env2.engine.process([make_finding(subject="track-0", ts=later(121)),
                                   make_finding(subject="track-1", ts=later(121))])
        after = {r["id"]: r for r in await env2.rows("SELECT * FROM alerts ORDER BY id")}
        assert after[ids[0]]["state"] == "acknowledged" and after[ids[0]]["count"] == 2  # same alert
        assert after[ids[1]]["state"] == "closed" and after[ids[1]]["count"] == 1  # closed stays closed
        assert len(after) == 4  # track-1 opened a new alert
        # the open one escalates on its own time (a warning: 10 min), counted from before the restart
        env2.clock.set(later(599))
        assert await env2.engine.tick() == []
        env2.clock.set(later(600))
        assert [(c.kind, c.alert.id) for c in await env2.engine.tick()] == [("escalated", ids[2])]


@pytest.mark.parametrize(
    ("action", "actor", "error"),
    [
        ("ack", Actor("v", "viewer"), Forbidden),
        ("close", OP, Forbidden),
        ("close_twice", SUP, TransitionRefused),
        ("ack_twice", OP, TransitionRefused),
        ("ack_missing", OP, NotFound),
    ],
)
async def test_refused_actions_change_nothing_and_audit_nothing(
    alerts_db: str, tmp_path: Path, action: str, actor: Actor, error: type[Exception]
) -> None:
    async with engine_env(alerts_db, tmp_path) as env:
        await env.engine.process([make_finding()])
        (a,) = await env.rows("SELECT * FROM alerts")
        if action == "close_twice":
            await env.engine.close(a["id"], SUP, "rectified", "fixed")
        if action == "ack_twice":
            await env.engine.ack(a["id"], OP, None)
        before_a = await env.rows("SELECT * FROM alerts")
        before_audit = await env.rows("SELECT id FROM audit")
        with pytest.raises(error):
            if action.startswith("ack"):
                await env.engine.ack(a["id"] + (100 if action == "ack_missing" else 0), actor, None)
            else:
                await env.engine.close(a["id"], actor, "rectified", "again")
        assert await env.rows("SELECT * FROM alerts") == before_a
        assert await env.rows("SELECT id FROM audit") == before_audit


async def test_the_audit_row_is_in_the_same_transaction_as_the_ack(alerts_db: str, tmp_path: Path) -> None:
    """When the audit row cannot be written, the acknowledgement does not happen either."""
    async with engine_env(alerts_db, tmp_path) as env:
        await env.engine.process([make_finding()])
        (a,) = await env.rows("SELECT * FROM alerts")
        async with await psycopg.AsyncConnection.connect(alerts_db, autocommit=True) as conn:
            await conn.execute("""
                CREATE FUNCTION refuse_ack() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN IF NEW.action = 'alert.ack' THEN RAISE EXCEPTION 'audit refused'; END IF; RETURN NEW; END $$;
                CREATE TRIGGER refuse_ack BEFORE INSERT ON audit FOR EACH ROW EXECUTE FUNCTION refuse_ack();""")
        with pytest.raises(psycopg.errors.RaiseException):
            await env.engine.ack(a["id"], OP, "should not stick")
        (after,) = await env.rows("SELECT * FROM alerts")
        assert after["state"] == "open" and after["acked_at"] is None and after["rev"] == a["rev"]
        assert await env.rows("SELECT * FROM audit WHERE action = 'alert.ack'") == []
        assert await env.rows("SELECT * FROM alert_actions WHERE action = 'acknowledged'") == []
        assert env.engine.book.by_id[a["id"]].state == "open"
        async with await psycopg.AsyncConnection.connect(alerts_db, autocommit=True) as conn:
            await conn.execute("DROP TRIGGER refuse_ack ON audit")
        await env.engine.ack(a["id"], OP, "now it sticks")
        (row,) = await env.rows("SELECT * FROM audit WHERE action = 'alert.ack'")
        assert row["target"] == f"alert/{a['id']}" and row["actor"] == "op-ann" and row["role"] == "operator"
        assert row["reason"] == "now it sticks" and row["address"] == "10.0.0.5"


async def test_an_alert_closed_by_another_process_is_not_counted_into(alerts_db: str, tmp_path: Path) -> None:
    """Another process closes the alert behind the engine's back: the next finding opens a new one."""
    async with engine_env(alerts_db, tmp_path) as env:
        await env.engine.process([make_finding()])
        (a,) = await env.rows("SELECT * FROM alerts")
        async with await psycopg.AsyncConnection.connect(alerts_db, autocommit=True) as conn:
            await conn.execute("""UPDATE alerts SET state = 'closed', closed_at = now(), closed_by = 'elsewhere',
                                  disposition = 'rectified', close_note = 'x' WHERE id = %s""", (a["id"],))
        await env.engine.process([make_finding(ts=later(5))])  # conflict: put back for the next batch
        await env.engine.process([])
        got = await env.rows("SELECT id, state, count FROM alerts ORDER BY id")
        assert [(r["state"], r["count"]) for r in got] == [("closed", 1), ("open", 1)]
        assert (await env.rows("SELECT count(*) AS n FROM findings"))[0]["n"] == 2


async def test_suppressed_alerts_are_recorded_silently(alerts_db: str, tmp_path: Path) -> None:
    async with engine_env(alerts_db, tmp_path) as env:
        async with await psycopg.AsyncConnection.connect(alerts_db, autocommit=True) as conn:
            await conn.execute(
                """INSERT INTO maintenance_windows (site, starts_at, ends_at, reason, created_by)
                   VALUES ('st-minwang', %s, %s, 'scale calibration', 'sup')""", (later(-60), later(600)))
        await env.engine.refresh_suppressions()
        await env.engine.process([make_finding("fill_without_scan", source="s1", subject="CYL1")])
        (a,) = await env.rows("SELECT * FROM alerts")
        assert a["silenced"] is True and env.events[-1]["notify"] is False
        env.clock.advance(300)
        assert await env.engine.tick() == []
        env.clock.advance(301)
        (c,) = await env.engine.tick()
        assert c.kind == "escalated" and c.notify


async def test_count_updates_are_announced_at_most_once_a_while(alerts_db: str, tmp_path: Path) -> None:
    """A busy alert does not flood the wall: its count goes out at most every update_event_min_s;
    changes of state always go out at once."""
    async with engine_env(alerts_db, tmp_path, update_event_min_s=60) as env:
        await env.engine.process([make_finding()])
        for i in range(5):
            await env.engine.process([make_finding(ts=later(i + 1))])
        assert env.kinds() == ["raised"]
        assert env.engine.flush_updates() == 1
        assert env.kinds() == ["raised", "updated"] and env.events[-1]["alert"]["count"] == 6
        assert env.engine.flush_updates() == 0
        (a,) = await env.rows("SELECT id FROM alerts")
        await env.engine.process([make_finding(ts=later(9))])
        await env.engine.ack(a["id"], OP, None)
        assert env.kinds()[-1] == "acknowledged"


async def test_two_processes_hear_each_other_and_one_escalates(alerts_db: str, tmp_path: Path) -> None:
    """Two engines on one database (e.g. the video and the api processes): a change committed by
    one is mirrored and announced by the other (NOTIFY), and only the elected one escalates."""
    import asyncio

    async with engine_env(alerts_db, tmp_path) as a, engine_env(alerts_db, tmp_path) as b:
        tasks = [asyncio.create_task(e.engine.listen()) for e in (a, b)]
        try:
            await asyncio.wait_for(a.engine.listening.wait(), 10)
            await asyncio.wait_for(b.engine.listening.wait(), 10)
            assert sorted([a.engine.leader, b.engine.leader]) == [False, True]
            leader, other = (a, b) if a.engine.leader else (b, a)
            heard = asyncio.Event()
            other_publish = other.engine.publish_fn

            def on_event(topic: str, event: dict[str, object]) -> None:
                assert other_publish is not None
                other_publish(topic, event)
                heard.set()

            other.engine.publish_fn = on_event
            await leader.engine.process([make_finding("overfill", source="s1", subject="CYL7")])  # critical
            await asyncio.wait_for(heard.wait(), 10)
            assert other.kinds() == ["raised"]
            (row,) = await leader.rows("SELECT id FROM alerts")
            assert row["id"] in other.engine.book.by_id
            for e in (a, b):
                e.clock.advance(130)
            assert await other.engine.tick() == []  # not elected: leaves escalation to the leader
            assert [c.kind for c in await leader.engine.tick()] == ["escalated"]
            # a person acknowledges through the other process: the leader hears it and stops escalating
            heard_ack = asyncio.Event()
            leader_publish = leader.engine.publish_fn

            def on_leader_event(topic: str, event: dict[str, object]) -> None:
                assert leader_publish is not None
                leader_publish(topic, event)
                if event.get("change") == "acknowledged":
                    heard_ack.set()

            leader.engine.publish_fn = on_leader_event
            await other.engine.ack(row["id"], OP, "from the other process")
            await asyncio.wait_for(heard_ack.wait(), 10)
            assert leader.engine.book.by_id[row["id"]].state == "acknowledged"
            for e in (a, b):
                e.clock.advance(1000)
            assert await leader.engine.tick() == []
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_flood_of_count_updates_is_capped_per_second(alerts_db: str, tmp_path: Path) -> None:
    """At most UPDATES_PER_FLUSH count updates go out per tick, all alerts together; the rest wait
    (latest state kept), and new alerts are never held back."""
    from monitor.alerts.engine import UPDATES_PER_FLUSH

    async with engine_env(alerts_db, tmp_path, update_event_min_s=1e-6) as env:
        n = UPDATES_PER_FLUSH + 50
        await env.engine.process([make_finding(subject=f"s{i}") for i in range(n)])
        await env.engine.process([make_finding(subject=f"s{i}", ts=later(1)) for i in range(n)])
        await env.engine.process([make_finding(subject="new-one", ts=later(2))])
        assert env.kinds().count("raised") == n + 1 and env.kinds()[-1] == "raised"
        assert env.kinds().count("updated") == UPDATES_PER_FLUSH
        assert env.engine.flush_updates() == 50
        assert env.kinds().count("updated") == UPDATES_PER_FLUSH + 50
