-- Control: desired and reported lock state per filling gun, every desired state ever sent,
-- the anomalies seen on the devices' topics, and the interlock's decisions.

-- One row per configured gun. ``version`` only grows; ``seq`` grows on every change of
-- the row, so a reader can tell a newer row from an older one. Times come from the
-- service's clock (not now()), so the lifecycle can be tested on an injected clock.
CREATE TABLE gun_state (
    site_id          text NOT NULL,
    gun_id           text NOT NULL,
    locked           boolean NOT NULL DEFAULT false,         -- desired
    version          bigint NOT NULL DEFAULT 0 CHECK (version >= 0),
    reason           text,                                   -- why locked / the rectification note
    ref              text,                                   -- the alert id the lock answers, if any
    actor            text,
    since            timestamptz,                            -- when the desired state was set
    command          text CHECK (command IN ('requested', 'sent', 'confirmed', 'unconfirmed')),
    requested_at     timestamptz,
    sent_at          timestamptz,
    last_sent_at     timestamptz,
    sends            integer NOT NULL DEFAULT 0,
    confirmed_at     timestamptz,
    reported_locked  boolean,
    reported_version bigint,
    reported_ts      timestamptz,                            -- the device's own time
    reported_at      timestamptz,                            -- when the centre received it
    anomaly          jsonb,                                  -- the last one seen, for the operator
    seq              bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (site_id, gun_id),
    FOREIGN KEY (site_id, gun_id) REFERENCES guns (site_id, id)
);

-- Every committed change is announced, so every process (API, control) sees it at once.
CREATE FUNCTION gun_state_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('monitor_guns', row_to_json(NEW)::text);
    RETURN NEW;
END $$;

CREATE TRIGGER gun_state_changed AFTER INSERT OR UPDATE ON gun_state
    FOR EACH ROW EXECUTE FUNCTION gun_state_notify();

-- Every desired state ever published: a report naming a version not here was never sent.
CREATE TABLE gun_commands (
    site_id text NOT NULL,
    gun_id  text NOT NULL,
    version bigint NOT NULL CHECK (version > 0),
    locked  boolean NOT NULL,
    reason  text,
    ref     text,
    actor   text NOT NULL,
    ts      timestamptz NOT NULL,
    PRIMARY KEY (site_id, gun_id, version)
);

-- What the centre saw on the devices' topics that it did not expect: forged or malformed
-- reports, foreign or stale desired states, reports from unknown guns, lost confirmations.
CREATE TABLE gun_events (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ts      timestamptz NOT NULL,
    site_id text NOT NULL,
    gun_id  text NOT NULL,
    kind    text NOT NULL,
    details jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX gun_events_gun ON gun_events (site_id, gun_id, ts DESC);

-- Every interlock decision with its reason ("no scan, no gas").
CREATE TABLE interlock_decisions (
    ts          timestamptz NOT NULL,
    site_id     text NOT NULL,
    gun_id      text NOT NULL,
    request_id  text,
    cylinder    text,
    allow       boolean NOT NULL,
    reason      text NOT NULL,
    via         text NOT NULL CHECK (via IN ('mqtt', 'http')),
    gun_version bigint,
    scan_ts     timestamptz
);
CREATE INDEX interlock_decisions_gun ON interlock_decisions (site_id, gun_id, ts DESC);
CREATE INDEX interlock_decisions_cylinder ON interlock_decisions (cylinder, ts DESC);
