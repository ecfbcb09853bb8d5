-- Plain PostgreSQL path: BRIN indexes serve the time range scans of the decision log.
CREATE INDEX interlock_decisions_ts_brin ON interlock_decisions USING brin (ts);
CREATE INDEX gun_events_ts_brin ON gun_events USING brin (ts);
