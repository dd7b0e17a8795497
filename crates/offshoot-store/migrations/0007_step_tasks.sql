-- The executor's log, one level down: each task of a workflow step, recorded when it ends, so a
-- deployment resumed after a crash runs again only the tasks that had not finished.
CREATE TABLE step_tasks (
    deployment TEXT NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
    step BIGINT NOT NULL,
    task TEXT NOT NULL,
    status TEXT NOT NULL,
    output TEXT NOT NULL,
    PRIMARY KEY (deployment, step, task)
);
