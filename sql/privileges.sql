-- Privileges: versioned_upsert() runs with the caller's rights on the target;
-- event_log is append-only for everyone but its owner.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS upsert_order CASCADE;
DROP SCHEMA IF EXISTS privileges CASCADE;
CREATE EXTENSION upsert_order;
DROP ROLE IF EXISTS upsert_writer;
DROP ROLE IF EXISTS upsert_reader;
DROP ROLE IF EXISTS upsert_nobody;
DROP ROLE IF EXISTS upsert_schema_squatter;
RESET client_min_messages;
CREATE SCHEMA privileges;
GRANT USAGE ON SCHEMA privileges TO PUBLIC;
SET search_path = privileges, upsert_order;
-- Errors raised inside the statement versioned_upsert() runs carry that
-- statement as context; the tests look at the errors themselves.
\set SHOW_CONTEXT never

CREATE ROLE upsert_writer;
CREATE ROLE upsert_reader;
CREATE ROLE upsert_nobody;
CREATE TABLE acct (id int PRIMARY KEY, ver rowseq NOT NULL, balance int, secret text);
GRANT SELECT, INSERT, UPDATE ON acct TO upsert_writer;
GRANT SELECT ON upsert_order.event_log TO upsert_reader;

-- The function is SECURITY INVOKER.
SELECT proname, prosecdef FROM pg_proc
WHERE pronamespace = 'upsert_order'::regnamespace AND prosecdef;

-- A writer with INSERT, UPDATE and SELECT on the target may call it, and needs
-- nothing on event_log.
SET ROLE upsert_writer;
SELECT outcome FROM versioned_upsert('acct', '{"id": 1, "ver": 1, "balance": 10}');
SELECT outcome FROM versioned_upsert('acct', '{"id": 1, "ver": 2, "balance": 20}');
SELECT outcome FROM versioned_upsert('acct', '{"id": 1, "ver": 1, "balance": 5}');
-- But may not read, forge or erase the audit trail.
SELECT count(*) FROM event_log;
INSERT INTO event_log (target, key, version, outcome, payload)
	VALUES ('acct', '{"id": 1}', 99, 'updated', '{}');
UPDATE event_log SET outcome = 'stale';
DELETE FROM event_log;
TRUNCATE event_log;
SELECT nextval('upsert_order.event_log_event_id_seq');
-- Calling the internal WHERE-clause helper directly changes nothing.
SELECT _conflict_check('1', '2', 0);
-- Nor does the one that takes an event_id for the running call.
SELECT _event_id(0), _event_id(1);
RESET ROLE;

-- A reader granted SELECT sees everything the writer logged, and nothing more.
SET ROLE upsert_reader;
SELECT key, version, outcome FROM event_log ORDER BY event_id;
DELETE FROM event_log;
RESET ROLE;

-- Without INSERT, UPDATE or SELECT on the target: 42501, and nothing logged.
\set VERBOSITY sqlstate
SET ROLE upsert_nobody;
SELECT versioned_upsert('acct', '{"id": 2, "ver": 1}');
RESET ROLE;
REVOKE UPDATE ON acct FROM upsert_writer;
SET ROLE upsert_writer;
SELECT versioned_upsert('acct', '{"id": 2, "ver": 1}');
RESET ROLE;
GRANT UPDATE ON acct TO upsert_writer;
REVOKE SELECT ON acct FROM upsert_writer;
SET ROLE upsert_writer;
SELECT versioned_upsert('acct', '{"id": 2, "ver": 1}');
RESET ROLE;
REVOKE INSERT ON acct FROM upsert_writer;
GRANT SELECT ON acct TO upsert_writer;
SET ROLE upsert_writer;
SELECT versioned_upsert('acct', '{"id": 1, "ver": 9}');
RESET ROLE;
\set VERBOSITY default
SET ROLE upsert_nobody;
SELECT versioned_upsert('acct', '{"id": 2, "ver": 1}');
RESET ROLE;
SELECT count(*) AS events FROM event_log;
SELECT * FROM acct;

-- Column privileges are those of the statement: a writer without UPDATE on
-- "secret" can update the other columns but not that one.
GRANT INSERT ON acct TO upsert_writer;
REVOKE UPDATE ON acct FROM upsert_writer;
GRANT UPDATE (ver, balance) ON acct TO upsert_writer;
SET ROLE upsert_writer;
SELECT outcome FROM versioned_upsert('acct', '{"id": 1, "ver": 3, "balance": 30}');
SELECT versioned_upsert('acct', '{"id": 1, "ver": 4, "secret": "x"}');
RESET ROLE;
SELECT * FROM acct;

-- A caller with the table's OID but no USAGE on its schema is refused, as
-- the statement naming the table would be, on both paths, even after
-- another role's call in the session prepared the statement.
CREATE SCHEMA hidden;
CREATE TABLE hidden.t (id int PRIMARY KEY, ver rowseq NOT NULL, x text);
GRANT SELECT, INSERT, UPDATE ON hidden.t TO upsert_writer;
SELECT outcome FROM versioned_upsert('hidden.t', '{"id": 1, "ver": 1}');
SELECT 'hidden.t'::regclass::oid AS hidden_oid \gset
SET ROLE upsert_writer;
SELECT versioned_upsert(:hidden_oid, '{"id": 1, "ver": 2, "x": "direct"}');
SELECT versioned_upsert(:hidden_oid, '{"id": 1, "ver": 3}');
RESET ROLE;
GRANT USAGE ON SCHEMA hidden TO upsert_writer;
SET ROLE upsert_writer;
SELECT outcome FROM versioned_upsert(:hidden_oid, '{"id": 1, "ver": 2, "x": "direct"}');
RESET ROLE;
SELECT * FROM hidden.t;
DROP SCHEMA hidden CASCADE;

-- Code the owner attaches to event_log runs as the owner, with pg_catalog
-- alone on the search_path: a function of the same name that the caller put
-- first on the caller's search_path is not the one it calls.
CREATE FUNCTION log_outcome_lower() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	NEW.outcome := lower(NEW.outcome);	-- unqualified on purpose
	RETURN NEW;
END $$;
CREATE TRIGGER outcome_lower BEFORE INSERT ON upsert_order.event_log
	FOR EACH ROW EXECUTE FUNCTION log_outcome_lower();
CREATE SCHEMA writer_own AUTHORIZATION upsert_writer;
SET ROLE upsert_writer;
CREATE FUNCTION writer_own.lower(text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'writer_own.lower() ran as %', current_user;
END $$;
SET search_path = writer_own, pg_catalog, privileges, upsert_order;
SELECT outcome FROM versioned_upsert('acct', '{"id": 1, "ver": 10, "balance": 30}');
SELECT outcome FROM versioned_upsert('acct', '{"id": 50, "ver": 1, "balance": 40}');
SET search_path = privileges, upsert_order;
RESET ROLE;
SELECT outcome, version FROM event_log ORDER BY event_id DESC LIMIT 2;
DROP TRIGGER outcome_lower ON upsert_order.event_log;
DROP FUNCTION log_outcome_lower();
-- So does a function that the predicate of an index the owner adds calls.
CREATE FUNCTION log_outcome_applied(outcome text) RETURNS boolean
	LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
	RETURN lower(outcome) IN ('inserted', 'updated');	-- unqualified on purpose
END $$;
CREATE INDEX event_log_applied ON upsert_order.event_log (event_id)
	WHERE log_outcome_applied(outcome);
SET ROLE upsert_writer;
SET search_path = writer_own, pg_catalog, privileges, upsert_order;
SELECT outcome FROM versioned_upsert('acct', '{"id": 1, "ver": 11, "balance": 31}');
SET search_path = privileges, upsert_order;
RESET ROLE;
DROP INDEX upsert_order.event_log_applied;
DROP FUNCTION log_outcome_applied(text);
-- And the default of a column the owner adds, planned (which inlines a SQL
-- function's body) and run as the owner, on the single and the batch path.
CREATE FUNCTION log_tag() RETURNS text LANGUAGE sql AS $$
	SELECT lower('TAGGED')	-- unqualified on purpose
$$;
ALTER TABLE upsert_order.event_log ADD COLUMN tag text DEFAULT log_tag();
SET ROLE upsert_writer;
SET search_path = writer_own, pg_catalog, privileges, upsert_order;
SELECT outcome FROM versioned_upsert('acct', '{"id": 1, "ver": 12, "balance": 32}');
SELECT outcome FROM versioned_upsert_batch('acct', '[{"id": 1, "ver": 13, "balance": 33}]');
SET search_path = privileges, upsert_order;
RESET ROLE;
SELECT outcome, version, tag FROM event_log ORDER BY event_id DESC LIMIT 2;
ALTER TABLE upsert_order.event_log DROP COLUMN tag;
DROP FUNCTION log_tag();
DROP SCHEMA writer_own CASCADE;
-- A trigger the owner adds to outbox runs as the owner of outbox, which
-- need not own event_log too, on the single and the batch path.
CREATE ROLE upsert_queue_owner;
CREATE TABLE queue_trace (who name, event_id bigint);
GRANT USAGE ON SCHEMA privileges TO upsert_queue_owner;
GRANT INSERT ON queue_trace TO upsert_queue_owner;
CREATE FUNCTION queue_trace() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO privileges.queue_trace VALUES (current_user, NEW.event_id);
	RETURN NULL;
END $$;
CREATE TRIGGER queue_trace AFTER INSERT ON upsert_order.outbox
	FOR EACH ROW EXECUTE FUNCTION queue_trace();
SELECT r.rolname AS outbox_owner FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner
WHERE c.oid = 'upsert_order.outbox'::regclass \gset
ALTER TABLE upsert_order.outbox OWNER TO upsert_queue_owner;
SET ROLE upsert_writer;
SELECT outcome FROM versioned_upsert('acct', '{"id": 1, "ver": 14, "balance": 34}');
SELECT outcome FROM versioned_upsert_batch('acct', '[{"id": 1, "ver": 15, "balance": 35}]');
RESET ROLE;
SELECT q.who, e.version FROM queue_trace q JOIN event_log e USING (event_id) ORDER BY e.event_id;
ALTER TABLE upsert_order.outbox OWNER TO :"outbox_owner";
DROP TRIGGER queue_trace ON upsert_order.outbox;
DROP FUNCTION queue_trace();
DROP TABLE queue_trace;
REVOKE USAGE ON SCHEMA privileges FROM upsert_queue_owner;
DROP ROLE upsert_queue_owner;

-- Grants on the extension's objects: only the schema and the functions are public.
SELECT c.relname, c.relacl IS NULL AS default_acl,
       has_table_privilege('upsert_nobody', c.oid, 'SELECT') AS nobody_select,
       has_table_privilege('upsert_nobody', c.oid, 'INSERT') AS nobody_insert
FROM pg_class c WHERE c.relnamespace = 'upsert_order'::regnamespace AND c.relkind IN ('r', 'S')
ORDER BY c.relname;

-- event_log is an extension configuration table, so pg_dump keeps its rows.
SELECT unnest(extconfig)::regclass AS dumped FROM pg_extension WHERE extname = 'upsert_order' ORDER BY 1;

-- A column whose type lives in a schema the writer may not use: INSERT
-- needs nothing on that schema, and neither does the call, on a message
-- that sets it (an array and a composite) or not, before and after the
-- owner used the same statement.
CREATE SCHEMA hidden_types;
CREATE TYPE hidden_types.pt AS (a int, b int);
CREATE TABLE shaped (id int PRIMARY KEY, ver rowseq NOT NULL, p hidden_types.pt, ps hidden_types.pt[]);
GRANT SELECT, INSERT, UPDATE ON shaped TO upsert_writer;
SET ROLE upsert_writer;
INSERT INTO shaped VALUES (1, '1', '(1,2)', '{"(3,4)"}');
SELECT outcome FROM versioned_upsert('shaped', '{"id": 2, "ver": 1, "p": {"a": 1, "b": 2}}');
SELECT outcome FROM versioned_upsert('shaped', '{"id": 2, "ver": 2, "p": "(5,6)", "ps": [{"a": 7}]}');
RESET ROLE;
SELECT outcome FROM versioned_upsert('shaped', '{"id": 3, "ver": 1, "p": {"a": 1, "b": 2}}');
SET ROLE upsert_writer;
SELECT outcome FROM versioned_upsert('shaped', '{"id": 3, "ver": 2, "p": {"a": 3, "b": 4}}');
RESET ROLE;
SELECT * FROM shaped ORDER BY id;
DROP TABLE shaped;
DROP SCHEMA hidden_types CASCADE;

-- A domain's CHECK calls a function only some roles may execute: each call
-- checks EXECUTE for the role making it, as each INSERT does, whichever
-- role called first in the session, and sees a REVOKE made since.
CREATE FUNCTION small_enough(v int) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN RETURN v < 1000; END $$;
REVOKE EXECUTE ON FUNCTION small_enough(int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION small_enough(int) TO upsert_writer;
CREATE DOMAIN small AS int CHECK (small_enough(VALUE));
CREATE TABLE measured (id int PRIMARY KEY, ver rowseq NOT NULL, q small);
CREATE TABLE measured_twin (LIKE measured INCLUDING ALL);
-- the twin takes the statement path: a trigger keeps it off the direct one
CREATE FUNCTION nothing() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE TRIGGER keep_on_statement AFTER UPDATE ON measured_twin FOR EACH STATEMENT EXECUTE FUNCTION nothing();
GRANT SELECT, INSERT, UPDATE ON measured, measured_twin TO upsert_writer, upsert_nobody;
SET ROLE upsert_writer;
SELECT t, outcome FROM unnest(ARRAY['measured', 'measured_twin']) t,
	LATERAL versioned_upsert(t::regclass, '{"id": 1, "ver": 1, "q": 5}');
SET ROLE upsert_nobody;
SELECT outcome FROM versioned_upsert('measured', '{"id": 2, "ver": 1, "q": 5}');
SELECT outcome FROM versioned_upsert('measured_twin', '{"id": 2, "ver": 1, "q": 5}');
SELECT outcome FROM versioned_upsert_batch('measured', '[{"id": 3, "ver": 1, "q": 5}]');
RESET ROLE;
REVOKE EXECUTE ON FUNCTION small_enough(int) FROM upsert_writer;
SET ROLE upsert_writer;
SELECT outcome FROM versioned_upsert('measured', '{"id": 1, "ver": 2, "q": 6}');
RESET ROLE;
SELECT 'measured' AS t, * FROM measured UNION ALL SELECT 'measured_twin', * FROM measured_twin ORDER BY 1, 2;
DROP TABLE measured, measured_twin;
DROP DOMAIN small;
DROP FUNCTION small_enough(int), nothing();

-- The same for a domain inside a range or a multirange: their input
-- functions compile the domain's constraints in turn.
CREATE FUNCTION bounded_ok(v int) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN RETURN v < 1000; END $$;
REVOKE EXECUTE ON FUNCTION bounded_ok(int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION bounded_ok(int) TO upsert_writer;
CREATE DOMAIN bounded AS int CHECK (bounded_ok(VALUE));
CREATE TYPE bounded_range AS RANGE (subtype = bounded, multirange_type_name = bounded_multirange);
CREATE TABLE spans (id int PRIMARY KEY, ver rowseq NOT NULL, r bounded_range, m bounded_multirange);
CREATE TABLE spans_twin (LIKE spans INCLUDING ALL);
CREATE FUNCTION nothing() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE TRIGGER keep_on_statement AFTER UPDATE ON spans_twin FOR EACH STATEMENT EXECUTE FUNCTION nothing();
GRANT SELECT, INSERT, UPDATE ON spans, spans_twin TO upsert_writer, upsert_nobody;
SET ROLE upsert_writer;
SELECT t, outcome FROM unnest(ARRAY['spans', 'spans_twin']) t,
	LATERAL versioned_upsert(t::regclass, '{"id": 1, "ver": 1, "r": "[1,5)", "m": "{[1,5)}"}');
SET ROLE upsert_nobody;
SELECT outcome FROM versioned_upsert('spans', '{"id": 2, "ver": 1, "r": "[1,5)", "m": null}');
SELECT outcome FROM versioned_upsert('spans', '{"id": 2, "ver": 1, "r": null, "m": "{[1,5)}"}');
SELECT outcome FROM versioned_upsert('spans_twin', '{"id": 2, "ver": 1, "r": "[1,5)", "m": null}');
SELECT outcome FROM versioned_upsert('spans_twin', '{"id": 2, "ver": 1, "r": null, "m": "{[1,5)}"}');
SELECT outcome FROM versioned_upsert_batch('spans', '[{"id": 3, "ver": 1, "r": "[1,5)", "m": null}]');
RESET ROLE;
REVOKE EXECUTE ON FUNCTION bounded_ok(int) FROM upsert_writer;
SET ROLE upsert_writer;
SELECT outcome FROM versioned_upsert('spans', '{"id": 1, "ver": 2, "r": "[2,5)", "m": "{[2,5)}"}');
RESET ROLE;
SELECT 'spans' AS t, * FROM spans UNION ALL SELECT 'spans_twin', * FROM spans_twin ORDER BY 1, 2;
DROP TABLE spans, spans_twin;
DROP TYPE bounded_range;
DROP DOMAIN bounded;
DROP FUNCTION bounded_ok(int), nothing();

-- SELECT, INSERT and UPDATE granted column by column are enough, on both
-- paths and for a message that leaves columns out (the statement path): the
-- call reads no system column of the table the caller could not read.
CREATE TABLE per_column (id int PRIMARY KEY, ver rowseq NOT NULL, v text);
CREATE TABLE per_column_twin (LIKE per_column INCLUDING ALL);
CREATE FUNCTION nothing() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE TRIGGER keep_on_statement AFTER UPDATE ON per_column_twin FOR EACH STATEMENT EXECUTE FUNCTION nothing();
GRANT SELECT (id, ver, v), INSERT (id, ver, v), UPDATE (id, ver, v) ON per_column, per_column_twin TO upsert_nobody;
SET ROLE upsert_nobody;
SELECT t, r.outcome FROM unnest(ARRAY['per_column', 'per_column_twin']) t,
	LATERAL unnest(ARRAY['{"id": 1, "ver": 1, "v": "a"}', '{"id": 1, "ver": 2, "v": "b"}',
						 '{"id": 1, "ver": 3}', '{"id": 1, "ver": 2, "v": "c"}']::jsonb[]) WITH ORDINALITY m(msg, n),
	LATERAL versioned_upsert(t::regclass, m.msg) r
ORDER BY t, m.n;
RESET ROLE;
-- Under row level security a rejected message's row is found by its
-- tableoid and TID, system columns: SELECT on the table, or on those two
-- columns, is needed then.
ALTER TABLE per_column ENABLE ROW LEVEL SECURITY;
CREATE POLICY everything ON per_column USING (true);
SET ROLE upsert_nobody;
SELECT outcome FROM versioned_upsert('per_column', '{"id": 1, "ver": 4, "v": "d"}');
-- An empty batch is refused likewise: it is refused wherever a message is.
SELECT count(*) FROM versioned_upsert_batch('per_column', '[]');
-- With row_security off, both fail on the policy first, as the statement's
-- planning does.
SET row_security = off;
SELECT outcome FROM versioned_upsert('per_column', '{"id": 1, "ver": 4, "v": "d"}');
SELECT count(*) FROM versioned_upsert_batch('per_column', '[]');
RESET row_security;
RESET ROLE;
-- SELECT on those two system columns is enough.
GRANT SELECT (tableoid, ctid) ON per_column TO upsert_nobody;
SET ROLE upsert_nobody;
SELECT count(*) FROM versioned_upsert_batch('per_column', '[]');
SELECT outcome FROM versioned_upsert('per_column', '{"id": 1, "ver": 4, "v": "d"}');
SELECT outcome FROM versioned_upsert('per_column', '{"id": 1, "ver": 4, "v": "d"}');
RESET ROLE;
REVOKE SELECT (tableoid, ctid) ON per_column FROM upsert_nobody;
SET ROLE upsert_nobody;
SELECT count(*) FROM versioned_upsert_batch('per_column', '[]');
RESET ROLE;
GRANT SELECT ON per_column TO upsert_nobody;
SET ROLE upsert_nobody;
SELECT count(*) FROM versioned_upsert_batch('per_column', '[]');
SELECT outcome FROM versioned_upsert('per_column', '{"id": 1, "ver": 5, "v": "e"}');
SELECT outcome FROM versioned_upsert('per_column', '{"id": 1, "ver": 5, "v": "e"}');
RESET ROLE;
SELECT 'per_column' AS t, * FROM per_column UNION ALL SELECT 'per_column_twin', * FROM per_column_twin ORDER BY 1, 2;
DROP TABLE per_column, per_column_twin;
DROP FUNCTION nothing();

DROP TABLE acct;
DROP OWNED BY upsert_writer, upsert_reader, upsert_nobody;
DROP ROLE upsert_writer;
DROP ROLE upsert_reader;
DROP ROLE upsert_nobody;

-- A table in the extension's schema that CREATE EXTENSION did not create
-- is never written, whoever made it: here outbox, taken out of the
-- extension by hand.  (In a new session: taking a table out of an
-- extension changes nothing that sessions keep.)
CREATE TABLE member_check (id int PRIMARY KEY, ver rowseq NOT NULL);
ALTER EXTENSION upsert_order DROP TABLE upsert_order.outbox;
\c
SET search_path = privileges, upsert_order;
SELECT outcome FROM versioned_upsert('member_check', '{"id": 1, "ver": 1}');
ALTER EXTENSION upsert_order ADD TABLE upsert_order.outbox;
\c
SET search_path = privileges, upsert_order;
SELECT outcome FROM versioned_upsert('member_check', '{"id": 1, "ver": 1}');
-- Nor is a column of them altered to another type: the values go in below
-- SQL, as the types the extension gave them.
ALTER TABLE upsert_order.event_log ALTER COLUMN key TYPE text;
SELECT outcome FROM versioned_upsert('member_check', '{"id": 1, "ver": 2}');
SELECT count(*) AS logged FROM upsert_order.event_log WHERE target = 'member_check'::regclass;
ALTER TABLE upsert_order.event_log ALTER COLUMN key TYPE jsonb USING key::jsonb;
SELECT outcome FROM versioned_upsert('member_check', '{"id": 1, "ver": 2}');
-- Nor one renamed, or one whose column is renamed: calls fail, naming what
-- they looked for, and log nothing, until the name is back.
ALTER TABLE upsert_order.outbox RENAME TO outbox_renamed;
SELECT outcome FROM versioned_upsert('member_check', '{"id": 2, "ver": 1}');
ALTER TABLE upsert_order.outbox_renamed RENAME TO outbox;
ALTER TABLE upsert_order.event_log RENAME COLUMN payload TO message;
SELECT outcome FROM versioned_upsert('member_check', '{"id": 2, "ver": 1}');
ALTER TABLE upsert_order.event_log RENAME COLUMN message TO payload;
SELECT count(*) AS logged FROM upsert_order.event_log WHERE target = 'member_check'::regclass;
SELECT outcome FROM versioned_upsert('member_check', '{"id": 2, "ver": 1}');
DELETE FROM member_check WHERE id = 2;
-- A BEFORE trigger of the owner may not skip or change a row the extension
-- writes (one that returns the row as it came is fine), and the sequence
-- may not hand out event_ids below 1.
CREATE TABLE trigger_check (id int PRIMARY KEY, ver rowseq NOT NULL, note text);
CREATE FUNCTION privileges.log_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_ARGV[0] = 'skip' THEN
		RETURN NULL;
	ELSIF TG_ARGV[0] = 'change' THEN
		NEW.outcome := 'stale';
	ELSIF TG_ARGV[0] = 'fill' THEN
		NEW.data := coalesce(NEW.data, '{"filled": true}');
	END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER log_trigger BEFORE INSERT ON upsert_order.event_log
	FOR EACH ROW EXECUTE FUNCTION privileges.log_trigger('skip');
SELECT outcome FROM versioned_upsert('trigger_check', '{"id": 1, "ver": 1, "note": "a"}');
DROP TRIGGER log_trigger ON upsert_order.event_log;
CREATE TRIGGER log_trigger BEFORE INSERT ON upsert_order.event_log
	FOR EACH ROW EXECUTE FUNCTION privileges.log_trigger('change');
SELECT outcome FROM versioned_upsert_batch('trigger_check', '[{"id": 1, "ver": 1, "note": "a"}]');
DROP TRIGGER log_trigger ON upsert_order.event_log;
-- nor give the NULL data of a rejected message a value
CREATE TRIGGER log_trigger BEFORE INSERT ON upsert_order.event_log
	FOR EACH ROW EXECUTE FUNCTION privileges.log_trigger('fill');
SELECT outcome FROM versioned_upsert('trigger_check', '{"id": 0, "ver": 1, "note": "a"}');
SELECT outcome FROM versioned_upsert('trigger_check', '{"id": 0, "ver": 1, "note": "a"}');
DROP TRIGGER log_trigger ON upsert_order.event_log;
CREATE TRIGGER log_trigger BEFORE INSERT ON upsert_order.event_log
	FOR EACH ROW EXECUTE FUNCTION privileges.log_trigger('keep');
SELECT outcome FROM versioned_upsert('trigger_check', '{"id": 1, "ver": 1, "note": "a"}');
SELECT outcome FROM versioned_upsert_batch('trigger_check',
	'[{"id": 1, "ver": 2, "note": "b"}, {"id": 1, "ver": 2}, {"id": 1, "ver": 1}]');
DROP TRIGGER log_trigger ON upsert_order.event_log;
DROP FUNCTION privileges.log_trigger();
SELECT outcome, data FROM upsert_order.event_log WHERE target = 'trigger_check'::regclass ORDER BY event_id;
SELECT max(event_id) AS last_event_id FROM upsert_order.event_log \gset
ALTER SEQUENCE upsert_order.event_log_event_id_seq MINVALUE -5 RESTART WITH 0;
SELECT outcome FROM versioned_upsert('trigger_check', '{"id": 1, "ver": 3}');
SELECT setval('upsert_order.event_log_event_id_seq', :last_event_id) = :last_event_id AS set_back;
ALTER SEQUENCE upsert_order.event_log_event_id_seq MINVALUE 1;
SELECT outcome, event_id = :last_event_id + 1 AS next_event_id
  FROM versioned_upsert('trigger_check', '{"id": 1, "ver": 3}');
DROP TABLE trigger_check;
-- Nor is a table or sequence of them made unlogged, which a crash empties.
ALTER TABLE upsert_order.outbox SET UNLOGGED;
SELECT outcome FROM versioned_upsert('member_check', '{"id": 1, "ver": 3}');
ALTER TABLE upsert_order.outbox SET LOGGED;
ALTER SEQUENCE upsert_order.event_log_event_id_seq SET UNLOGGED;
SELECT outcome FROM versioned_upsert('member_check', '{"id": 1, "ver": 3}');
ALTER SEQUENCE upsert_order.event_log_event_id_seq SET LOGGED;
-- A primary key of event_log on other columns stops only the publisher,
-- which reads events by it: calls, which do not, go on.
BEGIN;
ALTER TABLE upsert_order.event_log DROP CONSTRAINT event_log_pkey,
	ADD PRIMARY KEY (logged_at, event_id);
SELECT outcome FROM versioned_upsert('member_check', '{"id": 1, "ver": 4}');
ROLLBACK;
-- The same holds for the extension's types: a type put in the place of
-- rowseq under its name, and the result's columns.
ALTER TYPE upsert_order.rowseq RENAME TO rowseq_original;
CREATE TYPE upsert_order.rowseq AS (v text);
CREATE TABLE impostor (id int PRIMARY KEY, ver upsert_order.rowseq);
SELECT outcome FROM versioned_upsert('impostor', '{"id": 1, "ver": 1}');
\c
SET search_path = privileges, upsert_order;
SELECT outcome FROM versioned_upsert('member_check', '{"id": 1, "ver": 3}');
DROP TABLE impostor;
DROP TYPE upsert_order.rowseq;
ALTER TYPE upsert_order.rowseq_original RENAME TO rowseq;
\c
SET search_path = privileges, upsert_order;
SELECT outcome FROM versioned_upsert('member_check', '{"id": 1, "ver": 3}');
ALTER TYPE upsert_order.upsert_result ALTER ATTRIBUTE version TYPE text;
SELECT outcome FROM versioned_upsert('member_check', '{"id": 1, "ver": 4}');
SELECT outcome FROM versioned_upsert_batch('member_check', '[{"id": 1, "ver": 4}]');
ALTER TYPE upsert_order.upsert_result ALTER ATTRIBUTE version TYPE rowseq;
SELECT outcome FROM versioned_upsert('member_check', '{"id": 1, "ver": 4}');
-- An attribute added is refused; once dropped, it stays in the type, and
-- the results leave it out.
ALTER TYPE upsert_order.upsert_result ADD ATTRIBUTE extra bigint;
SELECT outcome FROM versioned_upsert('member_check', '{"id": 1, "ver": 5}');
ALTER TYPE upsert_order.upsert_result DROP ATTRIBUTE extra;
SELECT applied, outcome, version, stored_version FROM versioned_upsert('member_check', '{"id": 1, "ver": 5}');
SELECT applied, outcome, version, stored_version
  FROM versioned_upsert_batch('member_check', '[{"id": 1, "ver": 6}, {"id": 1, "ver": 6}]');
SELECT ver FROM member_check;
DROP TABLE member_check;

-- CREATE EXTENSION refuses a schema of its name that a role other than a
-- superuser created first: that role could put objects of its own in the
-- place of the extension's.
CREATE ROLE upsert_schema_squatter;
SET client_min_messages = warning;
DROP EXTENSION upsert_order CASCADE;
RESET client_min_messages;
DROP SCHEMA upsert_order;
CREATE SCHEMA upsert_order AUTHORIZATION upsert_schema_squatter;
CREATE EXTENSION upsert_order;
SELECT count(*) AS installed FROM pg_extension WHERE extname = 'upsert_order';
DROP SCHEMA upsert_order;
DROP ROLE upsert_schema_squatter;
CREATE EXTENSION upsert_order;
SELECT pg_get_userbyid(nspowner) = current_user AS owned_by_installer
  FROM pg_namespace WHERE nspname = 'upsert_order';
