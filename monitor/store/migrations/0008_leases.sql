-- Camera leases: video workers on several machines share the city's cameras. One row per
-- camera; a worker claims free or expired rows with FOR UPDATE SKIP LOCKED and renews its
-- own every few seconds; a dead worker's leases expire and are taken over. ``generation``
-- grows at every claim: a fencing token, so a worker that lost a lease cannot report for it.
CREATE TABLE camera_leases (
    camera_id  text PRIMARY KEY REFERENCES cameras (id),
    worker     text,
    generation bigint NOT NULL DEFAULT 0,
    claimed_at timestamptz,
    expires_at timestamptz NOT NULL DEFAULT '-infinity'
);
CREATE INDEX camera_leases_worker ON camera_leases (worker, expires_at);

CREATE TABLE video_workers (
    worker     text PRIMARY KEY,
    host       text NOT NULL,
    pid        integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    seen_at    timestamptz NOT NULL DEFAULT now()
);
