-- Odd table and column names are quoted everywhere; JSON keys are only ever
-- column names, never SQL.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS upsert_order CASCADE;
DROP SCHEMA IF EXISTS identifiers CASCADE;
CREATE EXTENSION upsert_order;
RESET client_min_messages;
CREATE SCHEMA identifiers;
SET search_path = identifiers, upsert_order;

CREATE SCHEMA "My Schema";
CREATE TABLE "My Schema"."Odd ""Table"" name" (
	"Key Col"		text,
	"ünïcødé"		int,
	"select"		rowseq NOT NULL,
	"from"			text,
	"quote""d"		text,
	"semi;colon"	text,
	PRIMARY KEY ("Key Col", "ünïcødé")
);

SELECT outcome FROM versioned_upsert('"My Schema"."Odd ""Table"" name"',
	'{"Key Col": "k 1", "ünïcødé": 1, "select": 1, "from": "f", "quote\"d": "q", "semi;colon": "s"}');
SELECT outcome FROM versioned_upsert('"My Schema"."Odd ""Table"" name"',
	'{"Key Col": "k 1", "ünïcødé": 1, "select": 2, "quote\"d": "q2"}');
SELECT outcome FROM versioned_upsert('"My Schema"."Odd ""Table"" name"',
	'{"Key Col": "k 1", "ünïcødé": 1, "select": 1, "from": "late"}');
SELECT * FROM "My Schema"."Odd ""Table"" name";
SELECT target, key, outcome FROM event_log ORDER BY event_id;

-- Mixed case is exact: "key col" is not "Key Col".
SELECT versioned_upsert('"My Schema"."Odd ""Table"" name"',
	'{"key col": "k", "ünïcødé": 1, "select": 3}');

-- A JSON key that tries to inject SQL is just an unknown column.
CREATE TABLE victim (id int PRIMARY KEY, v rowseq);
SELECT versioned_upsert('victim', '{"id": 1, "v": 1, "v\" = 0; DROP TABLE victim; --": 1}');
SELECT versioned_upsert('victim', '{"id": 1, "v": 1, ") VALUES (1,1); DROP TABLE victim; --": 1}');
-- Values are never SQL either.
SELECT outcome FROM versioned_upsert('victim', '{"id": 1, "v": 1}');
CREATE TABLE victim_text (id text PRIMARY KEY, v rowseq, note text);
SELECT outcome FROM versioned_upsert('victim_text',
	'{"id": "x''); DROP TABLE victim; --", "v": 1, "note": "''; DROP TABLE victim; --"}');
SELECT * FROM victim_text;
SELECT count(*) AS victim_still_there FROM victim;

-- A search_path that puts a hostile schema first changes nothing: every
-- name versioned_upsert() uses is schema-qualified.
CREATE SCHEMA hostile;
CREATE FUNCTION hostile.to_jsonb(anyelement) RETURNS jsonb
	LANGUAGE sql AS $$ SELECT '"hijacked"'::jsonb $$;
CREATE FUNCTION hostile.jsonb_to_record(jsonb) RETURNS record
	LANGUAGE sql AS $$ SELECT NULL::record $$;
CREATE TABLE hostile.victim (id int PRIMARY KEY, v rowseq);
SET search_path = hostile, identifiers, upsert_order, pg_catalog;
SELECT outcome FROM upsert_order.versioned_upsert('identifiers.victim_text', '{"id": "y", "v": 1, "note": "n"}');
SELECT data FROM upsert_order.event_log WHERE key = '{"id": "y"}';
RESET search_path;
SET search_path = identifiers, upsert_order;
SELECT count(*) AS hostile_rows FROM hostile.victim;

-- Temporary tables of this session work (those of other sessions are
-- refused: see the concurrent_temp_table isolation spec).
CREATE TEMP TABLE scratch (id int PRIMARY KEY, v rowseq);
SELECT outcome FROM versioned_upsert('scratch', '{"id": 1, "v": 1}');
SELECT outcome FROM versioned_upsert('pg_temp.scratch', '{"id": 1, "v": 2}');
SELECT * FROM scratch;
