-- Each camera's stream state as its video worker last saw it, for the API processes when
-- the roles run apart (the wall's tiles, the overview). A row counts only while the worker
-- that wrote it still holds the camera's lease under the same generation; otherwise the
-- camera is "unassigned" (no worker runs it).
CREATE TABLE camera_states (
    camera_id  text PRIMARY KEY REFERENCES cameras (id),
    state      text NOT NULL,
    reason     text NOT NULL DEFAULT '',
    since      timestamptz NOT NULL,
    worker     text NOT NULL,
    generation bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Where a video worker is reached (server.advertise_url): the API process relays the
-- pictures of the cameras a worker runs (snapshots, the MJPEG stream) from it.
ALTER TABLE video_workers ADD COLUMN url text;
