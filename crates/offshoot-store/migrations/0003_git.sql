-- Git integration.
-- Per application: the webhook secret (encrypted), pull-request environments, and what went
-- wrong last with its repository (a refused GitOps push, a failed fetch).
CREATE TABLE app_git (
    app TEXT PRIMARY KEY REFERENCES apps(name) ON DELETE CASCADE,
    webhook_secret TEXT NOT NULL,
    pull_requests BIGINT NOT NULL DEFAULT 0,
    pull_request_label TEXT,
    gitops_error TEXT,
    fetch_error TEXT
);
-- An environment made for a pull request (JSON the server owns: provider, repository, number,
-- labels, head commit).
ALTER TABLE environments ADD COLUMN pull_request TEXT;
-- Webhook deliveries and polled changes, as normalized events: a repeated id is ignored, and an
-- event not yet handled when the server stopped is handled after it starts.
CREATE TABLE deliveries (
    id TEXT PRIMARY KEY,
    app TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    event TEXT NOT NULL,
    status TEXT NOT NULL,
    result TEXT,
    received_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX deliveries_app ON deliveries (app, received_at);
CREATE INDEX deliveries_status ON deliveries (status);
-- The last commit seen for each branch or tag of an application's repository.
CREATE TABLE git_heads (
    app TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    ref_name TEXT NOT NULL,
    commit_sha TEXT NOT NULL,
    PRIMARY KEY (app, ref_name)
);
-- The one comment Offshoot keeps on each pull request (created once, then edited).
CREATE TABLE pr_comments (
    app TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    pull_request TEXT NOT NULL,
    comment_id TEXT NOT NULL,
    PRIMARY KEY (app, pull_request)
);
