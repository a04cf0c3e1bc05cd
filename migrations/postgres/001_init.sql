CREATE TABLE gates (
    id              TEXT PRIMARY KEY,
    job_url         TEXT NOT NULL,
    build_number    TEXT NOT NULL,
    stage_name      TEXT NOT NULL,
    state           TEXT NOT NULL,
    proceed         BOOLEAN,
    message         TEXT NOT NULL,
    spec            TEXT NOT NULL,
    callback_token  TEXT NOT NULL,
    token_hash      TEXT NOT NULL UNIQUE,
    change_request  TEXT,
    created_at      TEXT NOT NULL,
    created_ms      BIGINT NOT NULL,
    updated_at      TEXT NOT NULL,
    decided_at      TEXT,
    decided_by      TEXT,
    poll_interval_ms BIGINT,
    next_poll_ms    BIGINT,
    creation_deadline_ms BIGINT,
    step_deadline_ms BIGINT,
    completed_result TEXT,
    completed_at    TEXT,
    UNIQUE (job_url, build_number, stage_name)
);
CREATE INDEX gates_state ON gates (state, created_ms);
CREATE INDEX gates_created ON gates (created_ms);
CREATE INDEX gates_next_poll ON gates (next_poll_ms) WHERE next_poll_ms IS NOT NULL;
CREATE INDEX gates_creation_deadline ON gates (creation_deadline_ms) WHERE creation_deadline_ms IS NOT NULL;
CREATE INDEX gates_step_deadline ON gates (step_deadline_ms) WHERE step_deadline_ms IS NOT NULL;
CREATE TABLE events (
    id          BIGSERIAL PRIMARY KEY,
    gate_id     TEXT NOT NULL REFERENCES gates (id),
    at          TEXT NOT NULL,
    actor       TEXT NOT NULL,
    kind        TEXT NOT NULL,
    from_state  TEXT,
    to_state    TEXT,
    message     TEXT NOT NULL
);
CREATE INDEX events_gate ON events (gate_id, id);
CREATE TABLE outbox (
    id              BIGSERIAL PRIMARY KEY,
    gate_id         TEXT NOT NULL REFERENCES gates (id),
    kind            TEXT NOT NULL,
    payload         TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    due_ms          BIGINT NOT NULL,
    claimed_until   BIGINT NOT NULL DEFAULT 0,
    last_error      TEXT,
    created_at      TEXT NOT NULL
);
CREATE INDEX outbox_due ON outbox (due_ms);
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    until_ms    BIGINT NOT NULL
);
CREATE TABLE replicas (
    id          TEXT PRIMARY KEY,
    seen_ms     BIGINT NOT NULL
);
