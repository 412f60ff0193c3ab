-- Bad targets and bad messages: a clear error with the right SQLSTATE, and
-- nothing left behind.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS upsert_order CASCADE;
DROP SCHEMA IF EXISTS bad_input CASCADE;
CREATE EXTENSION upsert_order;
RESET client_min_messages;
CREATE SCHEMA bad_input;
SET search_path = bad_input, upsert_order;
\set VERBOSITY default
\set SHOW_CONTEXT never

CREATE TABLE good (id int PRIMARY KEY, ver rowseq NOT NULL, val text CHECK (val <> 'bad'));
INSERT INTO good VALUES (1, 10, 'stored');

-- Show SQLSTATEs: every error below must carry the right one.
\set VERBOSITY sqlstate
SELECT versioned_upsert(NULL, '{"id": 1}');
SELECT versioned_upsert('good', NULL);
\set VERBOSITY default

-- Targets that are not tables with a primary key and exactly one rowseq column.
CREATE TABLE no_pk (id int, ver rowseq);
SELECT versioned_upsert('no_pk', '{"id": 1, "ver": 1}');
CREATE TABLE no_version (id int PRIMARY KEY, ver bigint);
SELECT versioned_upsert('no_version', '{"id": 1, "ver": 1}');
CREATE TABLE two_versions (id int PRIMARY KEY, v1 rowseq, v2 rowseq);
SELECT versioned_upsert('two_versions', '{"id": 1, "v1": 1}');
CREATE TABLE version_in_key (id int, ver rowseq, PRIMARY KEY (id, ver));
SELECT versioned_upsert('version_in_key', '{"id": 1, "ver": 1}');
CREATE TABLE deferred_pk (id int PRIMARY KEY DEFERRABLE, ver rowseq);
SELECT versioned_upsert('deferred_pk', '{"id": 1, "ver": 1}');
CREATE VIEW good_view AS SELECT * FROM good;
SELECT versioned_upsert('good_view', '{"id": 1, "ver": 11}');
CREATE MATERIALIZED VIEW good_mv AS SELECT * FROM good;
SELECT versioned_upsert('good_mv', '{"id": 1, "ver": 11}');
CREATE SEQUENCE some_seq;
SELECT versioned_upsert('some_seq', '{"id": 1, "ver": 11}');
SELECT versioned_upsert('pg_class', '{"oid": 1}');
SELECT versioned_upsert('pg_catalog.pg_proc', '{"oid": 1}');
SELECT versioned_upsert('upsert_order.event_log', '{"event_id": 1, "version": 1}');
-- Nor any other table put in the extension's schema.
CREATE TABLE upsert_order.not_theirs (id int PRIMARY KEY, ver rowseq NOT NULL);
SELECT versioned_upsert('upsert_order.not_theirs', '{"id": 1, "ver": 1}');
DROP TABLE upsert_order.not_theirs;
-- A table logical decoding reads as a catalog: ON CONFLICT refuses it, and
-- so does every message, full (the direct path) or partial.
CREATE TABLE user_catalog (id int PRIMARY KEY, ver rowseq NOT NULL, val text)
	WITH (user_catalog_table = true);
SELECT versioned_upsert('user_catalog', '{"id": 1, "ver": 1, "val": "a"}');
SELECT versioned_upsert('user_catalog', '{"id": 1, "ver": 1}');
-- A dropped table (the regclass outlives it).
CREATE TABLE doomed (id int PRIMARY KEY, ver rowseq);
SELECT 'doomed'::regclass::oid AS doomed_oid \gset
DROP TABLE doomed;
SELECT versioned_upsert(0, '{"id": 1, "ver": 1}');
SELECT versioned_upsert('no_such_table', '{"id": 1, "ver": 1}');

\set VERBOSITY sqlstate
SELECT versioned_upsert('no_pk', '{"id": 1, "ver": 1}');
SELECT versioned_upsert('two_versions', '{"id": 1, "v1": 1}');
SELECT versioned_upsert('good_view', '{"id": 1, "ver": 11}');
SELECT versioned_upsert('user_catalog', '{"id": 1, "ver": 2, "val": "b"}');
SELECT versioned_upsert(:doomed_oid, '{"id": 1, "ver": 1}');
\set VERBOSITY default

-- Messages that are not objects.
SELECT versioned_upsert('good', '[1, 2]');
SELECT versioned_upsert('good', '"id"');
SELECT versioned_upsert('good', '7');
SELECT versioned_upsert('good', 'null');

-- Unknown columns, including names that look like SQL.
SELECT versioned_upsert('good', '{"id": 1, "ver": 11, "nope": 1}');
SELECT versioned_upsert('good', '{"id": 1, "ver": 11, "id\"; DROP TABLE good; --": 1}');
SELECT versioned_upsert('good', '{"id": 1, "ver": 11, "ctid": "(0,1)"}');
SELECT versioned_upsert('good', '{"id": 1, "ver": 11, "ID": 1}');
\set VERBOSITY sqlstate
SELECT versioned_upsert('good', '{"id": 1, "ver": 11, "nope": 1}');
\set VERBOSITY default

-- Missing or null primary key.
SELECT versioned_upsert('good', '{"ver": 11, "val": "x"}');
SELECT versioned_upsert('good', '{"id": null, "ver": 11}');
\set VERBOSITY sqlstate
SELECT versioned_upsert('good', '{"ver": 11}');
\set VERBOSITY default

-- Bad versions go through rowseq's own input rules.
SELECT versioned_upsert('good', '{"id": 1, "ver": -1}');
SELECT versioned_upsert('good', '{"id": 1, "ver": 1.5}');
SELECT versioned_upsert('good', '{"id": 1, "ver": "abc"}');
SELECT versioned_upsert('good', '{"id": 1, "ver": " 12x"}');
SELECT versioned_upsert('good', '{"id": 1, "ver": true}');
SELECT versioned_upsert('good', '{"id": 1, "ver": [1]}');
SELECT versioned_upsert('good', '{"id": 1, "ver": 9223372036854775808}');
-- A JSON number whose decimal form is long is named in scientific notation,
-- or by its first 64 characters when they show its decimal point (six
-- digits would round the last one to 100), not with all its digits; one of
-- up to 64 characters is named in full.
SELECT versioned_upsert('good', '{"id": 1, "ver": 1e100000}');
SELECT versioned_upsert('good', '{"id": 1, "ver": -1.5e100000}');
SELECT versioned_upsert('good', '{"id": 1, "ver": 1e-16000}');
SELECT versioned_upsert('good', '{"id": 1, "ver": 100.000000000000000000000000000000000000000000000000000000000000000000000000001}');
SELECT versioned_upsert('good', '{"id": 1, "ver": 1e63}');
SELECT versioned_upsert('good', '{"id": 1, "ver": 1e64}');
\set VERBOSITY sqlstate
SELECT versioned_upsert('good', '{"id": 1, "ver": 1e100000}');
SELECT versioned_upsert('good', '{"id": 1, "ver": 1e-16000}');
SELECT versioned_upsert('good', '{"id": 1, "ver": "abc"}');
SELECT versioned_upsert('good', '{"id": 1, "ver": 9223372036854775808}');
\set VERBOSITY default

-- Bad values for other columns: the column's type says so.
SELECT versioned_upsert('good', '{"id": "one", "ver": 11}');
SELECT versioned_upsert('good', '{"id": 1.5, "ver": 11}');
SELECT versioned_upsert('good', '{"id": 99999999999, "ver": 11}');
SELECT versioned_upsert('good', '{"id": 1, "ver": 11, "val": "bad"}');

-- None of that left a row or an event behind.
SELECT * FROM good;
SELECT count(*) AS events FROM event_log;
-- And the good path still works afterwards in the same session.
SELECT outcome FROM versioned_upsert('good', '{"id": 1, "ver": 11, "val": "fine"}');
SELECT count(*) AS events FROM event_log;

-- A table that changes shape is re-read: the cache follows ALTER TABLE.
ALTER TABLE user_catalog RESET (user_catalog_table);
SELECT outcome FROM versioned_upsert('user_catalog', '{"id": 1, "ver": 1, "val": "a"}');
ALTER TABLE user_catalog SET (user_catalog_table = true);
SELECT versioned_upsert('user_catalog', '{"id": 1, "ver": 2, "val": "b"}');
SELECT * FROM user_catalog;
SELECT outcome FROM versioned_upsert('good', '{"id": 2, "ver": 1, "val": "v"}');
ALTER TABLE good ADD COLUMN extra int;
SELECT outcome FROM versioned_upsert('good', '{"id": 2, "ver": 2, "extra": 5}');
ALTER TABLE good RENAME COLUMN extra TO more;
SELECT versioned_upsert('good', '{"id": 2, "ver": 3, "extra": 6}');
SELECT outcome FROM versioned_upsert('good', '{"id": 2, "ver": 3, "more": 6}');
ALTER TABLE good DROP COLUMN more;
SELECT versioned_upsert('good', '{"id": 2, "ver": 4, "more": 7}');
DROP VIEW good_view;
DROP MATERIALIZED VIEW good_mv;
ALTER TABLE good ALTER COLUMN val TYPE varchar(4);
SELECT versioned_upsert('good', '{"id": 2, "ver": 4, "val": "12345"}');
SELECT outcome FROM versioned_upsert('good', '{"id": 2, "ver": 4, "val": "1234"}');
SELECT * FROM good ORDER BY id;
ALTER TABLE good RENAME TO good_renamed;
CREATE TABLE good (id int CONSTRAINT new_good_pk PRIMARY KEY, ver rowseq NOT NULL);
SELECT outcome FROM versioned_upsert('good_renamed', '{"id": 3, "ver": 1}');
SELECT outcome FROM versioned_upsert('good', '{"id": 3, "ver": 1}');
SELECT count(*) FROM good_renamed WHERE id = 3;
ALTER TABLE good DROP CONSTRAINT new_good_pk;
SELECT versioned_upsert('good', '{"id": 4, "ver": 1}');
ALTER TABLE good ADD PRIMARY KEY (id);
ALTER TABLE good ADD COLUMN ver2 rowseq;
SELECT versioned_upsert('good', '{"id": 4, "ver": 1}');
-- Names the kept statements spell, renamed without touching the table: its
-- schema, its primary key (the constraint goes with the index), the type of
-- a composite column.  Partial messages take the statement.
CREATE SCHEMA renamed_ns;
CREATE TYPE renamed_ns.pair AS (a int, b int);
CREATE TABLE renamed_ns.t (id int PRIMARY KEY, ver rowseq NOT NULL, a text, p renamed_ns.pair);
SELECT outcome FROM versioned_upsert('renamed_ns.t', '{"id": 1, "ver": 1, "a": "x"}');
SELECT outcome FROM versioned_upsert('renamed_ns.t', '{"id": 1, "ver": 2, "p": {"a": 1, "b": 2}}');
ALTER SCHEMA renamed_ns RENAME TO renamed_ns_old;
-- A new table where the old name pointed must not receive the old one's rows.
CREATE SCHEMA renamed_ns;
CREATE TABLE renamed_ns.t (id int PRIMARY KEY, ver rowseq NOT NULL, a text);
SELECT outcome FROM versioned_upsert('renamed_ns_old.t', '{"id": 2, "ver": 1, "a": "y"}');
SELECT outcome FROM versioned_upsert('renamed_ns_old.t', '{"id": 2, "ver": 2, "p": {"a": 3, "b": 4}}');
SELECT (SELECT count(*) FROM renamed_ns_old.t) AS old_rows, (SELECT count(*) FROM renamed_ns.t) AS new_rows;
ALTER INDEX renamed_ns_old.t_pkey RENAME TO t_pk_renamed;
SELECT outcome FROM versioned_upsert('renamed_ns_old.t', '{"id": 2, "ver": 3, "a": "z"}');
ALTER TYPE renamed_ns_old.pair RENAME TO pair_renamed;
SELECT outcome FROM versioned_upsert('renamed_ns_old.t', '{"id": 2, "ver": 4, "p": {"a": 5, "b": 6}}');
SELECT id, ver, a, p FROM renamed_ns_old.t ORDER BY id;
SET client_min_messages = warning;
DROP SCHEMA renamed_ns, renamed_ns_old CASCADE;
RESET client_min_messages;

-- A message the statement refuses to prepare (it names a generated column)
-- leaves nothing in the session's cache, however often it is sent.
CREATE TABLE gen (id int PRIMARY KEY, ver rowseq NOT NULL, a int,
				  twice int GENERATED ALWAYS AS (a * 2) STORED);
SELECT versioned_upsert('gen', '{"id": 1, "ver": 1, "a": 1, "twice": 3}');
CREATE FUNCTION gen_cache_bytes() RETURNS bigint LANGUAGE sql
	AS $$ SELECT total_bytes FROM pg_backend_memory_contexts
		  WHERE name = 'upsert_order target' AND ident = 'bad_input.gen' $$;
SELECT gen_cache_bytes() AS before \gset
DO $$
BEGIN
	FOR i IN 1..2000 LOOP
		BEGIN
			PERFORM upsert_order.versioned_upsert('gen', '{"id": 1, "ver": 1, "a": 1, "twice": 3}');
		EXCEPTION WHEN generated_always THEN NULL;
		END;
	END LOOP;
END $$;
SELECT gen_cache_bytes() = :before AS not_grown;
DROP FUNCTION gen_cache_bytes();
DROP TABLE gen;

-- Messages naming ever other sets of columns keep a bounded number of
-- statements, and every one still does its work.
CREATE TABLE wide (id int PRIMARY KEY, ver rowseq NOT NULL,
				   c1 int, c2 int, c3 int, c4 int, c5 int, c6 int, c7 int);
CREATE FUNCTION wide_statements() RETURNS bigint LANGUAGE sql
	AS $$ SELECT count(*) FROM pg_backend_memory_contexts
		  WHERE name = 'CachedPlanSource' AND ident LIKE 'INSERT INTO bad_input.wide %' $$;
SELECT count(*) FILTER (WHERE r.outcome = 'updated') AS updated, wide_statements() AS kept
FROM generate_series(1, 126) AS m,
	 LATERAL (SELECT jsonb_object_agg('c' || c, m) AS cols
			  FROM generate_series(1, 7) AS c WHERE m & (1 << (c - 1)) <> 0) AS sets,
	 LATERAL versioned_upsert('wide', jsonb_build_object('id', 1, 'ver', m) || sets.cols) AS r;
-- each column holds the last message that named it
SELECT c1, c2, c3, c4, c5, c6, c7, ver FROM wide;
-- The same messages passed on by a trigger: a nested call may not free a
-- statement (an outer one may be running it), so past the bound it keeps
-- none, and the count stays bounded.
DELETE FROM wide;
CREATE TABLE wide_outer (id int PRIMARY KEY, ver rowseq NOT NULL, msg jsonb);
CREATE FUNCTION wide_pass_on() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM upsert_order.versioned_upsert('bad_input.wide', NEW.msg);
	RETURN NULL;
END $$;
CREATE TRIGGER pass_on AFTER INSERT OR UPDATE ON wide_outer
	FOR EACH ROW EXECUTE FUNCTION wide_pass_on();
SELECT count(*) FILTER (WHERE r.outcome = 'updated') AS updated, wide_statements() AS kept
FROM generate_series(1, 126) AS m,
	 LATERAL (SELECT jsonb_object_agg('c' || c, m) AS cols
			  FROM generate_series(1, 7) AS c WHERE m & (1 << (c - 1)) <> 0) AS sets,
	 LATERAL versioned_upsert('wide_outer', jsonb_build_object('id', 1, 'ver', m,
			'msg', jsonb_build_object('id', 1, 'ver', m) || sets.cols)) AS r;
SELECT c1, c2, c3, c4, c5, c6, c7, ver FROM wide;
DROP TABLE wide_outer;
DROP FUNCTION wide_pass_on();
DROP FUNCTION wide_statements();
DROP TABLE wide;

-- A JSON number stands for its value, whatever its spelling: 1e2 and 100.0
-- are the version 100, 1.01e2 is 101; a fraction is refused, and so is the
-- string "100.0", which is not decimal digits.
CREATE TABLE numbered (id int PRIMARY KEY, ver rowseq NOT NULL);
SELECT version, outcome FROM versioned_upsert('numbered', '{"id": 1, "ver": 1e2}');
SELECT version, outcome FROM versioned_upsert('numbered', '{"id": 1, "ver": 100.0}');
SELECT version, outcome FROM versioned_upsert('numbered', '{"id": 1, "ver": 1.01e2}');
SELECT versioned_upsert('numbered', '{"id": 1, "ver": 1e-1}');
SELECT versioned_upsert('numbered', '{"id": 1, "ver": "100.0"}');
