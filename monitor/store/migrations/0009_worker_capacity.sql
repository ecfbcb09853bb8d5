-- A video worker's capacity: the most cameras it analyses (media.max_cameras; NULL: no
-- limit). Shares are filled up to each worker's capacity; cameras beyond every live
-- worker's capacity stay unassigned and are reported, rather than analysed by nobody
-- while a worker claims more than its detector can take.
ALTER TABLE video_workers ADD COLUMN capacity integer CHECK (capacity IS NULL OR capacity > 0);
