-- Change freezes declared through the API (those of the configuration file are not stored).
CREATE TABLE freezes (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    start_ms    BIGINT NOT NULL,
    end_ms      BIGINT NOT NULL,
    body        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX freezes_end ON freezes (end_ms);
-- A ServiceNow approval held back by a change freeze, until `until_ms` (the freeze's end).
CREATE TABLE held_approvals (
    gate_id     TEXT PRIMARY KEY REFERENCES gates (id),
    freeze_id   TEXT NOT NULL,
    freeze_name TEXT NOT NULL,
    until_ms    BIGINT NOT NULL,
    to_state    TEXT NOT NULL,
    proceed     BOOLEAN,
    message     TEXT NOT NULL,
    held_at     TEXT NOT NULL
);
CREATE INDEX held_approvals_until ON held_approvals (until_ms);
