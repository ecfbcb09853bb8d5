-- migrate: no-transaction
-- TimescaleDB path: hypertables, continuous aggregates (same names and columns as the
-- plain path's rollup tables), compression, and retention for raw scale readings only.
-- Fills and scans have no retention: filling records are kept at least 2 years.
SELECT create_hypertable('scans', 'ts', chunk_time_interval => INTERVAL '7 days', migrate_data => true);
SELECT create_hypertable('scale_readings', 'ts', chunk_time_interval => INTERVAL '1 day', migrate_data => true);
SELECT create_hypertable('fills', 'started_at', chunk_time_interval => INTERVAL '7 days', migrate_data => true);

CREATE MATERIALIZED VIEW fills_hourly
    WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
    SELECT time_bucket(INTERVAL '1 hour', started_at) AS bucket, site_id,
           count(*) AS fills, sum(net_kg) AS net_kg
    FROM fills GROUP BY 1, 2 WITH NO DATA;

CREATE MATERIALIZED VIEW outlet_stock_hourly
    WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
    SELECT time_bucket(INTERVAL '1 hour', ts) AS bucket, site_id,
           count(*) FILTER (WHERE step = 'outlet_receive') AS received,
           count(*) FILTER (WHERE step = 'deliver') AS delivered
    FROM scans WHERE step IN ('outlet_receive', 'deliver') GROUP BY 1, 2 WITH NO DATA;

SELECT add_continuous_aggregate_policy('fills_hourly', start_offset => INTERVAL '3 days',
    end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '30 minutes');
SELECT add_continuous_aggregate_policy('outlet_stock_hourly', start_offset => INTERVAL '3 days',
    end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '30 minutes');

ALTER TABLE scale_readings SET (timescaledb.compress, timescaledb.compress_segmentby = 'site_id, scale_id',
    timescaledb.compress_orderby = 'ts');
SELECT add_compression_policy('scale_readings', INTERVAL '7 days');
SELECT add_retention_policy('scale_readings', INTERVAL '90 days');

ALTER TABLE scans SET (timescaledb.compress, timescaledb.compress_segmentby = 'site_id',
    timescaledb.compress_orderby = 'ts, id');
SELECT add_compression_policy('scans', INTERVAL '30 days');

ALTER TABLE fills SET (timescaledb.compress, timescaledb.compress_segmentby = 'site_id, scale_id',
    timescaledb.compress_orderby = 'started_at');
SELECT add_compression_policy('fills', INTERVAL '30 days');
