-- Who made the decision a freeze holds (ServiceNow's approval, or snowgate's own proceeding
-- decision: a timeout that continues, a stage not under change control), for its release.
ALTER TABLE held_approvals ADD COLUMN actor TEXT NOT NULL DEFAULT 'servicenow';

-- The change request each evidence went to: gates that share one CR (the same title) never
-- send it the same evidence twice.
ALTER TABLE evidence ADD COLUMN cr_sys_id TEXT;
CREATE UNIQUE INDEX evidence_once_per_cr ON evidence (cr_sys_id, sha256);
