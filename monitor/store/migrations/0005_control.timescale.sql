-- TimescaleDB path: the decision log is a hypertable, compressed after a month. Filling
-- records are kept at least 2 years (regional standard): no retention policy here.
SELECT create_hypertable('interlock_decisions', 'ts', chunk_time_interval => INTERVAL '7 days', migrate_data => true);

ALTER TABLE interlock_decisions SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'site_id, gun_id',
    timescaledb.compress_orderby = 'ts DESC'
);

SELECT add_compression_policy('interlock_decisions', INTERVAL '30 days');
