CREATE TABLE gates (
    id              TEXT PRIMARY KEY,
    job_url         TEXT NOT NULL,
    build_number    TEXT NOT NULL,
    stage_name      TEXT NOT NULL,
    state           TEXT NOT NULL,
    proceed         INTEGER,
    message         TEXT NOT NULL,
    spec            TEXT NOT NULL,
    callback_token  TEXT NOT NULL,
    token_hash      TEXT NOT NULL UNIQUE,
    change_request  TEXT,
    created_at      TEXT NOT NULL,
    created_ms      INTEGER NOT NULL,
    updated_at      TEXT NOT NULL,
    decided_at      TEXT,
    decided_by      TEXT,
    UNIQUE (job_url, build_number, stage_name)
);
CREATE INDEX gates_state ON gates (state, created_ms);
CREATE INDEX gates_created ON gates (created_ms);
CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
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
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    gate_id         TEXT NOT NULL REFERENCES gates (id),
    kind            TEXT NOT NULL,
    payload         TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    due_ms          INTEGER NOT NULL,
    claimed_until   INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    created_at      TEXT NOT NULL
);
CREATE INDEX outbox_due ON outbox (due_ms);
