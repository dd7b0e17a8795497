CREATE TABLE tokens (
    hash TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE apps (
    name TEXT PRIMARY KEY,
    repo TEXT NOT NULL,
    default_branch TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE app_versions (
    app TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    version BIGINT NOT NULL,
    template TEXT NOT NULL,
    env_vars TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (app, version)
);
CREATE TABLE secrets (
    app TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    service TEXT NOT NULL,
    key TEXT NOT NULL,
    ciphertext TEXT NOT NULL,
    PRIMARY KEY (app, service, key)
);
CREATE TABLE environments (
    id TEXT PRIMARY KEY,
    app TEXT NOT NULL,
    branch TEXT NOT NULL,
    commit_sha TEXT,
    environment_template TEXT,
    status TEXT NOT NULL,
    reason TEXT,
    template TEXT NOT NULL,
    env_vars TEXT NOT NULL,
    expires_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX environments_app ON environments (app);
CREATE TABLE deployments (
    id TEXT PRIMARY KEY,
    env_id TEXT NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    workflow TEXT NOT NULL,
    commit_sha TEXT,
    status TEXT NOT NULL,
    error TEXT,
    phases TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX deployments_env ON deployments (env_id);
CREATE TABLE steps (
    deployment TEXT NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
    idx BIGINT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    output TEXT NOT NULL,
    PRIMARY KEY (deployment, idx)
);
CREATE TABLE services (
    env_id TEXT NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    detail TEXT NOT NULL,
    PRIMARY KEY (env_id, name)
);
CREATE TABLE build_logs (
    deployment TEXT NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
    service TEXT NOT NULL,
    log TEXT NOT NULL,
    PRIMARY KEY (deployment, service)
);
