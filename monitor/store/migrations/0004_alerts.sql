-- Alerts and incidents: the alert lifecycle, every finding behind it, silences,
-- maintenance windows, evidence, the action timeline (operator load), and the
-- database role that may append to the audit trail but never change it.

-- One row per alert. An alert is live while it is not closed; at most one live alert per
-- dedup key (rule, site, source, subject). The engine owns count/last_seen/condition/
-- escalation; people own ack and close, always through conditional UPDATEs.
CREATE TABLE alerts (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule             text NOT NULL,
    severity         text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    sev_rank         smallint NOT NULL GENERATED ALWAYS AS (
                         CASE severity WHEN 'critical' THEN 2 WHEN 'warning' THEN 1 ELSE 0 END) STORED,
    state            text NOT NULL DEFAULT 'open'
                         CHECK (state IN ('open', 'acknowledged', 'resolved', 'closed')),
    site             text NOT NULL,
    source           text NOT NULL,
    subject          text NOT NULL,
    reason           text,
    summary          text NOT NULL,
    latched          boolean NOT NULL,
    first_seen       timestamptz NOT NULL,
    last_seen        timestamptz NOT NULL,
    count            integer NOT NULL DEFAULT 1 CHECK (count >= 1),
    opened_at        timestamptz NOT NULL,          -- raised or reopened; escalation counts from here
    condition_active boolean NOT NULL DEFAULT true,
    cleared_at       timestamptz,                   -- when the condition was last seen clearing
    escalation       smallint NOT NULL DEFAULT 0 CHECK (escalation >= 0),
    escalated_at     timestamptz,
    acked_at         timestamptz,
    acked_by         text,
    ack_note         text,
    reminded_at      timestamptz,
    resolved_at      timestamptz,
    closed_at        timestamptz,
    closed_by        text,
    disposition      text CHECK (disposition IN ('confirmed_violation', 'false_alarm', 'rectified')),
    close_note       text,
    silenced         boolean NOT NULL DEFAULT false, -- notifying suppressed (silence or maintenance)
    rev              bigint NOT NULL DEFAULT 1,      -- bumped on every change; clients keep the highest
    CHECK ((state = 'closed') = (closed_at IS NOT NULL)),
    CHECK (state <> 'closed' OR (disposition IS NOT NULL AND closed_by IS NOT NULL)),
    CHECK (state <> 'acknowledged' OR acked_at IS NOT NULL)
) WITH (fillfactor = 80);  -- room on each page: a count going up is a HOT update (no index touched)
CREATE UNIQUE INDEX alerts_live_key ON alerts (rule, site, source, subject) WHERE state <> 'closed';
CREATE INDEX alerts_queue ON alerts (sev_rank DESC, first_seen DESC, id DESC);
CREATE INDEX alerts_site_queue ON alerts (site, sev_rank DESC, first_seen DESC, id DESC);
CREATE INDEX alerts_live ON alerts (state) WHERE state <> 'closed';
-- (no index on last_seen: it changes with every finding, and indexing it would make every
-- count update rewrite every index of the row)

-- Every finding the centre received, with the alert it went to (NULL while a raise hold
-- was pending and never reached, or when it only confirmed a cleared condition).
CREATE TABLE findings (
    id          bigint GENERATED ALWAYS AS IDENTITY,
    ts          timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    alert_id    bigint,
    rule        text NOT NULL,
    site        text NOT NULL,
    source      text NOT NULL,
    subject     text NOT NULL,
    severity    text NOT NULL,
    active      boolean NOT NULL,
    reason      text,
    summary     text NOT NULL,
    details     jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (id, ts)
);
CREATE INDEX findings_alert ON findings (alert_id, ts DESC);
-- findings not filed under an alert (held, or clearing nothing): small, and what a raise
-- hold's alert adopts when it is raised
CREATE INDEX findings_unfiled ON findings (site, rule, source, subject, ts) WHERE alert_id IS NULL;

-- The timeline of each alert (raised, reopened, cleared, resolved, acknowledged, closed,
-- escalated, reminded): the incident's history and the source of the operators' load.
CREATE TABLE alert_actions (
    seq       bigint GENERATED ALWAYS AS IDENTITY, -- the order of actions with equal times
    ts        timestamptz NOT NULL,
    alert_id  bigint NOT NULL,
    action    text NOT NULL CHECK (action IN ('raised', 'reopened', 'cleared', 'resolved', 'acknowledged',
                                                'closed', 'escalated', 'reminded')),
    actor     text NOT NULL,
    role      text,
    site      text NOT NULL,
    rule      text NOT NULL,
    severity  text NOT NULL,
    silenced  boolean NOT NULL DEFAULT false,
    latency_s double precision,                 -- acknowledged / closed: seconds since opened_at
    level     smallint,                         -- escalated: the new level
    details   jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX alert_actions_alert ON alert_actions (alert_id, ts);
CREATE INDEX alert_actions_actor ON alert_actions (action, actor, ts DESC);

-- Silences: a site (and a rule, or every rule) keeps recording but stops notifying.
CREATE TABLE alert_silences (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site       text NOT NULL,
    rule       text,                            -- NULL: every rule at the site
    starts_at  timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    reason     text NOT NULL CHECK (length(btrim(reason)) > 0),
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    lifted_at  timestamptz,
    lifted_by  text,
    CHECK (expires_at > starts_at)
);
CREATE INDEX alert_silences_live ON alert_silences (expires_at) WHERE lifted_at IS NULL;

-- Maintenance windows: a site under planned work notifies nobody.
CREATE TABLE maintenance_windows (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site       text NOT NULL,
    starts_at  timestamptz NOT NULL,
    ends_at    timestamptz NOT NULL,
    reason     text NOT NULL CHECK (length(btrim(reason)) > 0),
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    ended_at   timestamptz,                     -- ended early
    ended_by   text,
    CHECK (ends_at > starts_at)
);
CREATE INDEX maintenance_windows_live ON maintenance_windows (ends_at) WHERE ended_at IS NULL;

-- Evidence of an alert: one item per kind, gathered asynchronously with retries.
-- Media paths are relative to media.dir; scale traces and scans are copied into ``data``
-- so the record stays whole when raw series age out.
CREATE TABLE evidence (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id   bigint NOT NULL REFERENCES alerts (id),
    kind       text NOT NULL CHECK (kind IN ('snapshot', 'clip', 'scale_trace', 'scans')),
    status     text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'ready', 'failed', 'unavailable')),
    camera     text,
    path       text,
    media_type text,
    bytes      bigint,
    sha256     text,
    ts         timestamptz,                     -- the moment shown (snapshot) or the clip's start
    ends_at    timestamptz,                     -- the clip's end
    data       jsonb,
    attempts   integer NOT NULL DEFAULT 0,
    error      text,
    request    jsonb NOT NULL DEFAULT '{}',     -- what to gather: camera, time, window, refs
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (alert_id, kind)
);
CREATE INDEX evidence_pending ON evidence (updated_at) WHERE status = 'pending';  -- the sweep

-- An incident is an alert with its evidence, the actions taken and the disposition.
CREATE VIEW incidents AS
SELECT a.id, a.id AS alert_id, a.rule, a.severity, a.state, a.site, a.source, a.subject,
       a.first_seen, a.last_seen, a.opened_at, a.acked_at, a.acked_by, a.closed_at, a.closed_by,
       a.disposition, a.close_note,
       (SELECT count(*) FROM evidence e WHERE e.alert_id = a.id AND e.status = 'ready') AS evidence_ready,
       (SELECT count(*) FROM evidence e WHERE e.alert_id = a.id) AS evidence_total
FROM alerts a;

-- The audit trail is append-only: the trigger of 0001 refuses UPDATE, DELETE and TRUNCATE
-- for everyone (owner included); on top of that, no role but the owner holds the
-- privileges. Production runs the service as a LOGIN role that is a member of
-- ``monitor_service`` (not the owner, not a superuser), so even without the trigger it
-- could not change the trail; migrations run as the owner (see docs/notes/issue-6.md).
REVOKE UPDATE, DELETE, TRUNCATE ON audit FROM PUBLIC;

-- ... and from every other role that holds them (a deployment may have granted a service
-- role everything through default privileges before 0001 created the table).
DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT DISTINCT a.grantee::regrole::text AS grantee
             FROM pg_class c, aclexplode(c.relacl) a
             WHERE c.oid = 'audit'::regclass AND a.privilege_type IN ('UPDATE', 'DELETE', 'TRUNCATE')
               AND a.grantee <> c.relowner AND a.grantee <> 0
    LOOP
        EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON audit FROM %s', r.grantee);
    END LOOP;
END $$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'monitor_service') THEN
        IF NOT (SELECT rolcreaterole OR rolsuper FROM pg_roles WHERE rolname = current_user) THEN
            RAISE NOTICE 'monitor_service role missing and % may not create roles: grants skipped', current_user;
            RETURN;
        END IF;
        BEGIN
            CREATE ROLE monitor_service NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- created meanwhile by a migration of another database of this cluster
        END;
    END IF;
    GRANT USAGE ON SCHEMA public TO monitor_service;
    GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO monitor_service;
    GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO monitor_service;
    REVOKE UPDATE, DELETE, TRUNCATE ON audit FROM monitor_service;
    ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO monitor_service;
    ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO monitor_service;
END $$;
