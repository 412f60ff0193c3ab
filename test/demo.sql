-- upsert_order demo: messages about the same record arrive out of order.
\set ECHO queries
\pset footer off
CREATE EXTENSION upsert_order;

CREATE TABLE customer (
	id		int PRIMARY KEY,
	version	upsert_order.rowseq NOT NULL,
	name	text,
	email	text
);

-- Three application servers send "upsert customer 42".  Version 3 is the
-- newest, but the slow server delivers version 2 last.
SELECT * FROM upsert_order.versioned_upsert('customer', '{"id": 42, "version": 1, "name": "Ada", "email": "ada@old.example"}');
SELECT * FROM upsert_order.versioned_upsert('customer', '{"id": 42, "version": 3, "name": "Ada Lovelace", "email": "ada@new.example"}');
SELECT * FROM upsert_order.versioned_upsert('customer', '{"id": 42, "version": 2, "name": "Ada L.", "email": "ada@mid.example"}');
-- A retry of version 3 is recognised as a duplicate.
SELECT * FROM upsert_order.versioned_upsert('customer', '{"id": 42, "version": 3, "name": "Ada Lovelace", "email": "ada@new.example"}');

-- The newest version won, whatever the arrival order:
SELECT * FROM customer;

-- Every message is in the append-only event log, applied or not:
SELECT event_id, key, version, outcome, payload->>'email' AS email_sent FROM upsert_order.event_log ORDER BY event_id;

-- Without a version, the server stamps the message with its hybrid logical
-- clock (milliseconds since 1970 in the upper 48 bits, a counter below):
SELECT outcome, version, upsert_order.rowseq_time(version) AS stamped_at
FROM upsert_order.versioned_upsert('customer', '{"id": 7, "name": "Grace"}');

-- Many messages at once, in order, in one statement:
SELECT outcome, count(*) FROM upsert_order.versioned_upsert_batch('customer',
	'[{"id": 8, "version": 5, "name": "Edsger"}, {"id": 8, "version": 4, "name": "late"},
	  {"id": 9, "version": 1, "name": "Barbara"}, {"id": 9, "version": 1, "name": "retry"}]')
GROUP BY outcome ORDER BY outcome;
