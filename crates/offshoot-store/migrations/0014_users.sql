-- Users, with a role; the built-in `admin` owns the token made at the first start. A disabled
-- user's tokens and sessions stop working.
CREATE TABLE users (
    email TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    disabled BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
INSERT INTO users (email, role, disabled, created_at) VALUES ('admin', 'admin', 0, 0);

-- Tokens belong to a user, have a public id, and may expire.
ALTER TABLE tokens ADD COLUMN id TEXT;
ALTER TABLE tokens ADD COLUMN user_email TEXT NOT NULL DEFAULT 'admin';
ALTER TABLE tokens ADD COLUMN expires_at BIGINT;
UPDATE tokens SET id = 't' || substr(hash, 1, 16) WHERE id IS NULL;

-- A user's role raised for one application.
CREATE TABLE app_grants (
    app TEXT NOT NULL,
    email TEXT NOT NULL,
    role TEXT NOT NULL,
    PRIMARY KEY (app, email)
);

-- A dashboard session is a user's.
ALTER TABLE ui_sessions ADD COLUMN user_email TEXT NOT NULL DEFAULT 'admin';

-- Who did it, precisely: the token used, and the address the request came from.
ALTER TABLE activity ADD COLUMN token_id TEXT;
ALTER TABLE activity ADD COLUMN address TEXT;

-- Team-only previews: an application's access (`team`; NULL is public) and its bypass token
-- (sealed by the server, shown to admins).
ALTER TABLE app_git ADD COLUMN access TEXT;
ALTER TABLE app_git ADD COLUMN bypass_token TEXT;
