-- Dashboard sessions: a browser logged in with an API token holds a random session id in a
-- cookie; only its SHA-256 is stored.
CREATE TABLE ui_sessions (
    hash TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
