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
DROP ROLE IF EXISTS upsert_direct_nobody;
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

-- A table published for updates without a replica identity refuses the
-- statement, an insert too, at its start; the direct path refuses the same.
ALTER TABLE plain REPLICA IDENTITY NOTHING;
ALTER TABLE twin REPLICA IDENTITY NOTHING;
SET client_min_messages = error;	-- no warning about wal_level
CREATE PUBLICATION direct_path_pub FOR TABLE plain, twin WITH (publish = 'update');
RESET client_min_messages;
SELECT versioned_upsert('plain', '{"id": 3, "ver": 1, "name": "r", "code": "R", "qty": 1, "price": 1}');
SELECT versioned_upsert('twin', '{"id": 3, "ver": 1, "name": "r", "code": "R", "qty": 1, "price": 1}');
SELECT versioned_upsert('plain', '{"id": 2, "ver": 4, "name": "r", "code": "R", "qty": 1, "price": 1}');
SELECT versioned_upsert('twin', '{"id": 2, "ver": 4, "name": "r", "code": "R", "qty": 1, "price": 1}');
DROP PUBLICATION direct_path_pub;
ALTER TABLE plain REPLICA IDENTITY DEFAULT;
ALTER TABLE twin REPLICA IDENTITY DEFAULT;

-- Same rows, same events.
SELECT p.*, (p.*)::text = (t.*)::text AS same_as_twin FROM plain p JOIN twin t USING (id) ORDER BY id;
SELECT p.key, p.version, p.outcome, p.data, p.data::text = t.data::text AS same_data, p.payload = t.payload AS same_payload
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
-- New keys too, inserted and then met again in the same batch, on both
-- paths alike.
\set new_keys '[{"id": 10, "ver": 1, "name": "a", "code": "c10", "qty": 1, "price": 1}, {"id": 10, "ver": 1, "name": "a", "code": "c10", "qty": 1, "price": 1}, {"id": 11, "ver": 2, "name": "b", "code": "c11", "qty": 1, "price": 1}, {"id": 10, "ver": 3, "name": "c", "code": "c10", "qty": 2, "price": 1}, {"id": 11, "ver": 1, "name": "d", "code": "c11", "qty": 3, "price": 1}]'
SELECT p.outcome AS direct, t.outcome AS statement, p.stored_version = t.stored_version AS same_version
FROM versioned_upsert_batch('plain', :'new_keys') WITH ORDINALITY p
JOIN versioned_upsert_batch('twin', :'new_keys') WITH ORDINALITY t USING (ordinality)
ORDER BY ordinality;
SELECT p.*, (p.*)::text = (t.*)::text AS same_as_twin FROM plain p JOIN twin t USING (id) WHERE id >= 10 ORDER BY id;
-- A new key whose row breaks another unique constraint: the same error.
SELECT versioned_upsert('plain', '{"id": 12, "ver": 1, "name": "e", "code": "c10", "qty": 1, "price": 1}');
SELECT versioned_upsert('twin', '{"id": 12, "ver": 1, "name": "e", "code": "c10", "qty": 1, "price": 1}');

-- Another unique index over the key's columns, whose operator class takes
-- other keys for equal (here -5 and 5), is an arbiter of the statement's
-- ON CONFLICT too: a message keyed -5 meets the row keyed 5 there.  Such a
-- table stays on the statement, whose outcomes the twin shows.
CREATE FUNCTION abs_cmp(int, int) RETURNS int LANGUAGE sql IMMUTABLE STRICT
	AS 'SELECT btint4cmp(abs($1), abs($2))';
CREATE FUNCTION abs_lt(int, int) RETURNS bool LANGUAGE sql IMMUTABLE STRICT AS 'SELECT abs($1) < abs($2)';
CREATE FUNCTION abs_le(int, int) RETURNS bool LANGUAGE sql IMMUTABLE STRICT AS 'SELECT abs($1) <= abs($2)';
CREATE FUNCTION abs_eq(int, int) RETURNS bool LANGUAGE sql IMMUTABLE STRICT AS 'SELECT abs($1) = abs($2)';
CREATE FUNCTION abs_ge(int, int) RETURNS bool LANGUAGE sql IMMUTABLE STRICT AS 'SELECT abs($1) >= abs($2)';
CREATE FUNCTION abs_gt(int, int) RETURNS bool LANGUAGE sql IMMUTABLE STRICT AS 'SELECT abs($1) > abs($2)';
CREATE OPERATOR |<| (LEFTARG = int, RIGHTARG = int, FUNCTION = abs_lt);
CREATE OPERATOR |<=| (LEFTARG = int, RIGHTARG = int, FUNCTION = abs_le);
CREATE OPERATOR |=| (LEFTARG = int, RIGHTARG = int, FUNCTION = abs_eq);
CREATE OPERATOR |>=| (LEFTARG = int, RIGHTARG = int, FUNCTION = abs_ge);
CREATE OPERATOR |>| (LEFTARG = int, RIGHTARG = int, FUNCTION = abs_gt);
CREATE OPERATOR CLASS abs_int_ops FOR TYPE int USING btree AS
	OPERATOR 1 |<|, OPERATOR 2 |<=|, OPERATOR 3 |=|, OPERATOR 4 |>=|, OPERATOR 5 |>|,
	FUNCTION 1 abs_cmp(int, int);
CREATE TABLE by_abs (id int PRIMARY KEY, ver rowseq, n int);
CREATE UNIQUE INDEX by_abs_id ON by_abs (id abs_int_ops);
CREATE TABLE by_abs_twin (LIKE by_abs INCLUDING ALL);
CREATE TRIGGER keep_on_statement AFTER UPDATE ON by_abs_twin FOR EACH STATEMENT EXECUTE FUNCTION nothing();
\set by_abs 'SELECT p.outcome AS plain, t.outcome AS twin, p.stored_version, p.stored_version = t.stored_version AS same_version FROM versioned_upsert(''by_abs'', :''msg'') p, versioned_upsert(''by_abs_twin'', :''msg'') t'
\set msg '{"id": 5, "ver": 1, "n": 1}'
:by_abs;
\set msg '{"id": -5, "ver": 2, "n": 2}'
:by_abs;
\set msg '{"id": -5, "ver": 1, "n": 3}'
:by_abs;
\set msg '{"id": -5, "ver": 2, "n": 4}'
:by_abs;
SELECT p.*, (p.*)::text = (t.*)::text AS same_as_twin FROM by_abs p JOIN by_abs_twin t USING (id);
SELECT key, outcome FROM event_log WHERE target = 'by_abs'::regclass ORDER BY event_id;
-- An index that compares as the key does changes nothing.
DROP INDEX by_abs_id;
CREATE UNIQUE INDEX by_abs_id ON by_abs (id int4_ops);
SELECT outcome, stored_version FROM versioned_upsert('by_abs', '{"id": -5, "ver": 3, "n": 5}');
SELECT * FROM by_abs ORDER BY id;
-- A deferrable one is an arbiter that the statement refuses when it gets to
-- it, that is for a new key (the primary key finds a stored one first); so
-- does the call.
ALTER TABLE by_abs ADD CONSTRAINT by_abs_id_later UNIQUE (id) DEFERRABLE;
SELECT outcome, stored_version FROM versioned_upsert('by_abs', '{"id": -5, "ver": 4, "n": 6}');
SELECT outcome, stored_version FROM versioned_upsert('by_abs', '{"id": 6, "ver": 1, "n": 6}');
ALTER TABLE by_abs DROP CONSTRAINT by_abs_id_later;
SELECT outcome, stored_version FROM versioned_upsert('by_abs', '{"id": 6, "ver": 1, "n": 6}');
SELECT * FROM by_abs ORDER BY id;
DROP TABLE by_abs, by_abs_twin;
DROP OPERATOR CLASS abs_int_ops USING btree;
DROP OPERATOR |<| (int, int), |<=| (int, int), |=| (int, int), |>=| (int, int), |>| (int, int);
DROP FUNCTION abs_cmp(int, int), abs_lt(int, int), abs_le(int, int), abs_eq(int, int), abs_ge(int, int), abs_gt(int, int);

-- Identity columns: GENERATED ALWAYS refuses a value, as the statement
-- does; BY DEFAULT takes the message's value.
CREATE TABLE ident_always (id int PRIMARY KEY, ver rowseq, n int GENERATED ALWAYS AS IDENTITY);
CREATE TABLE ident_default (id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, ver rowseq, n int);
SELECT outcome FROM versioned_upsert('ident_always', '{"id": 1, "ver": 1}');
SELECT versioned_upsert('ident_always', '{"id": 1, "ver": 2, "n": 5}');
SELECT versioned_upsert('ident_always', '{"id": 2, "ver": 1, "n": 5}');
SELECT * FROM ident_always ORDER BY id;
SELECT outcome FROM versioned_upsert('ident_default', '{"id": 7, "ver": 1, "n": 1}');
SELECT outcome FROM versioned_upsert('ident_default', '{"id": 7, "ver": 2, "n": 2}');
SELECT * FROM ident_default ORDER BY id;

DROP OWNED BY upsert_direct_writer;
DROP ROLE upsert_direct_writer;

-- What the calling command wrote a moment ago is seen, as by the statement:
-- a row it inserted is updated, a row it deleted is inserted again.
WITH i AS (INSERT INTO plain VALUES (30, '1', 'cte', 'c30', 1, 1) RETURNING id)
SELECT r.outcome, r.stored_version FROM i, versioned_upsert('plain',
	jsonb_build_object('id', id, 'ver', 2, 'name', 'm', 'code', 'c30', 'qty', 1, 'price', 1)) r;
WITH i AS (INSERT INTO twin VALUES (30, '1', 'cte', 'c30', 1, 1) RETURNING id)
SELECT r.outcome, r.stored_version FROM i, versioned_upsert('twin',
	jsonb_build_object('id', id, 'ver', 2, 'name', 'm', 'code', 'c30', 'qty', 1, 'price', 1)) r;
WITH d AS (DELETE FROM plain WHERE id = 30 RETURNING id)
SELECT r.outcome, r.stored_version FROM d, versioned_upsert('plain',
	jsonb_build_object('id', id, 'ver', 1, 'name', 'n', 'code', 'c30', 'qty', 1, 'price', 1)) r;
WITH d AS (DELETE FROM twin WHERE id = 30 RETURNING id)
SELECT r.outcome, r.stored_version FROM d, versioned_upsert('twin',
	jsonb_build_object('id', id, 'ver', 1, 'name', 'n', 'code', 'c30', 'qty', 1, 'price', 1)) r;
SELECT p.*, (p.*)::text = (t.*)::text AS same_as_twin FROM plain p JOIN twin t USING (id) WHERE id = 30;

-- Stable functions called by CHECK constraints see what they would see under
-- the statement: its snapshot, with the rows written by earlier calls.
CREATE FUNCTION rows_seen(tbl text, id int) RETURNS boolean STABLE LANGUAGE plpgsql AS $$
DECLARE
	n bigint;
BEGIN
	EXECUTE format('SELECT count(*) FROM direct_path.%I', tbl) INTO n;
	RAISE NOTICE '% %: % rows seen', tbl, id, n;
	RETURN true;
END $$;
CREATE TABLE checked (id int PRIMARY KEY, ver rowseq, CHECK (rows_seen('checked', id)));
CREATE TABLE checked_twin (id int PRIMARY KEY, ver rowseq, CHECK (rows_seen('checked_twin', id)));
CREATE TRIGGER keep_on_statement AFTER UPDATE ON checked_twin FOR EACH STATEMENT EXECUTE FUNCTION nothing();
SELECT t, i, r.outcome
FROM (VALUES ('checked'), ('checked_twin')) v(t), generate_series(1, 3) i,
	 LATERAL versioned_upsert(t::regclass, jsonb_build_object('id', i, 'ver', 1)) r
ORDER BY t, i;
DROP TABLE checked, checked_twin;
DROP FUNCTION rows_seen(text, int);

-- A call made while the proposed row is checked (here by a CHECK
-- constraint's function) that changes the same row is refused (27000) on
-- both paths, for an older row, an equal version and a new key alike, and
-- nothing is left behind.  (The outer call would fail otherwise, as the
-- statement does, on the row the inner call changed.)
CREATE FUNCTION write_inner(tbl text, id int, ver bigint) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	PERFORM upsert_order.versioned_upsert(format('direct_path.%I', tbl)::regclass,
		jsonb_build_object('id', id, 'ver', ver, 'note', 'inner'));
	RETURN true;
END $$;
CREATE TABLE again (id int PRIMARY KEY, ver rowseq, note text,
	CHECK (note NOT IN ('up', 'down') OR
		   write_inner('again', id, ver::bigint + CASE note WHEN 'up' THEN 1 ELSE -1 END)));
CREATE TABLE again_twin (id int PRIMARY KEY, ver rowseq, note text,
	CHECK (note NOT IN ('up', 'down') OR
		   write_inner('again_twin', id, ver::bigint + CASE note WHEN 'up' THEN 1 ELSE -1 END)));
CREATE TRIGGER keep_on_statement AFTER UPDATE ON again_twin FOR EACH STATEMENT EXECUTE FUNCTION nothing();
INSERT INTO again VALUES (1, '1', 'x');
INSERT INTO again_twin VALUES (1, '1', 'x');
SELECT versioned_upsert('again', '{"id": 1, "ver": 5, "note": "down"}');
SELECT versioned_upsert('again_twin', '{"id": 1, "ver": 5, "note": "down"}');
SELECT versioned_upsert('again', '{"id": 1, "ver": 1, "note": "up"}');
SELECT versioned_upsert('again_twin', '{"id": 1, "ver": 1, "note": "up"}');
SELECT versioned_upsert('again', '{"id": 2, "ver": 5, "note": "down"}');
SELECT versioned_upsert('again_twin', '{"id": 2, "ver": 5, "note": "down"}');
SELECT 'again' AS t, * FROM again UNION ALL SELECT 'again_twin', * FROM again_twin ORDER BY t, id;
SELECT count(*) AS events FROM event_log WHERE target IN ('again'::regclass, 'again_twin'::regclass);
DROP TABLE again, again_twin;
DROP FUNCTION write_inner(text, int, bigint);

-- The same with a stale message (the inner call is refused whatever the
-- outer message's version), and with a function that deletes the row: the
-- outer call looks for the row after its CHECK constraints ran, and sees
-- what they did, as the statement does, and inserts where they deleted.
CREATE FUNCTION change_inner(tbl text, id int, ver bigint, note text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	IF note = 'bump' THEN
		PERFORM upsert_order.versioned_upsert(format('direct_path.%I', tbl)::regclass,
			jsonb_build_object('id', id, 'ver', ver + 100, 'note', 'inner'));
	ELSIF note = 'delete' THEN
		EXECUTE format('DELETE FROM direct_path.%I WHERE id = $1', tbl) USING id;
	END IF;
	RETURN true;
END $$;
CREATE TABLE changed (id int PRIMARY KEY, ver rowseq, note text,
	CHECK (change_inner('changed', id, ver::bigint, note)));
CREATE TABLE changed_twin (id int PRIMARY KEY, ver rowseq, note text,
	CHECK (change_inner('changed_twin', id, ver::bigint, note)));
CREATE TRIGGER keep_on_statement AFTER UPDATE ON changed_twin FOR EACH STATEMENT EXECUTE FUNCTION nothing();
INSERT INTO changed VALUES (1, '10', 'x'), (2, '10', 'x'), (3, '10', 'x');
INSERT INTO changed_twin VALUES (1, '10', 'x'), (2, '10', 'x'), (3, '10', 'x');
SELECT outcome, stored_version FROM versioned_upsert('changed', '{"id": 1, "ver": 5, "note": "bump"}');
SELECT outcome, stored_version FROM versioned_upsert('changed_twin', '{"id": 1, "ver": 5, "note": "bump"}');
SELECT outcome, stored_version FROM versioned_upsert('changed', '{"id": 2, "ver": 5, "note": "delete"}');
SELECT outcome, stored_version FROM versioned_upsert('changed_twin', '{"id": 2, "ver": 5, "note": "delete"}');
SELECT outcome, stored_version FROM versioned_upsert('changed', '{"id": 3, "ver": 50, "note": "delete"}');
SELECT outcome, stored_version FROM versioned_upsert('changed_twin', '{"id": 3, "ver": 50, "note": "delete"}');
SELECT 'changed' AS t, * FROM changed UNION ALL SELECT 'changed_twin', * FROM changed_twin ORDER BY t, id;
SELECT target, key, version, outcome FROM event_log
 WHERE target IN ('changed'::regclass, 'changed_twin'::regclass) ORDER BY target::text, event_id;
DROP TABLE changed, changed_twin;
DROP FUNCTION change_inner(text, int, bigint, text);

-- The row an update writes (with the stored key) is checked against the
-- constraints as UPDATE checks it, after the proposed row was: a constraint
-- added NOT VALID can refuse the stored key, and a constraint's function
-- runs twice for an update, once for an insert.
CREATE FUNCTION noisy(tbl text, id numeric) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	RAISE NOTICE 'checking % %', tbl, id;
	RETURN true;
END $$;
CREATE TABLE rechecked (id numeric PRIMARY KEY, ver rowseq, v text, CHECK (noisy('rechecked', id)));
CREATE TABLE rechecked_twin (id numeric PRIMARY KEY, ver rowseq, v text, CHECK (noisy('rechecked_twin', id)));
CREATE TRIGGER keep_on_statement AFTER UPDATE ON rechecked_twin FOR EACH STATEMENT EXECUTE FUNCTION nothing();
SELECT outcome FROM versioned_upsert('rechecked', '{"id": "1.00", "ver": 1, "v": "a"}');
SELECT outcome FROM versioned_upsert('rechecked_twin', '{"id": "1.00", "ver": 1, "v": "a"}');
SELECT outcome FROM versioned_upsert('rechecked', '{"id": 1.0, "ver": 2, "v": "b"}');
SELECT outcome FROM versioned_upsert('rechecked_twin', '{"id": 1.0, "ver": 2, "v": "b"}');
ALTER TABLE rechecked ADD CONSTRAINT short_scale CHECK (scale(id) < 2) NOT VALID;
ALTER TABLE rechecked_twin ADD CONSTRAINT short_scale CHECK (scale(id) < 2) NOT VALID;
SELECT outcome FROM versioned_upsert('rechecked', '{"id": 1.0, "ver": 3, "v": "c"}');
SELECT outcome FROM versioned_upsert('rechecked_twin', '{"id": 1.0, "ver": 3, "v": "c"}');
SELECT id, ver, v FROM rechecked UNION ALL SELECT id, ver, v FROM rechecked_twin;
DROP TABLE rechecked, rechecked_twin;
DROP FUNCTION noisy(text, numeric);

-- A function that writes the row while the row an update writes is checked
-- (here it does so only when it sees the stored key's spelling, 1.00): the
-- update refuses to go on, as UPDATE does, and nothing is left behind.
CREATE FUNCTION write_late(tbl text, id numeric, note text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	IF note = 'late' AND scale(id) = 2 THEN
		EXECUTE format('UPDATE direct_path.%I SET note = $2 WHERE id = $1', tbl) USING id, 'touched';
	END IF;
	RETURN true;
END $$;
CREATE TABLE late (id numeric PRIMARY KEY, ver rowseq, note text, CHECK (write_late('late', id, note)));
CREATE TABLE late_twin (id numeric PRIMARY KEY, ver rowseq, note text, CHECK (write_late('late_twin', id, note)));
CREATE TRIGGER keep_on_statement AFTER UPDATE ON late_twin FOR EACH STATEMENT EXECUTE FUNCTION nothing();
INSERT INTO late VALUES (1.00, '1', 'x');
INSERT INTO late_twin VALUES (1.00, '1', 'x');
SELECT outcome FROM versioned_upsert('late', '{"id": 1.0, "ver": 2, "note": "late"}');
SELECT outcome FROM versioned_upsert('late_twin', '{"id": 1.0, "ver": 2, "note": "late"}');
SELECT 'late' AS t, * FROM late UNION ALL SELECT 'late_twin', * FROM late_twin ORDER BY t;
DROP TABLE late, late_twin;
DROP FUNCTION write_late(text, numeric, text);

-- An index expression whose function (marked immutable, wrongly) calls
-- versioned_upsert() on the same key while the call enters its row in the
-- indexes.  The inner call is refused (27000) on both paths, for an update
-- and for a new key, whichever index comes first: an inner update would
-- log its event before the outer call's, above whose version it stored its
-- own, and the log would no longer follow the order of versions; an inner
-- insertion of the key would meet the outer row in the key's index.
CREATE FUNCTION write_same_key(tbl text, id int, v int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$
BEGIN
	IF v = 1 THEN
		RAISE NOTICE 'inner call: %', (SELECT outcome FROM upsert_order.versioned_upsert(
			format('direct_path.%I', tbl)::regclass, jsonb_build_object('id', id, 'ver', 50, 'v', 2)));
	END IF;
	RETURN id;
END $$;
CREATE TABLE key_first (id int PRIMARY KEY, ver rowseq NOT NULL, v int);
CREATE INDEX ON key_first (write_same_key('key_first', id, v));
CREATE TABLE key_first_twin (id int PRIMARY KEY, ver rowseq NOT NULL, v int);
CREATE INDEX ON key_first_twin (write_same_key('key_first_twin', id, v));
CREATE TRIGGER keep_on_statement AFTER UPDATE ON key_first_twin FOR EACH STATEMENT EXECUTE FUNCTION nothing();
CREATE TABLE expr_first (id int NOT NULL, ver rowseq NOT NULL, v int);
CREATE INDEX ON expr_first (write_same_key('expr_first', id, v));
ALTER TABLE expr_first ADD PRIMARY KEY (id);
CREATE TABLE expr_first_twin (id int NOT NULL, ver rowseq NOT NULL, v int);
CREATE INDEX ON expr_first_twin (write_same_key('expr_first_twin', id, v));
ALTER TABLE expr_first_twin ADD PRIMARY KEY (id);
CREATE TRIGGER keep_on_statement AFTER UPDATE ON expr_first_twin FOR EACH STATEMENT EXECUTE FUNCTION nothing();
INSERT INTO key_first VALUES (2, '10', 0);
INSERT INTO key_first_twin VALUES (2, '10', 0);
INSERT INTO expr_first VALUES (2, '10', 0);
INSERT INTO expr_first_twin VALUES (2, '10', 0);
SELECT outcome FROM versioned_upsert('key_first', '{"id": 1, "ver": 10, "v": 1}');
SELECT outcome FROM versioned_upsert('key_first_twin', '{"id": 1, "ver": 10, "v": 1}');
SELECT outcome FROM versioned_upsert('key_first', '{"id": 2, "ver": 20, "v": 1}');
SELECT outcome FROM versioned_upsert('key_first_twin', '{"id": 2, "ver": 20, "v": 1}');
SELECT outcome FROM versioned_upsert('expr_first', '{"id": 1, "ver": 10, "v": 1}');
SELECT outcome FROM versioned_upsert('expr_first_twin', '{"id": 1, "ver": 10, "v": 1}');
SELECT outcome FROM versioned_upsert('expr_first', '{"id": 2, "ver": 20, "v": 1}');
SELECT outcome FROM versioned_upsert('expr_first_twin', '{"id": 2, "ver": 20, "v": 1}');
SELECT 'key_first' AS t, * FROM key_first UNION ALL SELECT 'key_first_twin', * FROM key_first_twin
UNION ALL SELECT 'expr_first', * FROM expr_first UNION ALL SELECT 'expr_first_twin', * FROM expr_first_twin
ORDER BY t, id;
SELECT target, key, version, outcome, data FROM event_log
 WHERE target IN ('key_first'::regclass, 'key_first_twin'::regclass,
				  'expr_first'::regclass, 'expr_first_twin'::regclass)
 ORDER BY target::text, event_id;
DROP TABLE key_first, key_first_twin, expr_first, expr_first_twin;
DROP FUNCTION write_same_key(text, int, int);
-- The same with the inner call on the statement path, and in a batch.  An
-- inner call on another key, or one that changes nothing, goes on: the log
-- still follows the order of versions for every key.
CREATE FUNCTION call_inner(tbl text, v int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$
DECLARE
	message text := current_setting('direct_path.inner_message', true);
	target text := coalesce(nullif(current_setting('direct_path.inner_target', true), ''), tbl);
BEGIN
	IF message <> '' THEN
		PERFORM set_config('direct_path.inner_message', '', false);
		RAISE NOTICE 'inner call: %', (SELECT outcome FROM upsert_order.versioned_upsert(
			format('direct_path.%I', target)::regclass, message::jsonb));
	END IF;
	RETURN v;
END $$;
CREATE TABLE inner_called (id int PRIMARY KEY, ver rowseq NOT NULL, v int);
CREATE INDEX ON inner_called (call_inner('inner_called', v));
INSERT INTO inner_called VALUES (1, '10', 0), (2, '10', 0);
SET direct_path.inner_message = '{"id": 1, "ver": 50}';
SELECT outcome FROM versioned_upsert('inner_called', '{"id": 1, "ver": 20, "v": 1}');
SET direct_path.inner_message = '{"id": 2, "ver": 50}';
SELECT outcome FROM versioned_upsert('inner_called', '{"id": 1, "ver": 20, "v": 1}');
SET direct_path.inner_message = '{"id": 1, "ver": 5}';
SELECT outcome FROM versioned_upsert('inner_called', '{"id": 1, "ver": 30, "v": 2}');
SET direct_path.inner_message = '{"id": 2, "ver": 60}';
SELECT outcome FROM versioned_upsert_batch('inner_called', '[{"id": 1, "ver": 1, "v": 9}, {"id": 2, "ver": 55, "v": 3}]');
RESET direct_path.inner_message;
SELECT * FROM inner_called ORDER BY id;
SELECT key, version, outcome FROM event_log WHERE target = 'inner_called'::regclass ORDER BY event_id;
DROP TABLE inner_called;
-- The same row is the same key as the primary key compares it: here a
-- type whose default operator class takes -1 and 1 for equal.  On both
-- paths.
SET client_min_messages = warning;
CREATE TYPE absint;
CREATE FUNCTION absint_in(cstring) RETURNS absint LANGUAGE internal IMMUTABLE STRICT AS 'int4in';
CREATE FUNCTION absint_out(absint) RETURNS cstring LANGUAGE internal IMMUTABLE STRICT AS 'int4out';
RESET client_min_messages;
CREATE TYPE absint (INPUT = absint_in, OUTPUT = absint_out, LIKE = int4);
CREATE FUNCTION absint_cmp(absint, absint) RETURNS int LANGUAGE sql IMMUTABLE STRICT
	AS 'SELECT btint4cmp(abs($1::text::int), abs($2::text::int))';
CREATE FUNCTION absint_eq(absint, absint) RETURNS boolean LANGUAGE sql IMMUTABLE STRICT
	AS 'SELECT abs($1::text::int) = abs($2::text::int)';
CREATE FUNCTION absint_lt(absint, absint) RETURNS boolean LANGUAGE sql IMMUTABLE STRICT
	AS 'SELECT abs($1::text::int) < abs($2::text::int)';
CREATE FUNCTION absint_gt(absint, absint) RETURNS boolean LANGUAGE sql IMMUTABLE STRICT
	AS 'SELECT abs($1::text::int) > abs($2::text::int)';
CREATE OPERATOR = (LEFTARG = absint, RIGHTARG = absint, FUNCTION = absint_eq);
CREATE OPERATOR < (LEFTARG = absint, RIGHTARG = absint, FUNCTION = absint_lt);
CREATE OPERATOR > (LEFTARG = absint, RIGHTARG = absint, FUNCTION = absint_gt);
CREATE OPERATOR CLASS absint_ops DEFAULT FOR TYPE absint USING btree AS
	OPERATOR 1 <, OPERATOR 3 =, OPERATOR 5 >, FUNCTION 1 absint_cmp(absint, absint);
CREATE TABLE inner_abs (id absint PRIMARY KEY, ver rowseq NOT NULL, v int);
CREATE INDEX ON inner_abs (call_inner('inner_abs', v));
CREATE TABLE inner_abs_twin (id absint PRIMARY KEY, ver rowseq NOT NULL, v int);
CREATE INDEX ON inner_abs_twin (call_inner('inner_abs_twin', v));
CREATE TRIGGER keep_on_statement AFTER UPDATE ON inner_abs_twin FOR EACH STATEMENT EXECUTE FUNCTION nothing();
INSERT INTO inner_abs VALUES ('1', '10', 0);
INSERT INTO inner_abs_twin VALUES ('1', '10', 0);
SET direct_path.inner_message = '{"id": -1, "ver": 50}';
SELECT outcome FROM versioned_upsert('inner_abs', '{"id": 1, "ver": 20, "v": 1}');
SET direct_path.inner_message = '{"id": -1, "ver": 50}';
SELECT outcome FROM versioned_upsert('inner_abs_twin', '{"id": 1, "ver": 20, "v": 1}');
-- And a partitioned table's row is its partition's: a call on either,
-- nested in a call on the other, is refused.
CREATE TABLE inner_parted (id int PRIMARY KEY, ver rowseq NOT NULL, v int) PARTITION BY RANGE (id);
CREATE TABLE inner_parted_low PARTITION OF inner_parted FOR VALUES FROM (0) TO (100);
CREATE INDEX ON inner_parted (call_inner('inner_parted', v));
RESET direct_path.inner_message;
INSERT INTO inner_parted VALUES (1, '10', 0), (2, '10', 0);
SET direct_path.inner_target = 'inner_parted_low';
SET direct_path.inner_message = '{"id": 1, "ver": 50}';
SELECT outcome FROM versioned_upsert('inner_parted', '{"id": 1, "ver": 20, "v": 1}');
SET direct_path.inner_target = 'inner_parted';
SET direct_path.inner_message = '{"id": 1, "ver": 50}';
SELECT outcome FROM versioned_upsert('inner_parted_low', '{"id": 1, "ver": 20, "v": 1}');
-- (another key of the partition goes on)
SET direct_path.inner_message = '{"id": 2, "ver": 50}';
SELECT outcome FROM versioned_upsert('inner_parted_low', '{"id": 1, "ver": 20, "v": 1}');
RESET direct_path.inner_target;
RESET direct_path.inner_message;
SELECT 'inner_abs' AS t, id::text::int AS id, ver, v FROM inner_abs
UNION ALL SELECT 'inner_abs_twin', id::text::int, ver, v FROM inner_abs_twin
UNION ALL SELECT 'inner_parted', * FROM inner_parted ORDER BY t, id;
SELECT target, key, version, outcome FROM event_log
 WHERE target IN ('inner_abs'::regclass, 'inner_abs_twin'::regclass,
				  'inner_parted'::regclass, 'inner_parted_low'::regclass)
 ORDER BY event_id;
DROP TABLE inner_abs, inner_abs_twin, inner_parted;
DROP FUNCTION call_inner(text, int);
DROP OPERATOR CLASS absint_ops USING btree;
DROP OPERATOR = (absint, absint), < (absint, absint), > (absint, absint);
DROP FUNCTION absint_cmp(absint, absint), absint_eq(absint, absint), absint_lt(absint, absint), absint_gt(absint, absint);
SET client_min_messages = warning;
DROP TYPE absint CASCADE;
RESET client_min_messages;
-- Such a function that only locks the row being inserted (FOR UPDATE): the
-- lock has done what confirming the insertion does, and the call goes on;
-- the row then takes updates as any other.  One that updates that row (by
-- other means than versioned_upsert()) is refused (27000) before the
-- insertion is confirmed.  No twin: PostgreSQL's own ON CONFLICT, and so
-- the statement path, trips an assertion in both cases (and, built without
-- assertions, breaks the link from the updated row to its new version).
CREATE TABLE touched_by_index (id int PRIMARY KEY, ver rowseq NOT NULL, v int);
CREATE FUNCTION lock_row(id int) RETURNS int VOLATILE LANGUAGE sql AS $$
	SELECT count(*)::int FROM (SELECT FROM direct_path.touched_by_index t WHERE t.id = lock_row.id FOR UPDATE) s $$;
CREATE FUNCTION update_row(id int) RETURNS int VOLATILE LANGUAGE sql AS $$
	UPDATE direct_path.touched_by_index t SET v = 3 WHERE t.id = update_row.id RETURNING 1 $$;
CREATE FUNCTION touch_same_key(id int, v int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$
BEGIN
	IF v = 1 THEN
		RAISE NOTICE 'rows locked: %', direct_path.lock_row(id);
	ELSIF v = 2 THEN
		RAISE NOTICE 'rows updated: %', direct_path.update_row(id);
	END IF;
	RETURN id;
END $$;
CREATE INDEX ON touched_by_index (touch_same_key(id, v));
SELECT outcome FROM versioned_upsert('touched_by_index', '{"id": 1, "ver": 10, "v": 1}');
SELECT outcome FROM versioned_upsert('touched_by_index', '{"id": 1, "ver": 11, "v": 3}');
SELECT outcome FROM versioned_upsert('touched_by_index', '{"id": 2, "ver": 10, "v": 2}');
SELECT * FROM touched_by_index;
DROP TABLE touched_by_index;
DROP FUNCTION touch_same_key(int, int), lock_row(int), update_row(int);

-- A CHECK constraint may read tableoid, for inserts and updates alike.
CREATE TABLE oid_checked (id int PRIMARY KEY, ver rowseq, v text,
	CHECK (tableoid = 'direct_path.oid_checked'::regclass));
CREATE TABLE oid_checked_twin (id int PRIMARY KEY, ver rowseq, v text,
	CHECK (tableoid = 'direct_path.oid_checked_twin'::regclass));
CREATE TRIGGER keep_on_statement AFTER UPDATE ON oid_checked_twin FOR EACH STATEMENT EXECUTE FUNCTION nothing();
SELECT t, m, r.outcome
FROM (VALUES ('oid_checked'), ('oid_checked_twin')) v(t),
	 (VALUES (1, '{"id": 1, "ver": 1, "v": "a"}'::jsonb), (2, '{"id": 1, "ver": 2, "v": "b"}')) msg(m, j),
	 LATERAL versioned_upsert(t::regclass, j) r
ORDER BY t, m;
DROP TABLE oid_checked, oid_checked_twin;

-- Privileges are checked for every element of a batch, as the statement
-- checks them at every execution: here a constraint's function changes the
-- role in the middle of the batch, to one that may not write the table.
CREATE ROLE upsert_direct_nobody;
CREATE FUNCTION become(r text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	IF r IS NOT NULL THEN
		PERFORM set_config('role', r, true);
	END IF;
	RETURN true;
END $$;
CREATE TABLE roled (id int PRIMARY KEY, ver rowseq, r text, CHECK (become(r)));
CREATE TABLE roled_twin (id int PRIMARY KEY, ver rowseq, r text, CHECK (become(r)));
CREATE TRIGGER keep_on_statement AFTER UPDATE ON roled_twin FOR EACH STATEMENT EXECUTE FUNCTION nothing();
SELECT * FROM versioned_upsert_batch('roled',
	'[{"id": 1, "ver": 1, "r": "upsert_direct_nobody"}, {"id": 2, "ver": 1, "r": null}]');
SELECT * FROM versioned_upsert_batch('roled_twin',
	'[{"id": 1, "ver": 1, "r": "upsert_direct_nobody"}, {"id": 2, "ver": 1, "r": null}]');
SELECT current_user = session_user AS role_restored, count(*) AS rows
FROM (SELECT id FROM roled UNION ALL SELECT id FROM roled_twin) r;
DROP TABLE roled, roled_twin;
-- So is EXECUTE on the functions the table's constraints call: here the
-- role may write the table, but not call allowed().
CREATE FUNCTION allowed(q int) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN RETURN true; END $$;
REVOKE EXECUTE ON FUNCTION allowed(int) FROM PUBLIC;
CREATE TABLE roled (id int PRIMARY KEY, ver rowseq, r text, q int,
	CONSTRAINT a_become CHECK (become(r)), CONSTRAINT b_allowed CHECK (allowed(q)));
CREATE TABLE roled_twin (LIKE roled INCLUDING ALL);
CREATE TRIGGER keep_on_statement AFTER UPDATE ON roled_twin FOR EACH STATEMENT EXECUTE FUNCTION nothing();
GRANT SELECT, INSERT, UPDATE ON roled, roled_twin TO upsert_direct_nobody;
SELECT * FROM versioned_upsert_batch('roled',
	'[{"id": 1, "ver": 1, "r": "upsert_direct_nobody", "q": 1}, {"id": 2, "ver": 1, "r": null, "q": 2}]');
SELECT * FROM versioned_upsert_batch('roled_twin',
	'[{"id": 1, "ver": 1, "r": "upsert_direct_nobody", "q": 1}, {"id": 2, "ver": 1, "r": null, "q": 2}]');
SELECT current_user = session_user AS role_restored, count(*) AS rows
FROM (SELECT id FROM roled UNION ALL SELECT id FROM roled_twin) r;
DROP TABLE roled, roled_twin;
DROP FUNCTION become(text);
DROP FUNCTION allowed(int);
DROP ROLE upsert_direct_nobody;

-- An update keeps the stored key, as the statement's SET does, when the
-- message spells an equal key differently.
CREATE TABLE num_key (id numeric PRIMARY KEY, ver rowseq NOT NULL, v text);
CREATE TABLE num_key_twin (LIKE num_key INCLUDING ALL);
CREATE TRIGGER keep_on_statement AFTER UPDATE ON num_key_twin FOR EACH STATEMENT EXECUTE FUNCTION nothing();
SELECT outcome FROM versioned_upsert('num_key', '{"id": "1.00", "ver": 1, "v": "a"}');
SELECT outcome FROM versioned_upsert('num_key_twin', '{"id": "1.00", "ver": 1, "v": "a"}');
SELECT outcome FROM versioned_upsert('num_key', '{"id": 1.0, "ver": 2, "v": "b"}');
SELECT outcome FROM versioned_upsert('num_key_twin', '{"id": 1.0, "ver": 2, "v": "b"}');
SELECT id, ver, v FROM num_key UNION ALL SELECT id, ver, v FROM num_key_twin;
SELECT target, key, data FROM event_log WHERE target IN ('num_key'::regclass, 'num_key_twin'::regclass)
 ORDER BY target::text, event_id;

-- A domain over rowseq as the version column: its constraint holds for
-- full-row messages too.
CREATE DOMAIN big_ver AS rowseq CHECK (VALUE::bigint > 100);
CREATE TABLE dom_ver (id int PRIMARY KEY, ver big_ver NOT NULL, v text);
SELECT outcome FROM versioned_upsert('dom_ver', '{"id": 1, "ver": 5, "v": "a"}');
SELECT outcome FROM versioned_upsert('dom_ver', '{"id": 1, "ver": 500, "v": "a"}');
SELECT outcome FROM versioned_upsert('dom_ver', '{"id": 1, "ver": 50, "v": "b"}');

-- A published table without a replica identity refuses every message, as
-- INSERT ... ON CONFLICT DO UPDATE does, whatever the outcome would be.
CREATE TABLE no_identity (LIKE plain INCLUDING ALL);
CREATE TABLE no_identity_twin (LIKE plain INCLUDING ALL);
CREATE TRIGGER keep_on_statement AFTER UPDATE ON no_identity_twin FOR EACH STATEMENT EXECUTE FUNCTION nothing();
INSERT INTO no_identity VALUES (1, '10', 'a', 'A', 1, 1);
INSERT INTO no_identity_twin VALUES (1, '10', 'a', 'A', 1, 1);
ALTER TABLE no_identity REPLICA IDENTITY NOTHING;
ALTER TABLE no_identity_twin REPLICA IDENTITY NOTHING;
SET client_min_messages = error;
CREATE PUBLICATION direct_path_pub FOR TABLE no_identity, no_identity_twin;
RESET client_min_messages;
SELECT outcome FROM versioned_upsert('no_identity', '{"id": 2, "ver": 1, "name": "n", "code": "N", "qty": 1, "price": 1}');
SELECT outcome FROM versioned_upsert('no_identity_twin', '{"id": 2, "ver": 1, "name": "n", "code": "N", "qty": 1, "price": 1}');
SELECT outcome FROM versioned_upsert('no_identity', '{"id": 1, "ver": 5, "name": "s", "code": "S", "qty": 1, "price": 1}');
SELECT outcome FROM versioned_upsert('no_identity_twin', '{"id": 1, "ver": 5, "name": "s", "code": "S", "qty": 1, "price": 1}');
DROP PUBLICATION direct_path_pub;
SELECT outcome FROM versioned_upsert('no_identity', '{"id": 1, "ver": 5, "name": "s", "code": "S", "qty": 1, "price": 1}');

-- A read-only transaction refuses the call before it writes anything, with
-- the statement's error.
BEGIN READ ONLY;
SELECT outcome FROM versioned_upsert('plain', '{"id": 1, "ver": 99, "name": "r", "code": "R", "qty": 1, "price": 1}');
ROLLBACK;
BEGIN READ ONLY;
SELECT outcome FROM versioned_upsert('twin', '{"id": 1, "ver": 99, "name": "r", "code": "R", "qty": 1, "price": 1}');
ROLLBACK;
-- A temporary table may be written in a read-only transaction: the call
-- fails only when it logs the event, on either path, and leaves no row.
CREATE TEMP TABLE tmp_plain (id int PRIMARY KEY, ver rowseq, v text);
CREATE TEMP TABLE tmp_twin (LIKE tmp_plain INCLUDING ALL);
CREATE TRIGGER keep_on_statement AFTER UPDATE ON tmp_twin FOR EACH STATEMENT EXECUTE FUNCTION nothing();
BEGIN READ ONLY;
SELECT outcome FROM versioned_upsert('tmp_plain', '{"id": 1, "ver": 1, "v": "a"}');
ROLLBACK;
BEGIN READ ONLY;
SELECT outcome FROM versioned_upsert('tmp_twin', '{"id": 1, "ver": 1, "v": "a"}');
ROLLBACK;
SELECT (SELECT count(*) FROM tmp_plain) AS plain_rows, (SELECT count(*) FROM tmp_twin) AS twin_rows;
DROP TABLE tmp_plain, tmp_twin;

-- event_log.data on the direct path is what to_jsonb() makes of the row, to
-- the byte, for every column type it converts itself (and through
-- to_jsonb() for the others).
CREATE TABLE kinds (
	id int PRIMARY KEY, ver rowseq NOT NULL, b bool, i2 int2, i8 int8, n numeric,
	n3 numeric(10,3), f4 real, f8 float8, t text, vc varchar(8), bc char(4),
	d date, ts timestamp, tstz timestamptz, u uuid, dom small
);
CREATE TABLE kinds_other (LIKE kinds INCLUDING ALL);
ALTER TABLE kinds_other ADD COLUMN iv interval;
-- Apply a message; is the event's data exactly to_jsonb() of the stored row?
CREATE FUNCTION data_matches(target regclass, msg jsonb) RETURNS TABLE (outcome text, exact boolean)
LANGUAGE plpgsql AS $$
DECLARE
	r upsert_order.upsert_result;
	stored text;
BEGIN
	r := upsert_order.versioned_upsert(target, msg);
	EXECUTE format('SELECT to_jsonb(t.*)::text FROM %s t WHERE id = $1', target)
		INTO stored USING (msg->>'id')::int;
	RETURN QUERY SELECT r.outcome,
		(SELECT e.data::text FROM upsert_order.event_log e WHERE e.event_id = r.event_id) = stored;
END $$;
SET timezone = 'America/New_York';
SET extra_float_digits = 0;
SELECT k.target, m.n, d.*
FROM (VALUES ('kinds'::regclass), ('kinds_other'::regclass)) k(target),
	 LATERAL (VALUES
	(1, '{"id": 1, "ver": 1, "b": true, "i2": 1, "i8": 1, "n": 1, "n3": 1, "f4": 1, "f8": 1, "t": "a", "vc": "a", "bc": "a", "d": "2026-01-01", "ts": "2026-01-01 10:00", "tstz": "2026-01-01 10:00+00", "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "dom": 1, "iv": "1 day"}'::jsonb),
	(2, '{"id": 1, "ver": 2, "b": false, "i2": -32768, "i8": 9223372036854775807, "n": 1.50, "n3": 2.5, "f4": 0.1, "f8": 0.1, "t": "quote \" and é", "vc": "x", "bc": "ab", "d": "infinity", "ts": "-infinity", "tstz": "2026-06-01 12:34:56.789+02", "u": "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", "dom": 999, "iv": "1 hour"}'),
	(3, '{"id": 1, "ver": 3, "b": null, "i2": null, "i8": null, "n": "NaN", "n3": null, "f4": "NaN", "f8": "Infinity", "t": "", "vc": "", "bc": "", "d": null, "ts": null, "tstz": null, "u": null, "dom": null, "iv": null}'),
	(4, '{"id": 1, "ver": 4, "b": true, "i2": 0, "i8": -1, "n": "-Infinity", "n3": 0.0005, "f4": "-0", "f8": 1e300, "t": "t", "vc": "v", "bc": "c", "d": "0001-01-01 BC", "ts": "2026-01-01", "tstz": "infinity", "u": "00000000-0000-0000-0000-000000000000", "dom": -5, "iv": "0"}'),
	(5, '{"id": 1, "ver": 5, "b": false, "i2": 7, "i8": 7, "n": 12345678901234567890.123456789, "n3": -1.25, "f4": 3.14159, "f8": -2.5e-10, "t": "t", "vc": "v", "bc": "c", "d": "2026-02-28", "ts": "2026-02-28 23:59:59.999999", "tstz": "1999-12-31 23:59:59-08", "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "dom": 0, "iv": "-1 minute"}')
	) m(n, msg),
	LATERAL data_matches(k.target, CASE WHEN k.target = 'kinds'::regclass THEN m.msg - 'iv' ELSE m.msg END) d
ORDER BY k.target::text, m.n;
SET extra_float_digits = 1;
SELECT data_matches('kinds', '{"id": 1, "ver": 6, "b": true, "i2": 1, "i8": 1, "n": 1, "n3": 1, "f4": 0.1, "f8": 0.1, "t": "a", "vc": "a", "bc": "a", "d": null, "ts": null, "tstz": null, "u": null, "dom": 1}');
RESET extra_float_digits;
RESET timezone;
SELECT data FROM event_log WHERE target = 'kinds'::regclass ORDER BY event_id DESC LIMIT 2;

-- A cast from rowseq to json changes what to_jsonb() makes of the version
-- column: the cached conversion follows it, and follows its removal.
CREATE FUNCTION rowseq_as_json(rowseq) RETURNS json LANGUAGE sql IMMUTABLE
	AS $$ SELECT to_json($1::bigint) $$;
CREATE CAST (rowseq AS json) WITH FUNCTION rowseq_as_json(rowseq);
SELECT data_matches('kinds', '{"id": 1, "ver": 7, "b": true, "i2": 1, "i8": 1, "n": 1, "n3": 1, "f4": 0.5, "f8": 0.5, "t": "a", "vc": "a", "bc": "a", "d": null, "ts": null, "tstz": null, "u": null, "dom": 1}');
SELECT jsonb_typeof(data->'ver') FROM event_log WHERE target = 'kinds'::regclass ORDER BY event_id DESC LIMIT 1;
DROP CAST (rowseq AS json);
SELECT data_matches('kinds', '{"id": 1, "ver": 8, "b": true, "i2": 1, "i8": 1, "n": 1, "n3": 1, "f4": 0.5, "f8": 0.5, "t": "a", "vc": "a", "bc": "a", "d": null, "ts": null, "tstz": null, "u": null, "dom": 1}');
SELECT jsonb_typeof(data->'ver') FROM event_log WHERE target = 'kinds'::regclass ORDER BY event_id DESC LIMIT 1;
DROP FUNCTION rowseq_as_json(rowseq);
-- The row's keys are pushed in jsonb's order, decided when the table's
-- metadata is built; a dropped column and a new one change that order.
ALTER TABLE kinds DROP COLUMN i2, ADD COLUMN a_long_name int, ADD COLUMN z int;
SELECT data_matches('kinds', '{"id": 1, "ver": 9, "b": true, "i8": 1, "n": 1, "n3": 1, "f4": 0.5, "f8": 0.5, "t": "a", "vc": "a", "bc": "a", "d": null, "ts": null, "tstz": null, "u": null, "dom": 1, "a_long_name": 2, "z": 3}');
SELECT data FROM event_log WHERE target = 'kinds'::regclass ORDER BY event_id DESC LIMIT 1;

-- A table with INSERT or UPDATE rules stays on the statement, which refuses
-- them, whatever the message: a rule is never skipped.
CREATE TABLE ruled (id int PRIMARY KEY, ver rowseq NOT NULL, x text);
CREATE RULE nothing_in AS ON INSERT TO ruled DO INSTEAD NOTHING;
SELECT versioned_upsert('ruled', '{"id": 1, "ver": 1, "x": "a"}');
SELECT versioned_upsert('ruled', '{"id": 1, "ver": 1}');
SELECT count(*) AS rows FROM ruled;
DROP TABLE ruled;

-- A numeric key of NaN or infinity is a JSON string in the event's key, as
-- to_jsonb() writes it, so that the key is valid JSON.
CREATE TABLE nkey (id numeric PRIMARY KEY, ver rowseq NOT NULL);
SELECT outcome FROM versioned_upsert('nkey', '{"id": "NaN", "ver": 1}');
SELECT outcome FROM versioned_upsert('nkey', '{"id": "-Infinity", "ver": 1}');
SELECT key, key::text::jsonb = key AS reads_back FROM event_log
 WHERE target = 'nkey'::regclass ORDER BY event_id;
DROP TABLE nkey;

-- Dropped tables leave nothing in the session's cache.
CREATE FUNCTION cached_targets() RETURNS bigint LANGUAGE sql
	AS $$ SELECT count(*) FROM pg_backend_memory_contexts WHERE name = 'upsert_order target' $$;
SELECT cached_targets() AS before \gset
DO $$
BEGIN
	FOR i IN 1..20 LOOP
		CREATE TABLE gone (id int PRIMARY KEY, ver upsert_order.rowseq NOT NULL, x text);
		PERFORM upsert_order.versioned_upsert('gone', '{"id": 1, "ver": 1, "x": "a"}');
		PERFORM upsert_order.versioned_upsert('gone', '{"id": 1, "ver": 2}');
		DROP TABLE gone;
	END LOOP;
END $$;
SELECT outcome FROM versioned_upsert('plain', '{"id": 1, "ver": 1, "name": "z"}');
SELECT cached_targets() - :before <= 1 AS not_grown;
DROP FUNCTION cached_targets();

-- Many messages drawn at random (a fixed seed): ids colliding, versions
-- older, equal and newer, nulls, columns left out (those messages take the
-- statement on both tables), values a constraint refuses.  Applied one by
-- one to a plain table and to its twin kept on the statement, they give the
-- same results or errors, the same rows and the same events.
CREATE TABLE rnd (id int PRIMARY KEY, ver rowseq, a int, b text UNIQUE, c numeric CHECK (c >= 0));
CREATE TABLE rnd_twin (LIKE rnd INCLUDING ALL);
CREATE TRIGGER keep_on_statement AFTER UPDATE ON rnd_twin FOR EACH STATEMENT EXECUTE FUNCTION nothing();
SELECT setseed(0.25);
CREATE TEMP TABLE rnd_msg AS
SELECT n, (SELECT jsonb_object_agg(k, v) FROM jsonb_each(m) e(k, v)
		    WHERE k IN ('id', 'ver') OR random() < 0.9) AS msg
FROM (SELECT n, jsonb_build_object(
		'id', 1 + floor(random() * 12)::int,
		'ver', greatest(1, n / 6 + floor(random() * 8)::int - 4),
		'a', CASE WHEN random() < 0.2 THEN NULL ELSE floor(random() * 100)::int END,
		'b', CASE WHEN random() < 0.3 THEN NULL ELSE 'b' || floor(random() * 40)::int END,
		'c', CASE WHEN random() < 0.1 THEN -1 ELSE round((random() * 10)::numeric, 2) END) AS m
	  FROM generate_series(1, 400) n) s;
CREATE FUNCTION try_upsert(tbl regclass, msg jsonb) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	r upsert_order.upsert_result;
BEGIN
	r := upsert_order.versioned_upsert(tbl, msg);
	RETURN format('%s %s %s %s', r.applied, r.outcome, r.version, r.stored_version);
EXCEPTION WHEN OTHERS THEN
	RETURN 'error ' || SQLSTATE;
END $$;
CREATE TEMP TABLE rnd_result AS
SELECT n, try_upsert('rnd', msg) AS direct, try_upsert('rnd_twin', msg) AS statement
FROM rnd_msg ORDER BY n;
SELECT count(*) AS messages,
	   count(*) FILTER (WHERE direct = statement) AS same_result,
	   count(*) FILTER (WHERE direct LIKE 'error%') AS errors,
	   count(*) FILTER (WHERE direct LIKE '% stale %') AS stale,
	   count(*) FILTER (WHERE direct LIKE '% duplicate %') AS duplicates,
	   count(*) FILTER (WHERE direct LIKE '% updated %') AS updated,
	   count(*) FILTER (WHERE direct LIKE '% inserted %') AS inserted
FROM rnd_result;
SELECT n, direct, statement FROM rnd_result WHERE direct IS DISTINCT FROM statement;
SELECT count(*) AS rows_differing FROM
	((SELECT * FROM rnd EXCEPT ALL SELECT * FROM rnd_twin) UNION ALL
	 (SELECT * FROM rnd_twin EXCEPT ALL SELECT * FROM rnd)) d;
SELECT count(*) AS events_differing FROM
	(SELECT row_number() OVER (ORDER BY event_id) AS i, key, version, outcome, payload, data
	   FROM event_log WHERE target = 'rnd'::regclass) p
	FULL JOIN
	(SELECT row_number() OVER (ORDER BY event_id) AS i, key, version, outcome, payload, data
	   FROM event_log WHERE target = 'rnd_twin'::regclass) t USING (i)
WHERE (p.key, p.version, p.outcome, p.payload, p.data::text)
	  IS DISTINCT FROM (t.key, t.version, t.outcome, t.payload, t.data::text);
DROP TABLE rnd, rnd_twin, rnd_msg, rnd_result;
DROP FUNCTION try_upsert(regclass, jsonb);
