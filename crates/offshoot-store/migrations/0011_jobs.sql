-- Runs of environments' cron jobs on engines where the control plane schedules them (Docker):
-- one row per occurrence of a job's schedule in an environment, whether it ran or was skipped
-- (the environment asleep, the previous run still going). The unique key makes an occurrence
-- run once, however many servers share the database.
CREATE TABLE cron_runs (
    id TEXT PRIMARY KEY,
    env_id TEXT NOT NULL,
    job TEXT NOT NULL,
    scheduled_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    status TEXT NOT NULL,
    reason TEXT,
    output TEXT NOT NULL DEFAULT '',
    UNIQUE (env_id, job, scheduled_at)
);
CREATE INDEX cron_runs_status ON cron_runs (status);

-- The image each job with a `build` of its own was last built as, per environment: a cron job
-- runs between deployments, from the image its environment's last deployment built.
CREATE TABLE job_images (
    env_id TEXT NOT NULL,
    job TEXT NOT NULL,
    image TEXT NOT NULL,
    PRIMARY KEY (env_id, job)
);
