-- versioned_upsert_batch(): one result per element, in input order, exactly
-- as the same calls one after another; atomic as one statement.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS upsert_order CASCADE;
DROP SCHEMA IF EXISTS batch CASCADE;
CREATE EXTENSION upsert_order;
RESET client_min_messages;
CREATE SCHEMA batch;
GRANT USAGE ON SCHEMA batch TO PUBLIC;
SET search_path = batch, upsert_order;
\set SHOW_CONTEXT never

CREATE TABLE item (id int PRIMARY KEY, ver rowseq NOT NULL, name text, qty int DEFAULT 1);

-- Every outcome, and the same key several times: each element sees the ones before it.
SELECT * FROM versioned_upsert_batch('item', '[
	{"id": 1, "ver": 10, "name": "a"},
	{"id": 2, "ver": 10, "name": "b"},
	{"id": 1, "ver": 12, "name": "a2"},
	{"id": 1, "ver": 12, "name": "a2 again"},
	{"id": 1, "ver": 11, "name": "a late"},
	{"id": 2, "ver": 11, "qty": 5}
]');
SELECT * FROM item ORDER BY id;
-- One event per element, in input order.
SELECT event_id, key, version, outcome, payload->>'name' AS name FROM event_log ORDER BY event_id;

-- The results are those of the same calls made one by one.
CREATE TABLE item2 (LIKE item INCLUDING ALL);
SELECT array_agg(r.outcome ORDER BY n) AS one_by_one
FROM jsonb_array_elements('[{"id": 1, "ver": 3}, {"id": 1, "ver": 2}, {"id": 1, "ver": 3}, {"id": 1, "ver": 4}]')
	WITH ORDINALITY AS e(msg, n),
	LATERAL versioned_upsert('item2', e.msg) AS r;
TRUNCATE item2;
SELECT array_agg(outcome) AS batched
FROM versioned_upsert_batch('item2', '[{"id": 1, "ver": 3}, {"id": 1, "ver": 2}, {"id": 1, "ver": 3}, {"id": 1, "ver": 4}]');

-- Elements without a version get server stamps, strictly increasing in order.
SELECT bool_and(version > prev) AS increasing, count(*) AS n
FROM (SELECT version, lag(version) OVER () AS prev
      FROM versioned_upsert_batch('item', '[{"id": 3}, {"id": 3}, {"id": 4}, {"id": 3}]')) t
WHERE prev IS NOT NULL;

-- An empty array does nothing.
SELECT count(*) FROM versioned_upsert_batch('item', '[]');

-- An error in any element aborts the whole call: nothing stored, nothing logged.
SELECT count(*) AS events_before FROM event_log \gset
SELECT * FROM versioned_upsert_batch('item', '[{"id": 5, "ver": 1}, {"id": 6, "ver": 1, "nope": 1}]');
SELECT * FROM versioned_upsert_batch('item', '[{"id": 5, "ver": 1}, {"ver": 1}]');
SELECT * FROM versioned_upsert_batch('item', '[{"id": 5, "ver": 1}, {"id": 6, "ver": -1}]');
SELECT * FROM versioned_upsert_batch('item', '[{"id": 5, "ver": 1}, [1, 2]]');
SELECT * FROM versioned_upsert_batch('item', '[{"id": 5, "ver": 1}, "x"]');
SELECT * FROM versioned_upsert_batch('item', '[{"id": 5, "ver": 1}, {"id": 6, "ver": 1, "qty": "many"}]');
SELECT count(*) - :events_before AS new_events FROM event_log;
SELECT count(*) AS rows_5_6 FROM item WHERE id IN (5, 6);
-- The error says which element failed.
\set SHOW_CONTEXT errors
SELECT * FROM versioned_upsert_batch('item', '[{"id": 5, "ver": 1}, {"id": 6, "ver": 1}, {"id": 7, "ver": "x"}]');
\set SHOW_CONTEXT never

-- Bad arguments.
\set VERBOSITY sqlstate
SELECT * FROM versioned_upsert_batch('item', '{"id": 1, "ver": 1}');
SELECT * FROM versioned_upsert_batch('item', NULL);
SELECT * FROM versioned_upsert_batch(NULL, '[]');
SELECT * FROM versioned_upsert_batch('item', '[{"id": 5, "ver": 1}, 7]');
\set VERBOSITY default
SELECT * FROM versioned_upsert_batch('item', '{"id": 1, "ver": 1}');
SELECT * FROM versioned_upsert_batch('item', NULL);

-- Same checks on the target as the single call.
CREATE VIEW item_view AS SELECT * FROM item;
SELECT * FROM versioned_upsert_batch('item_view', '[{"id": 1, "ver": 1}]');
-- An empty batch too, though it writes nothing.
CREATE TABLE no_version (id int PRIMARY KEY);
SELECT count(*) FROM versioned_upsert_batch('item_view', '[]');
SELECT count(*) FROM versioned_upsert_batch('no_version', '[]');
SELECT count(*) FROM versioned_upsert_batch('event_log', '[]');
SELECT count(*) FROM versioned_upsert_batch('pg_class', '[]');
SELECT count(*) FROM versioned_upsert_batch(2147483647::oid::regclass, '[]');
-- Refused in a read-only transaction, as every message is; allowed on a
-- temporary table, which such a transaction may write, as long as there is
-- no event to log.
BEGIN READ ONLY;
SELECT count(*) FROM versioned_upsert_batch('item', '[]');
ROLLBACK;
CREATE TEMP TABLE tmp_item (id int PRIMARY KEY, ver rowseq NOT NULL);
BEGIN READ ONLY;
SELECT count(*) FROM versioned_upsert_batch('tmp_item', '[]');
ROLLBACK;
BEGIN READ ONLY;
SELECT count(*) FROM versioned_upsert_batch('tmp_item', '[{"id": 1, "ver": 1}]');
ROLLBACK;
SELECT count(*) FROM tmp_item;
DROP TABLE tmp_item;
-- Refused on a published table without a replica identity, as every
-- message is.
CREATE TABLE no_identity (id int PRIMARY KEY, ver rowseq NOT NULL);
ALTER TABLE no_identity REPLICA IDENTITY NOTHING;
SET client_min_messages = error;
CREATE PUBLICATION batch_pub FOR TABLE no_identity;
RESET client_min_messages;
SELECT * FROM versioned_upsert_batch('no_identity', '[{"id": 1, "ver": 1}]');
SELECT count(*) FROM versioned_upsert_batch('no_identity', '[]');
DROP PUBLICATION batch_pub;
SELECT count(*) FROM versioned_upsert_batch('no_identity', '[]');
DROP TABLE no_identity;

-- Each element reads the tables as a single call made then would: a
-- domain's CHECK that calls a STABLE function sees the rows of the
-- elements before it, in a batch as in calls one by one.
CREATE TABLE coded (id int PRIMARY KEY, ver rowseq NOT NULL, code text);
CREATE FUNCTION code_free(c text) RETURNS boolean LANGUAGE sql STABLE
	AS 'SELECT NOT EXISTS (SELECT 1 FROM batch.coded WHERE code = c)';
CREATE DOMAIN free_code AS text CHECK (code_free(VALUE));
ALTER TABLE coded ALTER COLUMN code TYPE free_code;
SELECT * FROM versioned_upsert_batch('coded',
	'[{"id": 1, "ver": 1, "code": "x"}, {"id": 2, "ver": 1, "code": "x"}]');
SELECT count(*) FROM coded;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT * FROM versioned_upsert_batch('coded',
	'[{"id": 1, "ver": 1, "code": "x"}, {"id": 2, "ver": 1, "code": "x"}]');
ROLLBACK;
BEGIN;
SELECT outcome FROM versioned_upsert('coded', '{"id": 1, "ver": 1, "code": "x"}');
SELECT outcome FROM versioned_upsert('coded', '{"id": 2, "ver": 1, "code": "x"}');
ROLLBACK;
SELECT outcome FROM versioned_upsert_batch('coded',
	'[{"id": 1, "ver": 1, "code": "x"}, {"id": 2, "ver": 1, "code": "y"}]');
SELECT id, code FROM coded ORDER BY id;
DROP TABLE coded;
DROP DOMAIN free_code;
DROP FUNCTION code_free(text);

-- Same privileges as the single call.
SET client_min_messages = warning;
DROP ROLE IF EXISTS upsert_batch_reader;
RESET client_min_messages;
CREATE ROLE upsert_batch_reader;
GRANT SELECT ON item TO upsert_batch_reader;
SET ROLE upsert_batch_reader;
SELECT * FROM versioned_upsert_batch('item', '[{"id": 9, "ver": 1}]');
SELECT count(*) FROM versioned_upsert_batch('item', '[]');
RESET ROLE;
-- What every message needs is enough for an empty batch: INSERT on the key
-- and the version, UPDATE on the version, SELECT on the row.
GRANT INSERT (id, ver), UPDATE (ver) ON item TO upsert_batch_reader;
SET ROLE upsert_batch_reader;
SELECT count(*) FROM versioned_upsert_batch('item', '[]');
RESET ROLE;
REVOKE UPDATE (ver) ON item FROM upsert_batch_reader;
SET ROLE upsert_batch_reader;
SELECT count(*) FROM versioned_upsert_batch('item', '[]');
RESET ROLE;
DROP OWNED BY upsert_batch_reader;
DROP ROLE upsert_batch_reader;

-- A large batch: one result and one event per element.
SELECT count(*) AS results, count(*) FILTER (WHERE applied) AS applied
FROM versioned_upsert_batch('item',
	(SELECT jsonb_agg(jsonb_build_object('id', 1000 + i % 500, 'ver', i, 'qty', i))
	 FROM generate_series(1, 2000) i));
SELECT count(*) AS rows, min(ver)::bigint AS min_ver, max(qty) AS max_qty
FROM item WHERE id >= 1000;

-- What a batch keeps open from row to row (the event log's tables, the
-- direct path's state) is closed when it ends, normally or by an error.
CREATE TABLE full_row (id int PRIMARY KEY, ver rowseq NOT NULL, v text);
INSERT INTO full_row VALUES (1, '1', 'a'), (2, '1', 'b');
-- An error caught by a savepoint, then more batches in the same
-- transaction: nothing leaks (a leak would show as a WARNING).
BEGIN;
SAVEPOINT s;
SELECT * FROM versioned_upsert_batch('full_row', '[{"id": 1, "ver": 2, "v": "x"}, {"id": 2, "ver": "bad", "v": "y"}]');
ROLLBACK TO SAVEPOINT s;
SELECT outcome FROM versioned_upsert_batch('full_row', '[{"id": 1, "ver": 3, "v": "c"}, {"id": 2, "ver": 1, "v": "b"}]');
COMMIT;
SELECT id, ver, v FROM full_row ORDER BY id;
-- Nothing stays open after the batch: the extension can be dropped in the
-- same transaction.
BEGIN;
SELECT count(*) FROM versioned_upsert_batch('full_row', '[{"id": 1, "ver": 4, "v": "d"}]');
SET client_min_messages = warning;
DROP EXTENSION upsert_order CASCADE;
RESET client_min_messages;
ROLLBACK;
SELECT id, ver, v FROM full_row ORDER BY id;

-- A trigger on event_log (added by its owner) that logs messages of its own
-- while the batch's insert into event_log is running: each gets its row.
-- It runs with pg_catalog alone on the search_path, so it names the schema.
CREATE TABLE audit_copy (id bigint PRIMARY KEY, ver rowseq NOT NULL);
CREATE FUNCTION log_copy() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.target = 'batch.full_row'::regclass THEN
		PERFORM upsert_order.versioned_upsert('batch.audit_copy',
								 jsonb_build_object('id', NEW.event_id, 'ver', 1));
	END IF;
	RETURN NULL;
END $$;
CREATE TRIGGER log_copy AFTER INSERT ON event_log FOR EACH ROW EXECUTE FUNCTION log_copy();
SELECT count(*) AS events_before FROM event_log \gset
SELECT outcome FROM versioned_upsert_batch('full_row', '[
	{"id": 1, "ver": 5, "v": "e"}, {"id": 1, "ver": 5, "v": "e"}, {"id": 3, "ver": 1, "v": "f"}]');
SELECT count(*) - :events_before AS new_events,
	   (SELECT count(*) FROM audit_copy) AS copies
FROM event_log;
SELECT e.outcome, a.ver::bigint AS copy_ver
FROM event_log e JOIN audit_copy a ON a.id = e.event_id ORDER BY e.event_id;
DROP TRIGGER log_copy ON event_log;

-- A trigger on event_log that runs a command (its third argument) once the
-- batch has logged a version (the second) of a table (the first): the ways
-- a table can change between two rows.
CREATE FUNCTION run_at_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.target = TG_ARGV[0]::regclass AND NEW.version::bigint = TG_ARGV[1]::bigint THEN
		EXECUTE TG_ARGV[2];
	END IF;
	RETURN NULL;
END $$;

-- The table cannot be altered while a batch on it runs, as for any
-- statement using it.
CREATE TRIGGER alter_target AFTER INSERT ON event_log FOR EACH ROW
	EXECUTE FUNCTION run_at_version('batch.full_row', 6, 'ALTER TABLE batch.full_row ADD COLUMN w int');
SELECT outcome FROM versioned_upsert_batch('full_row', '[
	{"id": 1, "ver": 6, "v": "g"}, {"id": 1, "ver": 7, "v": "h"}]');
DROP TRIGGER alter_target ON event_log;
SELECT id, ver, v FROM full_row ORDER BY id;

-- Privileges revoked between two rows: the next row is checked against them.
SET client_min_messages = warning;
DROP ROLE IF EXISTS upsert_batch_writer;
RESET client_min_messages;
CREATE ROLE upsert_batch_writer;
GRANT SELECT, INSERT, UPDATE ON full_row TO upsert_batch_writer;
CREATE TRIGGER revoke_update AFTER INSERT ON event_log FOR EACH ROW
	EXECUTE FUNCTION run_at_version('batch.full_row', 6, 'REVOKE UPDATE ON batch.full_row FROM upsert_batch_writer');
SET ROLE upsert_batch_writer;
\set SHOW_CONTEXT errors
SELECT outcome FROM versioned_upsert_batch('full_row', '[
	{"id": 1, "ver": 6, "v": "g"}, {"id": 1, "ver": 7, "v": "h"}]');
\set SHOW_CONTEXT never
RESET ROLE;
DROP TRIGGER revoke_update ON event_log;
SELECT id, ver, v FROM full_row ORDER BY id;
SELECT has_table_privilege('upsert_batch_writer', 'full_row', 'UPDATE') AS can_update;
-- Granted between two rows instead: the batch goes on with the table's new
-- description.
CREATE TRIGGER grant_select AFTER INSERT ON event_log FOR EACH ROW
	EXECUTE FUNCTION run_at_version('batch.full_row', 6, 'GRANT SELECT ON batch.full_row TO PUBLIC');
SET ROLE upsert_batch_writer;
SELECT outcome FROM versioned_upsert_batch('full_row', '[
	{"id": 1, "ver": 6, "v": "g"}, {"id": 1, "ver": 7, "v": "h"}, {"id": 2, "ver": 7, "v": "i"}]');
RESET ROLE;
DROP TRIGGER grant_select ON event_log;
SELECT id, ver, v FROM full_row ORDER BY id;
SELECT has_table_privilege('public', 'full_row', 'SELECT') AS public_can_select;
-- A function the table's CHECK constraints call, replaced between two rows
-- (here the inlined SQL function that says which values are allowed), or
-- its EXECUTE privilege revoked: the next row is checked with the function
-- and privilege as they are, as a call of its own would be.
CREATE FUNCTION value_allowed(v text) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$ SELECT true $$;
CREATE FUNCTION value_checked(v text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN RETURN true; END $$;
CREATE TABLE checked_row (id int PRIMARY KEY, ver rowseq NOT NULL, v text,
	CONSTRAINT allowed CHECK (value_allowed(v)), CONSTRAINT checked CHECK (value_checked(v)));
CREATE TRIGGER replace_function AFTER INSERT ON event_log FOR EACH ROW
	EXECUTE FUNCTION run_at_version('batch.checked_row', 2, 'CREATE OR REPLACE FUNCTION batch.value_allowed(v text)
		RETURNS boolean LANGUAGE sql IMMUTABLE AS $f$ SELECT v <> ''bad'' $f$');
SELECT outcome FROM versioned_upsert_batch('checked_row', '[
	{"id": 1, "ver": 2, "v": "bad"}, {"id": 2, "ver": 3, "v": "bad"}]');
DROP TRIGGER replace_function ON event_log;
SELECT count(*) AS stored FROM checked_row;
CREATE OR REPLACE FUNCTION value_allowed(v text) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$ SELECT true $$;
GRANT INSERT, UPDATE, SELECT ON checked_row TO upsert_batch_writer;
CREATE TRIGGER revoke_execute AFTER INSERT ON event_log FOR EACH ROW
	EXECUTE FUNCTION run_at_version('batch.checked_row', 2, 'REVOKE EXECUTE ON FUNCTION batch.value_checked(text) FROM PUBLIC');
SET ROLE upsert_batch_writer;
SELECT outcome FROM versioned_upsert_batch('checked_row', '[
	{"id": 1, "ver": 2, "v": "a"}, {"id": 2, "ver": 3, "v": "b"}]');
RESET ROLE;
DROP TRIGGER revoke_execute ON event_log;
SELECT count(*) AS stored FROM checked_row;
DROP TABLE checked_row;
DROP FUNCTION value_allowed(text), value_checked(text);

DROP OWNED BY upsert_batch_writer;
DROP ROLE upsert_batch_writer;

-- A function in a constraint of event_log (added by its owner) that logs
-- messages of its own while the batch's insert into event_log runs, one of
-- them through a nested batch that fails inside an exception block: every
-- insert gets its own row, none disturbs the one running.
CREATE FUNCTION log_from_check(t regclass, v rowseq) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	IF t = 'batch.full_row'::regclass AND v::bigint = 8 THEN
		BEGIN
			PERFORM upsert_order.versioned_upsert_batch('batch.audit_copy',
				jsonb_build_array(jsonb_build_object('id', 100, 'ver', 'bad')));
		EXCEPTION WHEN invalid_text_representation THEN
			NULL;
		END;
		PERFORM upsert_order.versioned_upsert('batch.audit_copy', '{"id": 101, "ver": 1}');
	END IF;
	RETURN true;
END $$;
ALTER TABLE event_log ADD CONSTRAINT log_from_check CHECK (batch.log_from_check(target, version));
SELECT outcome FROM versioned_upsert_batch('full_row', '[
	{"id": 1, "ver": 8, "v": "j"}, {"id": 2, "ver": 8, "v": "k"}, {"id": 1, "ver": 9, "v": "l"}]');
ALTER TABLE event_log DROP CONSTRAINT log_from_check;
SELECT id, ver, v FROM full_row ORDER BY id;
SELECT key, version, outcome FROM event_log
 WHERE target IN ('full_row'::regclass, 'audit_copy'::regclass) AND version::bigint >= 8
    OR key = '{"id": 101}' ORDER BY event_id;

-- Many elements drawn at random (a fixed seed; ids colliding, versions
-- older, equal and newer, nulls, columns left out): one batch gives the
-- results, rows and events of the same messages sent one by one, on a plain
-- table (the direct path) as on one a trigger keeps on the statement.
CREATE TABLE rnd (id int PRIMARY KEY, ver rowseq NOT NULL, a int, b text);
CREATE TABLE rnd_one (LIKE rnd INCLUDING ALL);
CREATE TABLE rnd_trig (LIKE rnd INCLUDING ALL);
CREATE TABLE rnd_trig_one (LIKE rnd INCLUDING ALL);
CREATE FUNCTION nothing() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE TRIGGER keep_on_statement AFTER UPDATE ON rnd_trig FOR EACH STATEMENT EXECUTE FUNCTION nothing();
CREATE TRIGGER keep_on_statement AFTER UPDATE ON rnd_trig_one FOR EACH STATEMENT EXECUTE FUNCTION nothing();
SELECT setseed(0.75);
CREATE TEMP TABLE rnd_msg AS
SELECT n, (SELECT jsonb_object_agg(k, v) FROM jsonb_each(m) e(k, v)
		    WHERE k IN ('id', 'ver') OR random() < 0.85) AS msg
FROM (SELECT n, jsonb_build_object(
		'id', 1 + floor(random() * 10)::int,
		'ver', greatest(1, n / 5 + floor(random() * 8)::int - 4),
		'a', CASE WHEN random() < 0.2 THEN NULL ELSE floor(random() * 100)::int END,
		'b', 'b' || floor(random() * 1000)::int) AS m
	  FROM generate_series(1, 300) n) s;
CREATE FUNCTION same_as_one_by_one(batched regclass, one regclass) RETURNS TABLE (
	elements bigint, same_results bigint, stale bigint, duplicates bigint, updated bigint,
	inserted bigint, rows_differing bigint, events_differing bigint)
LANGUAGE plpgsql AS $$
BEGIN
	CREATE TEMP TABLE by_batch AS
	SELECT row_number() OVER () AS n, r.*
	FROM upsert_order.versioned_upsert_batch(batched,
		(SELECT jsonb_agg(msg ORDER BY n) FROM rnd_msg)) r;
	CREATE TEMP TABLE by_call AS
	SELECT m.n, r.* FROM rnd_msg m, LATERAL upsert_order.versioned_upsert(one, m.msg) r ORDER BY m.n;
	RETURN QUERY
	SELECT count(*),
		   count(*) FILTER (WHERE (b.applied, b.outcome, b.version, b.stored_version)
							IS NOT DISTINCT FROM (c.applied, c.outcome, c.version, c.stored_version)),
		   count(*) FILTER (WHERE b.outcome = 'stale'),
		   count(*) FILTER (WHERE b.outcome = 'duplicate'),
		   count(*) FILTER (WHERE b.outcome = 'updated'),
		   count(*) FILTER (WHERE b.outcome = 'inserted'),
		   (SELECT count(*) FROM
			 ((SELECT id, ver, a, b FROM rnd_rows(batched) EXCEPT ALL SELECT id, ver, a, b FROM rnd_rows(one)) UNION ALL
			  (SELECT id, ver, a, b FROM rnd_rows(one) EXCEPT ALL SELECT id, ver, a, b FROM rnd_rows(batched))) d),
		   (SELECT count(*) FROM
			 (SELECT row_number() OVER (ORDER BY event_id) AS i, key, version, outcome, payload, data
				FROM upsert_order.event_log WHERE target = batched) p
			 FULL JOIN
			 (SELECT row_number() OVER (ORDER BY event_id) AS i, key, version, outcome, payload, data
				FROM upsert_order.event_log WHERE target = one) q USING (i)
			 WHERE (p.key, p.version, p.outcome, p.payload, p.data::text)
				   IS DISTINCT FROM (q.key, q.version, q.outcome, q.payload, q.data::text))
	FROM by_batch b FULL JOIN by_call c USING (n);
	DROP TABLE by_batch, by_call;
END $$;
CREATE FUNCTION rnd_rows(tbl regclass) RETURNS SETOF rnd LANGUAGE plpgsql AS $$
BEGIN
	RETURN QUERY EXECUTE format('SELECT id, ver, a, b FROM %s', tbl);
END $$;
SELECT * FROM same_as_one_by_one('rnd', 'rnd_one');
SELECT * FROM same_as_one_by_one('rnd_trig', 'rnd_trig_one');
DROP FUNCTION same_as_one_by_one(regclass, regclass), rnd_rows(regclass);
DROP TABLE rnd, rnd_one, rnd_trig, rnd_trig_one, rnd_msg;
DROP FUNCTION nothing();
