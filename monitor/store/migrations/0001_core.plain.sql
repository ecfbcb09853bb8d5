-- Plain PostgreSQL path: a BRIN index serves the audit trail's time range scans.
CREATE INDEX audit_ts_brin ON audit USING brin (ts);
