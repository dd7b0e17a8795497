-- Credentials for container registries: server-wide (`app` empty) or one application's, which
-- win for their host. The password is encrypted by the server and never shown.
CREATE TABLE registry_credentials (
    host TEXT NOT NULL,
    app TEXT NOT NULL DEFAULT '',
    username TEXT NOT NULL,
    secret TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (host, app)
);
