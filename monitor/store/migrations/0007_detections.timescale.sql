-- TimescaleDB path: the count series is a hypertable, compressed after a week and kept
-- for two years (filling records must be kept at least that long; counts go with them).
SELECT create_hypertable('camera_counts', 'ts', chunk_time_interval => INTERVAL '7 days', migrate_data => true);
ALTER TABLE camera_counts SET (timescaledb.compress, timescaledb.compress_segmentby = 'camera_id');
SELECT add_compression_policy('camera_counts', INTERVAL '7 days');
SELECT add_retention_policy('camera_counts', INTERVAL '2 years');
