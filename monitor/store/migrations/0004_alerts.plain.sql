-- Plain PostgreSQL path: BRIN indexes serve the time range scans of the append-only series.
CREATE INDEX findings_ts_brin ON findings USING brin (ts);
CREATE INDEX alert_actions_ts_brin ON alert_actions USING brin (ts);
