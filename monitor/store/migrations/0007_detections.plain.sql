-- Plain PostgreSQL path: a BRIN index serves the count series' time range scans.
CREATE INDEX camera_counts_ts_brin ON camera_counts USING brin (ts);
