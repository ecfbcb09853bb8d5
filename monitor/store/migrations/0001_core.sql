-- Core: the city's sites and devices, people and keys, and the append-only audit trail.

-- One bucketing function used by every time-bucketed query, so that the TimescaleDB
-- path (time_bucket) and the plain path (date_bin) give the same results.
CREATE FUNCTION bucket(width interval, ts timestamptz) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT date_bin(width, ts, TIMESTAMPTZ '2000-01-03 00:00:00+00') $$;

CREATE TABLE sites (
    id               text PRIMARY KEY,
    kind             text NOT NULL CHECK (kind IN ('station', 'outlet')),
    name             text,
    district         text,
    lon              double precision,
    lat              double precision,
    storage_capacity integer NOT NULL CHECK (storage_capacity >= 0),
    active           boolean NOT NULL DEFAULT true,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE cameras (
    id         text PRIMARY KEY,
    site_id    text NOT NULL REFERENCES sites (id),
    name       text,
    url        text NOT NULL,
    detect_url text,
    rules      text[] NOT NULL DEFAULT '{}',
    zones      jsonb NOT NULL DEFAULT '{}',
    active     boolean NOT NULL DEFAULT true
);

CREATE TABLE guns (
    site_id text NOT NULL REFERENCES sites (id),
    id      text NOT NULL,
    active  boolean NOT NULL DEFAULT true,
    PRIMARY KEY (site_id, id)
);

CREATE TABLE scales (
    site_id text NOT NULL REFERENCES sites (id),
    id      text NOT NULL,
    gun_id  text NOT NULL,
    active  boolean NOT NULL DEFAULT true,
    PRIMARY KEY (site_id, id),
    FOREIGN KEY (site_id, gun_id) REFERENCES guns (site_id, id)
);

CREATE TABLE users (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      text NOT NULL UNIQUE CHECK (username ~ '^[A-Za-z0-9_.-]{1,64}$'),
    role          text NOT NULL CHECK (role IN ('viewer', 'operator', 'supervisor', 'admin')),
    password_hash text NOT NULL,
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sessions (
    token_hash text PRIMARY KEY,
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    address    text
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE api_keys (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text NOT NULL UNIQUE,
    key_hash   text NOT NULL UNIQUE,
    prefix     text NOT NULL,
    site_id    text REFERENCES sites (id),
    revoked    boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Append-only audit trail: who, role, when, what, why, from where.
CREATE TABLE audit (
    id       bigint GENERATED ALWAYS AS IDENTITY,
    ts       timestamptz NOT NULL DEFAULT now(),
    actor    text NOT NULL,
    role     text NOT NULL,
    action   text NOT NULL,
    target   text,
    reason   text,
    address  text,
    details  jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (id, ts)
);
CREATE INDEX audit_target ON audit (target, ts DESC);
CREATE INDEX audit_action ON audit (action, ts DESC);

CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER audit_no_update BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
