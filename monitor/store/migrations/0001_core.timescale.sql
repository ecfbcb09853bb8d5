-- TimescaleDB path: bucket() is time_bucket(); the audit trail is a hypertable.
CREATE OR REPLACE FUNCTION bucket(width interval, ts timestamptz) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT time_bucket(width, ts) $$;

SELECT create_hypertable('audit', 'ts', chunk_time_interval => INTERVAL '30 days', migrate_data => true);
