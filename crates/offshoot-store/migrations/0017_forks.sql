-- Pull requests from forks, held until someone approves them: the latest event seen (the
-- normalized pull request, JSON) and the head commit approved, by whom and when. An approval is
-- of one commit: new commits wait for another.
CREATE TABLE fork_pulls (
    app TEXT NOT NULL,
    pull_request TEXT NOT NULL,
    number BIGINT NOT NULL,
    event TEXT NOT NULL,
    approved_commit TEXT,
    approved_by TEXT,
    approved_at BIGINT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (app, pull_request)
);
-- Whether the environments of forks' pull requests get the application's secrets (`1`), or run
-- without them (`0`, the default).
ALTER TABLE app_git ADD COLUMN fork_secrets BIGINT NOT NULL DEFAULT 0;
