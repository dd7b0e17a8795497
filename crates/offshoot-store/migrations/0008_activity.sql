-- What was done, by whom, and how it ended: one row per operation that changes something
-- (refusals included), written by the control plane's one gate. `id` orders rows written in
-- the same millisecond.
CREATE TABLE activity (
    id TEXT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    operation TEXT NOT NULL,
    target TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT
);
CREATE INDEX activity_at ON activity (at);
