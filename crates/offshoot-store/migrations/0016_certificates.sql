-- Certificates from ACME, by their first name (`*.example.com`, or one host): the chain, the
-- key sealed by the server, what the leaf says of itself, how many orders it took, and the
-- last failure with when to try again. Several servers of one store serve the same ones.
CREATE TABLE certificates (
    name TEXT PRIMARY KEY,
    names TEXT NOT NULL,
    chain_pem TEXT,
    key_sealed TEXT,
    issuer TEXT,
    serial TEXT,
    not_before BIGINT,
    not_after BIGINT,
    orders BIGINT NOT NULL DEFAULT 0,
    failures BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    next_attempt BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL
);

-- The ACME account on each directory, its credentials sealed.
CREATE TABLE acme_accounts (
    directory TEXT PRIMARY KEY,
    credentials TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
