-- App imports: an imported app's environment points at the importing one, and records how it
-- was chosen (JSON: branch reason, excluded services, position among the imports).
ALTER TABLE environments ADD COLUMN parent_id TEXT;
ALTER TABLE environments ADD COLUMN import_info TEXT;
CREATE INDEX environments_parent ON environments (parent_id);
