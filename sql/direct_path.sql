-- The direct path: on a plain table (no triggers, RLS, partitions or
-- generated columns), a full-row message for a row that exists is decided
-- below SQL.  It must be indistinguishable from the INSERT ... ON CONFLICT
-- statement: the same messages on a twin table that has a (no-op) trigger,
-- which keeps it on the statement, give the same results, rows, events and
-- errors.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS upsert_order CASCADE;
DROP SCHEMA IF EXISTS direct_path CASCADE;
CREATE EXTENSION upsert_order;
DROP ROLE IF EXISTS upsert_direct_writer;
RESET client_min_messages;
CREATE SCHEMA direct_path;
GRANT USAGE ON SCHEMA direct_path TO PUBLIC;
SET search_path = direct_path, upsert_order;
\set SHOW_CONTEXT never

CREATE DOMAIN small AS int CHECK (VALUE < 1000);
CREATE TABLE plain (
	id		int PRIMARY KEY,
	ver		rowseq,
	name	text NOT NULL,
	code	text UNIQUE,
	qty		small,
	price	numeric CHECK (price >= 0)
);
CREATE TABLE twin (LIKE plain INCLUDING ALL);
CREATE FUNCTION nothing() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE TRIGGER keep_on_statement AFTER UPDATE ON twin FOR EACH STATEMENT EXECUTE FUNCTION nothing();

-- Apply one message to both tables; show both results side by side.
CREATE FUNCTION both_ways(msg jsonb) RETURNS TABLE (path text, applied boolean, outcome text, version rowseq, stored_version rowseq)
LANGUAGE plpgsql AS $$
BEGIN
	RETURN QUERY SELECT 'direct', r.applied, r.outcome, r.version, r.stored_version FROM upsert_order.versioned_upsert('plain', msg) r;
	RETURN QUERY SELECT 'statement', r.applied, r.outcome, r.version, r.stored_version FROM upsert_order.versioned_upsert('twin', msg) r;
END $$;

SELECT * FROM both_ways('{"id": 1, "ver": 10, "name": "a", "code": "A", "qty": 1, "price": 1.5}');
SELECT * FROM both_ways('{"id": 1, "ver": 20, "name": "b", "code": "B", "qty": 2, "price": 2.5}');
SELECT * FROM both_ways('{"id": 1, "ver": 20, "name": "c", "code": "C", "qty": 3, "price": 3.5}');
SELECT * FROM both_ways('{"id": 1, "ver": 15, "name": "d", "code": "D", "qty": 4, "price": 4.5}');
SELECT * FROM both_ways('{"id": 1, "ver": 25, "name": "e"}');
SELECT * FROM both_ways('{"id": 1, "ver": 30, "name": "f", "code": null, "qty": null, "price": null}');
SELECT * FROM both_ways('{"id": 2, "ver": 1, "name": "x", "code": "X", "qty": 1, "price": 0}');

-- Errors are the same too, on stale messages as on newer ones: ON CONFLICT
-- checks the proposed row before it looks at the stored one.
SELECT versioned_upsert('plain', '{"id": 1, "ver": 5, "name": null, "code": "Z", "qty": 1, "price": 1}');
SELECT versioned_upsert('twin', '{"id": 1, "ver": 5, "name": null, "code": "Z", "qty": 1, "price": 1}');
SELECT versioned_upsert('plain', '{"id": 1, "ver": 5, "name": "n", "code": "Z", "qty": 1, "price": -1}');
SELECT versioned_upsert('twin', '{"id": 1, "ver": 5, "name": "n", "code": "Z", "qty": 1, "price": -1}');
SELECT versioned_upsert('plain', '{"id": 1, "ver": 50, "name": "n", "code": "Z", "qty": 5000, "price": 1}');
SELECT versioned_upsert('twin', '{"id": 1, "ver": 50, "name": "n", "code": "Z", "qty": 5000, "price": 1}');
SELECT versioned_upsert('plain', '{"id": 1, "ver": 50, "name": "n", "code": "X", "qty": 1, "price": 1}');
SELECT versioned_upsert('twin', '{"id": 1, "ver": 50, "name": "n", "code": "X", "qty": 1, "price": 1}');

-- A stored NULL version is older than any message.
UPDATE plain SET ver = NULL WHERE id = 2;
UPDATE twin SET ver = NULL WHERE id = 2;
SELECT * FROM both_ways('{"id": 2, "ver": 3, "name": "y", "code": "Y", "qty": 2, "price": 1}');

-- Same rows, same events.
SELECT p.*, (p.*)::text = (t.*)::text AS same_as_twin FROM plain p JOIN twin t USING (id) ORDER BY id;
SELECT p.key, p.version, p.outcome, p.data, p.data = t.data AS same_data, p.payload = t.payload AS same_payload
FROM (SELECT *, row_number() OVER (ORDER BY event_id) AS n FROM event_log WHERE target = 'plain'::regclass) p
JOIN (SELECT *, row_number() OVER (ORDER BY event_id) AS n FROM event_log WHERE target = 'twin'::regclass) t USING (n)
ORDER BY n;

-- Privileges are checked as the statement checks them, column by column.
CREATE ROLE upsert_direct_writer;
GRANT SELECT, INSERT ON plain, twin TO upsert_direct_writer;
GRANT UPDATE (ver, name, code, qty) ON plain, twin TO upsert_direct_writer;
SET ROLE upsert_direct_writer;
SELECT versioned_upsert('plain', '{"id": 1, "ver": 60, "name": "p", "code": "P", "qty": 1, "price": 1}');
SELECT versioned_upsert('twin', '{"id": 1, "ver": 60, "name": "p", "code": "P", "qty": 1, "price": 1}');
-- (a stale message needs the same privileges)
SELECT versioned_upsert('plain', '{"id": 1, "ver": 1, "name": "p", "code": "P", "qty": 1, "price": 1}');
SELECT versioned_upsert('twin', '{"id": 1, "ver": 1, "name": "p", "code": "P", "qty": 1, "price": 1}');
RESET ROLE;
GRANT UPDATE ON plain, twin TO upsert_direct_writer;
REVOKE SELECT ON plain, twin FROM upsert_direct_writer;
GRANT SELECT (id, ver) ON plain, twin TO upsert_direct_writer;
SET ROLE upsert_direct_writer;
SELECT versioned_upsert('plain', '{"id": 1, "ver": 60, "name": "p", "code": "P", "qty": 1, "price": 1}');
SELECT versioned_upsert('twin', '{"id": 1, "ver": 60, "name": "p", "code": "P", "qty": 1, "price": 1}');
RESET ROLE;
GRANT SELECT ON plain, twin TO upsert_direct_writer;
SET ROLE upsert_direct_writer;
SELECT * FROM both_ways('{"id": 1, "ver": 60, "name": "p", "code": "P", "qty": 1, "price": 1}');
RESET ROLE;

-- Inside a transaction that rolls back, the direct path leaves nothing either.
BEGIN;
SELECT * FROM both_ways('{"id": 1, "ver": 70, "name": "q", "code": "Q", "qty": 1, "price": 1}');
ROLLBACK;
SELECT id, ver, name FROM plain ORDER BY id;

-- Several messages for one row in one transaction see each other.
SELECT outcome FROM versioned_upsert_batch('plain', '[
	{"id": 1, "ver": 80, "name": "r", "code": "R", "qty": 1, "price": 1},
	{"id": 1, "ver": 80, "name": "r", "code": "R", "qty": 1, "price": 1},
	{"id": 1, "ver": 79, "name": "s", "code": "S", "qty": 1, "price": 1},
	{"id": 1, "ver": 81, "name": "t", "code": "T", "qty": 1, "price": 1}]');
SELECT id, ver, name, code FROM plain WHERE id = 1;

DROP OWNED BY upsert_direct_writer;
DROP ROLE upsert_direct_writer;
