ALTER TABLE gates ADD COLUMN completed_result TEXT;
ALTER TABLE gates ADD COLUMN completed_at TEXT;
