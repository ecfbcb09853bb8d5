-- Scale and scan series: the cylinder registry, app scans, scale readings, fill sessions,
-- and the hourly rollups (fills per station, stock movements per outlet).
-- Filling records (fills, scans) are kept at least 2 years (regional standard): no
-- retention applies to them; only raw scale readings are pruned (see the path variants).

-- The registry: one row per cylinder, keyed by its body QR code.
CREATE TABLE cylinders (
    code              text PRIMARY KEY CHECK (code ~ '^[A-Z0-9]{6,32}$'),
    valve_code        text,
    owner_site        text NOT NULL,
    nominal_kg        real NOT NULL CHECK (nominal_kg > 0 AND nominal_kg <= 100),
    tare_kg           real NOT NULL CHECK (tare_kg > 0 AND tare_kg <= 150),
    manufactured      date NOT NULL,
    last_inspection   date,
    inspection_passed boolean,
    status            text NOT NULL CHECK (status IN ('in_service', 'scrapped')),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cylinders_owner ON cylinders (owner_site);

-- Scans posted by the station and outlet apps. ``id`` is the app's idempotency key; its
-- uniqueness is kept in scan_ids (a hypertable's unique keys must include its time).
CREATE TABLE scans (
    ts          timestamptz NOT NULL,
    id          text NOT NULL,
    cylinder    text NOT NULL,
    site_id     text NOT NULL,
    step        text NOT NULL CHECK (step IN ('prefill_check', 'postfill_check', 'outlet_receive',
                                              'deliver', 'install', 'empty_return')),
    operator    text,
    photos      text[] NOT NULL DEFAULT '{}',
    validity    text NOT NULL,
    app         text,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX scans_id ON scans (id, ts);
CREATE INDEX scans_cylinder ON scans (cylinder, ts DESC);
CREATE INDEX scans_site_step ON scans (site_id, step, ts DESC);

CREATE TABLE scan_ids (
    id          text PRIMARY KEY,
    ts          timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

-- Raw scale readings (MQTT). The unique key makes a re-delivered or re-flushed reading
-- a no-op, so the spool can be flushed "once" even after a crash mid-flush.
CREATE TABLE scale_readings (
    ts          timestamptz NOT NULL,
    site_id     text NOT NULL,
    scale_id    text NOT NULL,
    gross_kg    real NOT NULL,
    gun_open    boolean NOT NULL,
    cylinder    text,
    received_at timestamptz NOT NULL
);
CREATE UNIQUE INDEX scale_readings_key ON scale_readings (site_id, scale_id, ts);

-- Fill sessions segmented from each scale's readings.
CREATE TABLE fills (
    started_at timestamptz NOT NULL,
    ended_at   timestamptz NOT NULL,
    site_id    text NOT NULL,
    scale_id   text NOT NULL,
    gun_id     text,
    cylinder   text,
    tare_kg    double precision NOT NULL,
    gross_kg   double precision NOT NULL,
    net_kg     double precision NOT NULL,
    readings   integer NOT NULL,
    flags      text[] NOT NULL DEFAULT '{}',
    CHECK (ended_at >= started_at)
);
CREATE UNIQUE INDEX fills_key ON fills (site_id, scale_id, started_at);
CREATE INDEX fills_cylinder ON fills (cylinder, started_at DESC);
