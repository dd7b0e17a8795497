-- The values an environment was given for its template's `parameters` (a JSON object of
-- strings; NULL: none given, the defaults apply).
ALTER TABLE environments ADD COLUMN parameters TEXT;
