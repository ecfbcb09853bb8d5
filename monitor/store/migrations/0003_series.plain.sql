-- Plain PostgreSQL path: BRIN indexes for time ranges, and rollup tables kept by
-- statement triggers in place of TimescaleDB's continuous aggregates. The rollups have
-- the same names and columns as the continuous aggregates, so queries are the same.
CREATE INDEX scans_ts_brin ON scans USING brin (ts);
CREATE INDEX scale_readings_ts_brin ON scale_readings USING brin (ts);
CREATE INDEX fills_ts_brin ON fills USING brin (started_at);

CREATE TABLE fills_hourly (
    bucket  timestamptz NOT NULL,
    site_id text NOT NULL,
    fills   bigint NOT NULL,
    net_kg  double precision,
    PRIMARY KEY (site_id, bucket)
);

CREATE TABLE outlet_stock_hourly (
    bucket    timestamptz NOT NULL,
    site_id   text NOT NULL,
    received  bigint NOT NULL,
    delivered bigint NOT NULL,
    PRIMARY KEY (site_id, bucket)
);

CREATE FUNCTION fills_hourly_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO fills_hourly (bucket, site_id, fills, net_kg)
    SELECT bucket(INTERVAL '1 hour', started_at), site_id, count(*), sum(net_kg)
    FROM new_rows GROUP BY 1, 2
    ON CONFLICT (site_id, bucket) DO UPDATE
        SET fills = fills_hourly.fills + EXCLUDED.fills,
            net_kg = coalesce(fills_hourly.net_kg, 0) + coalesce(EXCLUDED.net_kg, 0);
    RETURN NULL;
END $$;
CREATE TRIGGER fills_hourly_rollup AFTER INSERT ON fills
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION fills_hourly_add();

CREATE FUNCTION outlet_stock_hourly_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outlet_stock_hourly (bucket, site_id, received, delivered)
    SELECT bucket(INTERVAL '1 hour', ts), site_id,
           count(*) FILTER (WHERE step = 'outlet_receive'), count(*) FILTER (WHERE step = 'deliver')
    FROM new_rows WHERE step IN ('outlet_receive', 'deliver') GROUP BY 1, 2
    ON CONFLICT (site_id, bucket) DO UPDATE
        SET received = outlet_stock_hourly.received + EXCLUDED.received,
            delivered = outlet_stock_hourly.delivered + EXCLUDED.delivered;
    RETURN NULL;
END $$;
CREATE TRIGGER outlet_stock_hourly_rollup AFTER INSERT ON scans
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION outlet_stock_hourly_add();
