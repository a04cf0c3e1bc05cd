-- Evidence attached to a gate's change request, by the SHA-256 of its content (or link): the
-- same evidence is never sent twice.
CREATE TABLE evidence (
    gate_id     TEXT NOT NULL REFERENCES gates (id),
    sha256      TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (gate_id, sha256)
);
