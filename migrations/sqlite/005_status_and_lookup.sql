-- The status page's recent decisions, the newest first.
CREATE INDEX gates_decided ON gates (decided_at) WHERE decided_at IS NOT NULL;
-- The open gates, the oldest first (status page, reconciliation).
CREATE INDEX gates_open ON gates (created_ms, id) WHERE state IN ('registering', 'pending');
-- GET /change-info: the gates of a build, the newest first.
CREATE INDEX gates_build ON gates (build_number, created_ms);
