-- Environments that sleep: since when (NULL while awake), when the router last passed one a
-- request, and its own idle-sleep setting (NULL: its application's; 0: never). An
-- application's idle-sleep default lives beside its other settings (NULL: never), with the
-- lifetimes its new environments get (NULL: none), and an environment records when its pull
-- request was warned that it expires. An application's environments may sleep and wake on
-- five-field cron schedules (the server's time zone).
ALTER TABLE environments ADD COLUMN sleeping_since BIGINT;
ALTER TABLE environments ADD COLUMN last_request_at BIGINT;
ALTER TABLE environments ADD COLUMN idle_sleep_seconds BIGINT;
ALTER TABLE app_git ADD COLUMN idle_sleep_seconds BIGINT;
ALTER TABLE app_git ADD COLUMN ttl_seconds BIGINT;
ALTER TABLE app_git ADD COLUMN pull_request_ttl_seconds BIGINT;
ALTER TABLE environments ADD COLUMN expiry_warned_at BIGINT;
ALTER TABLE app_git ADD COLUMN sleep_schedule TEXT;
ALTER TABLE app_git ADD COLUMN wake_schedule TEXT;
