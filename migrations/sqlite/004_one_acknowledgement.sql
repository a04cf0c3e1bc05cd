-- One acknowledgement per gate, whatever path queues it (a callback, reconciliation, or a callback arriving after polling decided).
DELETE FROM outbox WHERE kind = 'acknowledge'
  AND id NOT IN (SELECT MIN(id) FROM outbox WHERE kind = 'acknowledge' GROUP BY gate_id);
CREATE UNIQUE INDEX outbox_one_acknowledgement ON outbox (gate_id) WHERE kind = 'acknowledge';
