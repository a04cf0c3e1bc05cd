-- Who made the decision a freeze holds (ServiceNow's approval, or snowgate's own proceeding
-- decision: a timeout that continues, a stage not under change control), for its release.
ALTER TABLE held_approvals ADD COLUMN actor TEXT NOT NULL DEFAULT 'servicenow';
