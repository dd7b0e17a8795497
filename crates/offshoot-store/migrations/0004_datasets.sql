-- Instant Datasets. A dataset: where its data comes from and where its pool lives (both URLs
-- encrypted), the pool's size, its refresh schedule and lease TTL, and its current snapshot (a
-- frozen database on the target server). `pending_*` names the snapshot being taken, so that one
-- interrupted by a crash is found and dropped.
CREATE TABLE datasets (
    name TEXT PRIMARY KEY,
    engine TEXT NOT NULL,
    source TEXT NOT NULL,
    target TEXT NOT NULL,
    pool_size BIGINT NOT NULL,
    refresh TEXT,
    ttl_seconds BIGINT,
    state TEXT NOT NULL,
    error TEXT,
    generation BIGINT NOT NULL DEFAULT 0,
    snapshot TEXT,
    snapshot_owner TEXT,
    snapshot_bytes BIGINT,
    snapshot_at BIGINT,
    pending_snapshot TEXT,
    pending_owner TEXT,
    refresh_requested BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
-- A clone: a database and its login (same name), its password encrypted. Recorded (`filling`)
-- before it is made, so that nothing exists on a server without a record; `ready` in the pool;
-- `leased` to one environment; `dropping` on its way out.
CREATE TABLE dataset_clones (
    db_name TEXT PRIMARY KEY,
    dataset TEXT NOT NULL,
    generation BIGINT NOT NULL,
    role TEXT NOT NULL,
    password TEXT NOT NULL,
    state TEXT NOT NULL,
    env_id TEXT,
    leased_at BIGINT,
    created_at BIGINT NOT NULL,
    ready_at BIGINT
);
CREATE INDEX dataset_clones_state ON dataset_clones (dataset, state);
-- An environment holds at most one clone of a dataset.
CREATE UNIQUE INDEX dataset_clones_lease ON dataset_clones (dataset, env_id);
