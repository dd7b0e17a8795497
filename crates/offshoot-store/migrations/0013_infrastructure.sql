-- The Terraform state of each `infrastructure` entry of an environment: the state file itself
-- when the module declares no backend of its own (encrypted by the server), or the name of the
-- module's backend; its last outputs (sensitive values encrypted); and the lock a run holds.
-- A row goes only when its destroy succeeded: a failed destroy never forgets what it made.
CREATE TABLE infra_states (
    env_id TEXT NOT NULL,
    name TEXT NOT NULL,
    state TEXT,
    serial BIGINT NOT NULL DEFAULT 0,
    backend TEXT,
    outputs TEXT NOT NULL DEFAULT '{}',
    sensitive TEXT,
    status TEXT NOT NULL,
    reason TEXT,
    updated_at BIGINT NOT NULL,
    locked_by TEXT,
    locked_at BIGINT,
    PRIMARY KEY (env_id, name)
);

-- Each run of an entry (`apply` or `destroy`), with Terraform's own output.
CREATE TABLE infra_runs (
    id TEXT PRIMARY KEY,
    env_id TEXT NOT NULL,
    name TEXT NOT NULL,
    action TEXT NOT NULL,
    deployment_id TEXT,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    status TEXT NOT NULL,
    reason TEXT,
    log TEXT NOT NULL DEFAULT ''
);
CREATE INDEX infra_runs_entry ON infra_runs (env_id, name, started_at);

-- The image an application's Terraform runs in (NULL: the server's default).
ALTER TABLE app_git ADD COLUMN terraform_image TEXT;
