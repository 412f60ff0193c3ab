-- Triggers, defaults, generated columns and constraints behave as for an
-- ordinary INSERT ... ON CONFLICT DO UPDATE; an error leaves nothing behind.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS upsert_order CASCADE;
DROP SCHEMA IF EXISTS triggers_constraints CASCADE;
CREATE EXTENSION upsert_order;
RESET client_min_messages;
CREATE SCHEMA triggers_constraints;
SET search_path = triggers_constraints, upsert_order;
-- Errors raised inside the statement versioned_upsert() runs carry that
-- statement as context; the tests look at the errors themselves.
\set SHOW_CONTEXT never

CREATE TABLE parent (id int PRIMARY KEY);
INSERT INTO parent VALUES (1), (2);

CREATE TABLE doc (
	id			int PRIMARY KEY,
	ver			rowseq NOT NULL,
	parent_id	int REFERENCES parent (id),
	title		text NOT NULL DEFAULT 'untitled',
	slug		text UNIQUE,
	words		int CHECK (words >= 0),
	title_len	int GENERATED ALWAYS AS (length(title)) STORED,
	touched		text
);

-- Row and statement triggers record what fired, in order.
CREATE TABLE fired (n serial, what text);
CREATE FUNCTION note_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO fired (what) VALUES (TG_WHEN || ' ' || TG_OP || ' ' || TG_LEVEL);
	IF TG_LEVEL = 'ROW' AND TG_WHEN = 'BEFORE' THEN
		NEW.touched := coalesce(NEW.touched, '') || left(TG_OP, 1);
		RETURN NEW;
	END IF;
	RETURN NULL;
END $$;
CREATE TRIGGER b_row BEFORE INSERT OR UPDATE ON doc FOR EACH ROW EXECUTE FUNCTION note_trigger();
CREATE TRIGGER a_row AFTER INSERT OR UPDATE ON doc FOR EACH ROW EXECUTE FUNCTION note_trigger();
CREATE TRIGGER b_stmt BEFORE INSERT OR UPDATE ON doc FOR EACH STATEMENT EXECUTE FUNCTION note_trigger();
CREATE TRIGGER a_stmt AFTER INSERT OR UPDATE ON doc FOR EACH STATEMENT EXECUTE FUNCTION note_trigger();

-- Insert: BEFORE INSERT changes the stored row; defaults and generated columns apply.
SELECT outcome FROM versioned_upsert('doc', '{"id": 1, "ver": 1, "parent_id": 1}');
SELECT what FROM fired ORDER BY n; TRUNCATE fired;
-- Update: as ON CONFLICT DO UPDATE, BEFORE INSERT fires on the proposed row, then BEFORE UPDATE.
SELECT outcome FROM versioned_upsert('doc', '{"id": 1, "ver": 2, "title": "Hello"}');
SELECT what FROM fired ORDER BY n; TRUNCATE fired;
-- Stale: statement triggers and BEFORE INSERT fire, the update does not.
SELECT outcome FROM versioned_upsert('doc', '{"id": 1, "ver": 1, "title": "Old"}');
SELECT what FROM fired ORDER BY n; TRUNCATE fired;
SELECT id, ver, parent_id, title, title_len, touched FROM doc;
-- The logged data is the row as stored, after triggers and generated columns.
SELECT outcome, data->>'touched' AS touched, data->>'title_len' AS title_len
FROM event_log ORDER BY event_id;

-- Constraint violations abort the call: nothing stored, nothing logged.
SELECT count(*) AS events_before FROM event_log \gset
SELECT versioned_upsert('doc', '{"id": 2, "ver": 1, "parent_id": 99}');
SELECT versioned_upsert('doc', '{"id": 2, "ver": 1, "words": -1}');
SELECT versioned_upsert('doc', '{"id": 2, "ver": 1, "title": null}');
SELECT versioned_upsert('doc', '{"id": 1, "ver": 3, "title": null}');
SELECT versioned_upsert('doc', '{"id": 2, "ver": 1, "title_len": 5}');
SELECT outcome FROM versioned_upsert('doc', '{"id": 2, "ver": 1, "slug": "taken"}');
SELECT versioned_upsert('doc', '{"id": 3, "ver": 1, "slug": "taken"}');
SELECT versioned_upsert('doc', '{"id": 1, "ver": 5, "slug": "taken"}');
SELECT count(*) - :events_before AS new_events FROM event_log;
SELECT id, ver, slug FROM doc ORDER BY id;
-- Deleting a referenced parent is still refused as usual.
DELETE FROM parent WHERE id = 1;

-- A BEFORE trigger that returns NULL skips the row: outcome "skipped".
CREATE FUNCTION skip_odd() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.words % 2 = 1 THEN RETURN NULL; END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER skip_odd BEFORE INSERT OR UPDATE ON doc FOR EACH ROW EXECUTE FUNCTION skip_odd();
SELECT applied, outcome, version, stored_version FROM versioned_upsert('doc', '{"id": 10, "ver": 1, "words": 3}');
SELECT applied, outcome, version, stored_version FROM versioned_upsert('doc', '{"id": 1, "ver": 9, "words": 3}');
SELECT applied, outcome FROM versioned_upsert('doc', '{"id": 1, "ver": 9, "words": 4}');
SELECT id, ver, words FROM doc WHERE id IN (1, 10) ORDER BY id;
DROP TRIGGER skip_odd ON doc;

-- A trigger that raises aborts the call, and the event with it.
CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'refused by trigger' USING ERRCODE = 'P0001'; END $$;
CREATE TRIGGER refuse BEFORE UPDATE ON doc FOR EACH ROW WHEN (NEW.words = 13) EXECUTE FUNCTION refuse();
SELECT count(*) AS events_before FROM event_log \gset
SELECT versioned_upsert('doc', '{"id": 1, "ver": 20, "words": 13}');
SELECT count(*) - :events_before AS new_events FROM event_log;
SELECT ver FROM doc WHERE id = 1;
DROP TRIGGER refuse ON doc;

-- A trigger on one target may call versioned_upsert() on another (nested calls).
SELECT max(event_id) AS last_event FROM event_log \gset
CREATE TABLE audit_copy (id int PRIMARY KEY, ver rowseq, title text);
CREATE FUNCTION copy_doc() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM upsert_order.versioned_upsert('audit_copy',
		jsonb_build_object('id', NEW.id, 'ver', NEW.ver, 'title', NEW.title));
	RETURN NEW;
END $$;
CREATE TRIGGER copy_doc AFTER INSERT OR UPDATE ON doc FOR EACH ROW EXECUTE FUNCTION copy_doc();
SELECT applied, outcome, version, stored_version FROM versioned_upsert('doc', '{"id": 1, "ver": 30, "title": "Nested"}');
SELECT applied, outcome, version, stored_version FROM versioned_upsert('doc', '{"id": 1, "ver": 29, "title": "Stale"}');
SELECT * FROM audit_copy;
SELECT target, key, version, outcome FROM event_log
WHERE event_id > :last_event ORDER BY event_id;

-- A call nested in the parsing of a message (a domain's CHECK calling
-- versioned_upsert() on another table, after ANALYZE invalidated the outer
-- table's cached metadata) leaves the outer call's metadata alive until the
-- outer call is done.
CREATE TABLE nest_log (id int PRIMARY KEY, ver rowseq NOT NULL, note text);
CREATE FUNCTION nest_check(v int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	ANALYZE triggers_constraints.nest_outer;
	PERFORM upsert_order.versioned_upsert('triggers_constraints.nest_log',
		jsonb_build_object('id', v, 'ver', 1, 'note', 'nested'));
	RAISE NOTICE 'outer metadata still cached: %',
		(SELECT count(*) FROM pg_backend_memory_contexts
		  WHERE name = 'upsert_order target' AND ident = 'triggers_constraints.nest_outer');
	RETURN true;
END $$;
CREATE DOMAIN nest_checked AS int CHECK (nest_check(VALUE));
CREATE TABLE nest_outer (id int PRIMARY KEY, ver rowseq NOT NULL, v nest_checked);
SELECT outcome FROM versioned_upsert('nest_outer', '{"id": 1, "ver": 1, "v": 7}');
SELECT outcome FROM versioned_upsert('nest_outer', '{"id": 1, "ver": 2, "v": 8}');
SELECT * FROM nest_outer;
SELECT id, note FROM nest_log ORDER BY id;

-- Nor can such a function change the table under the call: ALTER TABLE,
-- DROP TABLE and TRUNCATE fail with 55006, as in the middle of an INSERT,
-- on the direct path (every column) and the statement path alike, and
-- nothing is stored or logged.
CREATE FUNCTION reshape(v int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	CASE v
		WHEN 1 THEN ALTER TABLE triggers_constraints.reshaped ALTER COLUMN b TYPE text;
		WHEN 2 THEN DROP TABLE triggers_constraints.reshaped;
		WHEN 3 THEN TRUNCATE triggers_constraints.reshaped;
		ELSE NULL;
	END CASE;
	RETURN true;
END $$;
CREATE DOMAIN reshaping AS int CHECK (reshape(VALUE));
CREATE TABLE reshaped (id int PRIMARY KEY, ver rowseq NOT NULL, v reshaping, b int);
\set VERBOSITY terse
SELECT outcome FROM versioned_upsert('reshaped', '{"id": 1, "ver": 1, "v": 1, "b": 2}');
SELECT outcome FROM versioned_upsert('reshaped', '{"id": 1, "ver": 1, "v": 1}');
SELECT outcome FROM versioned_upsert('reshaped', '{"id": 1, "ver": 1, "v": 2, "b": 2}');
SELECT outcome FROM versioned_upsert('reshaped', '{"id": 1, "ver": 1, "v": 2}');
SELECT outcome FROM versioned_upsert('reshaped', '{"id": 1, "ver": 1, "v": 3, "b": 2}');
SELECT outcome FROM versioned_upsert_batch('reshaped', '[{"id": 1, "ver": 1, "v": 0, "b": 2}, {"id": 2, "ver": 1, "v": 1, "b": 2}]');
\set VERBOSITY default
SELECT count(*) AS rows_stored FROM reshaped;
SELECT count(*) AS events FROM event_log WHERE target = 'reshaped'::regclass;
SELECT outcome FROM versioned_upsert('reshaped', '{"id": 1, "ver": 1, "v": 0, "b": 2}');
SELECT id, ver, v, b, pg_typeof(b) FROM reshaped;

-- DROP ... CASCADE of a domain the table uses is not stopped that way: it
-- drops the column, and with a key column the primary key, under the call.
-- Nor is RENAME COLUMN.  The call fails with 55006 on both paths, before it
-- writes anything.
CREATE DOMAIN doomed AS int;
CREATE FUNCTION doom(v int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	IF v = 1 THEN DROP DOMAIN triggers_constraints.doomed CASCADE; END IF;
	IF v = 2 THEN ALTER TABLE triggers_constraints.doomed_column RENAME COLUMN d TO e; END IF;
	RETURN true;
END $$;
CREATE DOMAIN dooming AS int CHECK (doom(VALUE));
CREATE TABLE doomed_column (id int PRIMARY KEY, ver rowseq NOT NULL, v dooming, d doomed);
CREATE TABLE doomed_key (id doomed PRIMARY KEY, ver rowseq NOT NULL, v dooming);
INSERT INTO doomed_column VALUES (1, 1, 0, 0);
SET client_min_messages = warning;
SELECT outcome FROM versioned_upsert('doomed_column', '{"id": 1, "ver": 2, "v": 1, "d": 2}');
\set VERBOSITY sqlstate
SELECT outcome FROM versioned_upsert('doomed_column', '{"id": 2, "ver": 2, "v": 1}');
SELECT outcome FROM versioned_upsert('doomed_key', '{"id": 1, "ver": 2, "v": 1}');
SELECT outcome FROM versioned_upsert('doomed_column', '{"id": 1, "ver": 2, "v": 2, "d": 2}');
SELECT outcome FROM versioned_upsert_batch('doomed_column', '[{"id": 3, "ver": 2, "v": 0, "d": 2}, {"id": 4, "ver": 2, "v": 1, "d": 2}]');
-- A table's own CHECK, which the direct path checks before it writes, the same.
ALTER TABLE doomed_column ADD COLUMN w int CHECK (doom(w));
SELECT outcome FROM versioned_upsert('doomed_column', '{"id": 1, "ver": 2, "v": 0, "d": 2, "w": 1}');
SELECT outcome FROM versioned_upsert('doomed_column', '{"id": 5, "ver": 2, "v": 0, "d": 2, "w": 1}');
-- And a function of an index expression, which runs once the row is
-- written: it is not logged with the dropped column, it is rolled back.
CREATE FUNCTION doom_indexed(v int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
	PERFORM triggers_constraints.doom(v);
	RETURN v;
END $$;
CREATE TABLE doomed_indexed (id int PRIMARY KEY, ver rowseq NOT NULL, v int, d doomed);
CREATE INDEX ON doomed_indexed (doom_indexed(v));
INSERT INTO doomed_indexed VALUES (1, 1, 0, 0);
SELECT outcome FROM versioned_upsert('doomed_indexed', '{"id": 1, "ver": 2, "v": 1, "d": 2}');
SELECT outcome FROM versioned_upsert('doomed_indexed', '{"id": 2, "ver": 2, "v": 1, "d": 2}');
\set VERBOSITY default
RESET client_min_messages;
SELECT * FROM doomed_column ORDER BY id;
SELECT * FROM doomed_indexed ORDER BY id;
SELECT count(*) AS events FROM event_log
 WHERE target IN ('doomed_column'::regclass, 'doomed_key'::regclass,
				  'doomed_indexed'::regclass);
SELECT outcome FROM versioned_upsert('doomed_column', '{"id": 1, "ver": 3, "v": 0, "d": 3, "w": 0}');
SELECT outcome FROM versioned_upsert('doomed_key', '{"id": 1, "ver": 3, "v": 0}');

-- The same for a primary key dropped with the operator family of its type.
SET client_min_messages = warning;
CREATE TYPE keyint;
CREATE FUNCTION keyint_in(cstring) RETURNS keyint LANGUAGE internal IMMUTABLE STRICT AS 'int4in';
CREATE FUNCTION keyint_out(keyint) RETURNS cstring LANGUAGE internal IMMUTABLE STRICT AS 'int4out';
CREATE TYPE keyint (INPUT = keyint_in, OUTPUT = keyint_out, LIKE = int4);
CREATE FUNCTION keyint_cmp(keyint, keyint) RETURNS int LANGUAGE internal IMMUTABLE STRICT AS 'btint4cmp';
CREATE FUNCTION keyint_eq(keyint, keyint) RETURNS boolean LANGUAGE internal IMMUTABLE STRICT AS 'int4eq';
CREATE FUNCTION keyint_lt(keyint, keyint) RETURNS boolean LANGUAGE internal IMMUTABLE STRICT AS 'int4lt';
CREATE FUNCTION keyint_gt(keyint, keyint) RETURNS boolean LANGUAGE internal IMMUTABLE STRICT AS 'int4gt';
CREATE OPERATOR = (LEFTARG = keyint, RIGHTARG = keyint, FUNCTION = keyint_eq);
CREATE OPERATOR < (LEFTARG = keyint, RIGHTARG = keyint, FUNCTION = keyint_lt);
CREATE OPERATOR > (LEFTARG = keyint, RIGHTARG = keyint, FUNCTION = keyint_gt);
CREATE OPERATOR CLASS keyint_ops DEFAULT FOR TYPE keyint USING btree AS
	OPERATOR 1 <, OPERATOR 3 =, OPERATOR 5 >, FUNCTION 1 keyint_cmp(keyint, keyint);
CREATE FUNCTION unkey(v int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	IF v = 1 THEN DROP OPERATOR FAMILY triggers_constraints.keyint_ops USING btree CASCADE; END IF;
	RETURN true;
END $$;
CREATE DOMAIN unkeying AS int CHECK (unkey(VALUE));
CREATE TABLE unkeyed (id keyint PRIMARY KEY, ver rowseq NOT NULL, v unkeying);
SELECT outcome FROM versioned_upsert('unkeyed', '{"id": 1, "ver": 1, "v": 0}');
\set VERBOSITY sqlstate
SELECT outcome FROM versioned_upsert('unkeyed', '{"id": 1, "ver": 2, "v": 1}');
SELECT outcome FROM versioned_upsert('unkeyed', '{"id": 2, "ver": 2, "v": 1}');
\set VERBOSITY default
RESET client_min_messages;
SELECT id, ver, v FROM unkeyed;
SELECT count(*) AS events FROM event_log WHERE target = 'unkeyed'::regclass;

-- A trigger that calls _conflict_check() during the statement, whatever
-- token it tries, changes neither the outcome reported nor the one logged:
-- a new key is still "inserted", a row the trigger skips still "skipped".
CREATE TABLE forger (id int PRIMARY KEY, ver rowseq NOT NULL, skip boolean);
CREATE FUNCTION forge() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM upsert_order._conflict_check(NULL, NULL, t)
	  FROM unnest(ARRAY[0, 1, -1, 9223372036854775807]::bigint[]) AS t;
	PERFORM upsert_order._conflict_check('100', '5', t)
	  FROM unnest(ARRAY[0, 1, -1, 9223372036854775807]::bigint[]) AS t;
	RETURN CASE WHEN NEW.skip THEN NULL ELSE NEW END;
END $$;
CREATE TRIGGER forge BEFORE INSERT ON forger FOR EACH ROW EXECUTE FUNCTION forge();
SELECT outcome, stored_version FROM versioned_upsert('forger', '{"id": 1, "ver": 10, "skip": false}');
SELECT outcome, stored_version FROM versioned_upsert('forger', '{"id": 2, "ver": 10, "skip": true}');
SELECT outcome, stored_version FROM versioned_upsert('forger', '{"id": 1, "ver": 11, "skip": false}');
SELECT key, version, outcome FROM event_log WHERE target = 'forger'::regclass ORDER BY event_id;

-- An AFTER trigger that sends a newer version of the same key: the call's
-- own event is logged before the trigger's, so applied versions increase in
-- event_id order (and the publisher, which follows event_id, publishes the
-- older one first), on the single and the batch call alike.
CREATE TABLE bumped (id int PRIMARY KEY, ver rowseq NOT NULL, note text);
CREATE FUNCTION bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.note = 'bump' THEN
		PERFORM upsert_order.versioned_upsert('bumped',
			jsonb_build_object('id', NEW.id, 'ver', NEW.ver::bigint + 10, 'note', 'bumped'));
	END IF;
	RETURN NULL;
END $$;
CREATE TRIGGER bump AFTER INSERT OR UPDATE ON bumped FOR EACH ROW EXECUTE FUNCTION bump();
SELECT outcome, version FROM versioned_upsert('bumped', '{"id": 1, "ver": 5, "note": "bump"}');
SELECT outcome, version FROM versioned_upsert_batch('bumped',
	'[{"id": 1, "ver": 20, "note": "bump"}, {"id": 2, "ver": 1, "note": "bump"}]');
SELECT * FROM bumped ORDER BY id;
SELECT key, version, outcome FROM event_log WHERE target = 'bumped'::regclass ORDER BY event_id;
SELECT count(*) AS out_of_order
FROM (SELECT version < lag(version) OVER (PARTITION BY key ORDER BY event_id) AS backwards
	  FROM event_log WHERE target = 'bumped'::regclass AND outcome IN ('inserted', 'updated')) e
WHERE backwards;

-- The same from an AFTER statement-level trigger, for the key bump_plan
-- names: it goes on once the call's row is written, on the same key too.
-- When a BEFORE trigger skipped the row, a call on the same key is refused
-- (27000) although the outer call wrote nothing: the call cannot tell that
-- its statement is past the row (documented); on another key it goes on.
CREATE TABLE stmt_bumped (id int PRIMARY KEY, ver rowseq NOT NULL, note text);
CREATE TABLE bump_plan (id int);
CREATE FUNCTION skip_marked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.note = 'skip' THEN
		RETURN NULL;
	END IF;
	RETURN NEW;
END $$;
CREATE FUNCTION bump_planned() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	planned int;
BEGIN
	FOR planned IN DELETE FROM bump_plan RETURNING id LOOP
		PERFORM upsert_order.versioned_upsert('stmt_bumped',
			jsonb_build_object('id', planned, 'ver', 100, 'note', 'bumped'));
	END LOOP;
	RETURN NULL;
END $$;
CREATE TRIGGER skip_marked BEFORE INSERT OR UPDATE ON stmt_bumped
	FOR EACH ROW EXECUTE FUNCTION skip_marked();
CREATE TRIGGER bump_planned AFTER INSERT OR UPDATE ON stmt_bumped
	FOR EACH STATEMENT EXECUTE FUNCTION bump_planned();
INSERT INTO bump_plan VALUES (1);
SELECT outcome, version FROM versioned_upsert('stmt_bumped', '{"id": 1, "ver": 5, "note": "a"}');
INSERT INTO bump_plan VALUES (2);
SELECT outcome, version FROM versioned_upsert('stmt_bumped', '{"id": 2, "ver": 5, "note": "skip"}');
DELETE FROM bump_plan;
INSERT INTO bump_plan VALUES (3);
SELECT outcome, version FROM versioned_upsert('stmt_bumped', '{"id": 2, "ver": 5, "note": "skip"}');
SELECT * FROM stmt_bumped ORDER BY id;
SELECT key, version, outcome FROM event_log WHERE target = 'stmt_bumped'::regclass ORDER BY event_id;
DROP TABLE stmt_bumped, bump_plan;
DROP FUNCTION skip_marked(), bump_planned();

-- A BEFORE trigger that changes the key: event_log.key (and so the
-- notification's key) names the row as written, as data does; the message
-- keeps its own key in payload.  Rejected messages name the message's key.
CREATE TABLE rekeyed (id int PRIMARY KEY, ver rowseq NOT NULL, note text);
CREATE FUNCTION rekey() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	NEW.id := NEW.id + 1000;
	RETURN NEW;
END $$;
CREATE TRIGGER rekey_insert BEFORE INSERT ON rekeyed FOR EACH ROW EXECUTE FUNCTION rekey();
SELECT outcome FROM versioned_upsert('rekeyed', '{"id": 2, "ver": 1, "note": "a"}');
-- the proposed row (key 1002 once the trigger ran) conflicts with the stored one
SELECT outcome FROM versioned_upsert('rekeyed', '{"id": 2, "ver": 2, "note": "b"}');
SELECT outcome FROM versioned_upsert('rekeyed', '{"id": 2, "ver": 1, "note": "c"}');
-- an update that moves the row to another key, in a batch
CREATE TABLE moved (id int PRIMARY KEY, ver rowseq NOT NULL, note text);
CREATE TRIGGER rekey_update BEFORE UPDATE ON moved FOR EACH ROW
	WHEN (NEW.note = 'move') EXECUTE FUNCTION rekey();
SELECT outcome FROM versioned_upsert_batch('moved',
	'[{"id": 1, "ver": 1, "note": "a"}, {"id": 1, "ver": 2, "note": "move"}, {"id": 1, "ver": 3, "note": "b"}]');
SELECT * FROM rekeyed UNION ALL SELECT * FROM moved ORDER BY id;
SELECT target, key, outcome, payload->'id' AS message_id, data->'id' AS stored_id
FROM event_log WHERE target IN ('rekeyed'::regclass, 'moved'::regclass) ORDER BY event_id;
