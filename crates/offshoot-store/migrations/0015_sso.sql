-- How a dashboard session began: `token` (an API token pasted) or `sso` (single sign-on, whose
-- sign-out also ends the identity provider's session).
ALTER TABLE ui_sessions ADD COLUMN via TEXT NOT NULL DEFAULT 'token';
