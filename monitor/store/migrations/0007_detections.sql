-- Detectors: the count of cylinders each storage camera sees, over time.
--
-- One row per camera per sample: ``count`` is the smoothed count (median over the storage
-- rule's window, the figure the over-capacity decision uses), ``raw`` the count in the
-- frame the sample was taken from. The wall's chart and the stock-mismatch correlation
-- read this series; ``site_id`` is denormalised so per-site queries need no join.
-- The primary key holds the time column (a hypertable needs that) and makes a repeated
-- write of the same sample a no-op (INSERT ... ON CONFLICT DO NOTHING).
CREATE TABLE camera_counts (
    ts        timestamptz NOT NULL,
    camera_id text NOT NULL,
    site_id   text NOT NULL,
    count     integer NOT NULL CHECK (count >= 0),
    raw       integer NOT NULL CHECK (raw >= 0),
    capacity  integer CHECK (capacity >= 0),
    PRIMARY KEY (camera_id, ts)
);
CREATE INDEX camera_counts_site ON camera_counts (site_id, ts DESC);
