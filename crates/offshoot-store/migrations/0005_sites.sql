-- Static sites: the image an application's static builds run in (default: the server's).
ALTER TABLE app_git ADD COLUMN static_builder TEXT;
