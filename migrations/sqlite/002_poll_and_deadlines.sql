ALTER TABLE gates ADD COLUMN poll_interval_ms INTEGER;
ALTER TABLE gates ADD COLUMN next_poll_ms INTEGER;
ALTER TABLE gates ADD COLUMN creation_deadline_ms INTEGER;
ALTER TABLE gates ADD COLUMN step_deadline_ms INTEGER;
CREATE INDEX gates_next_poll ON gates (next_poll_ms) WHERE next_poll_ms IS NOT NULL;
CREATE INDEX gates_creation_deadline ON gates (creation_deadline_ms) WHERE creation_deadline_ms IS NOT NULL;
CREATE INDEX gates_step_deadline ON gates (step_deadline_ms) WHERE step_deadline_ms IS NOT NULL;
