-- TimescaleDB path: the findings and the alert timeline are hypertables; old findings are
-- compressed (by site), and kept at least the two years filling records must be kept.
SELECT create_hypertable('findings', 'ts', chunk_time_interval => INTERVAL '7 days', migrate_data => true);
SELECT create_hypertable('alert_actions', 'ts', chunk_time_interval => INTERVAL '30 days', migrate_data => true);
ALTER TABLE findings SET (timescaledb.compress, timescaledb.compress_segmentby = 'site',
                          timescaledb.compress_orderby = 'ts DESC, id DESC');
SELECT add_compression_policy('findings', INTERVAL '30 days');
