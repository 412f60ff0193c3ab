-- Every outcome of versioned_upsert(), what it stores and what it logs.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS upsert_order CASCADE;
DROP SCHEMA IF EXISTS outcomes CASCADE;
CREATE EXTENSION upsert_order;
RESET client_min_messages;
CREATE SCHEMA outcomes;
SET search_path = outcomes, upsert_order;

CREATE TABLE item (
	id		int PRIMARY KEY,
	ver		rowseq NOT NULL,
	name	text,
	qty		int DEFAULT 7,
	tags	text[],
	attrs	jsonb,
	born	date
);

-- No row with that key: inserted; defaults fill absent columns.
SELECT * FROM versioned_upsert('item', '{"id": 1, "ver": 10, "name": "first"}');
-- Newer: updated; absent columns keep their stored values.
UPDATE item SET qty = 99 WHERE id = 1;
SELECT * FROM versioned_upsert('item', '{"id": 1, "ver": 20, "name": "second"}');
SELECT id, ver, name, qty FROM item;
-- Same version: duplicate, nothing changes.
SELECT * FROM versioned_upsert('item', '{"id": 1, "ver": 20, "name": "retry"}');
-- Older: stale, nothing changes.
SELECT * FROM versioned_upsert('item', '{"id": 1, "ver": 15, "name": "late"}');
SELECT id, ver, name, qty FROM item;
-- Explicit nulls are values: they overwrite on update.
SELECT * FROM versioned_upsert('item', '{"id": 1, "ver": 30, "name": null}');
SELECT id, ver, name, qty FROM item;

-- Values go through each column's own input rules, as jsonb_populate_record does.
SELECT outcome FROM versioned_upsert('item',
	'{"id": "2", "ver": "5", "qty": "12", "tags": ["a", "b"], "attrs": {"k": [1, 2]}, "born": "2026-01-31"}');
SELECT * FROM item WHERE id = 2;
-- A string key and a number key are the same key.
SELECT outcome FROM versioned_upsert('item', '{"id": 2, "ver": 6}');
-- A version may be sent as a JSON number or a JSON string.
SELECT outcome, version FROM versioned_upsert('item', '{"id": 2, "ver": "7"}');

-- Missing or null version: the server assigns rowseq_now(), newer than any stamp before.
SELECT outcome, version > '117000000000000000'::rowseq AS is_server_stamp, version = stored_version AS stored
FROM versioned_upsert('item', '{"id": 3, "name": "stamped"}');
SELECT outcome, version > (SELECT ver FROM item WHERE id = 3) AS newer
FROM versioned_upsert('item', '{"id": 3, "ver": null, "name": "stamped again"}');
SELECT name FROM item WHERE id = 3;

-- A call inside a transaction that rolls back leaves no row and no event.
SELECT count(*) AS events_before FROM event_log \gset
BEGIN;
SELECT outcome FROM versioned_upsert('item', '{"id": 4, "ver": 1}');
SELECT outcome FROM versioned_upsert('item', '{"id": 1, "ver": 1000}');
ROLLBACK;
SELECT count(*) = :events_before AS no_new_events FROM event_log;
SELECT count(*) AS rows_for_4 FROM item WHERE id = 4;
SELECT ver FROM item WHERE id = 1;

-- A savepoint rolled back takes its events with it.
BEGIN;
SELECT outcome FROM versioned_upsert('item', '{"id": 5, "ver": 1}');
SAVEPOINT s;
SELECT outcome FROM versioned_upsert('item', '{"id": 5, "ver": 2}');
ROLLBACK TO SAVEPOINT s;
SELECT outcome FROM versioned_upsert('item', '{"id": 5, "ver": 3}');
COMMIT;
SELECT key, version, outcome FROM event_log WHERE key = '{"id": 5}' ORDER BY event_id;

-- The event log: one row per call, key normalised, payload as sent, data as stored.
SELECT event_id, target, key, version, outcome, payload, data
FROM event_log WHERE key IN ('{"id": 1}', '{"id": 2}') ORDER BY event_id;
-- result.event_id names the logged row.
SELECT (versioned_upsert('item', '{"id": 6, "ver": 1}')).event_id AS eid \gset
SELECT key, version, outcome FROM event_log WHERE event_id = :eid;
-- For one key, applied events have strictly increasing versions in event_id order.
SELECT key, bool_and(version > prev) AS increasing
FROM (SELECT key, version, lag(version) OVER (PARTITION BY key ORDER BY event_id) AS prev
      FROM event_log WHERE outcome IN ('inserted', 'updated')) t
WHERE prev IS NOT NULL GROUP BY key ORDER BY key::text;

-- A composite primary key, reported in key order.
CREATE TABLE pair (a text, b int, v rowseq, note text, PRIMARY KEY (b, a));
SELECT outcome FROM versioned_upsert('pair', '{"a": "x", "b": 1, "v": 1, "note": "one"}');
SELECT outcome FROM versioned_upsert('pair', '{"a": "x", "b": 2, "v": 1, "note": "two"}');
SELECT outcome FROM versioned_upsert('pair', '{"b": 1, "a": "x", "v": 2}');
SELECT * FROM pair ORDER BY b;
SELECT key, outcome FROM event_log WHERE target = 'pair'::regclass ORDER BY event_id;

-- Keys are logged as to_jsonb() writes their values, whatever form the
-- sender used and whatever the session's DateStyle: a date in ISO form, a
-- float as a number, on the direct path (every column) and the statement path.
CREATE TABLE daily (day date, rate float8, v rowseq, note text, PRIMARY KEY (day, rate));
SELECT outcome FROM versioned_upsert('daily', '{"day": "2026-01-31", "rate": 1.5, "v": 1, "note": "a"}');
SET DateStyle = 'SQL, DMY';
SELECT outcome FROM versioned_upsert('daily', '{"day": "31/01/2026", "rate": "1.50", "v": 2, "note": "b"}');
SELECT outcome FROM versioned_upsert('daily', '{"day": "2026-01-31", "rate": 1.5, "v": 3}');
SELECT outcome FROM versioned_upsert_batch('daily', '[{"day": "2026-02-01", "rate": 2, "v": 1}]');
SELECT key, version, outcome, key = to_jsonb(d) - 'v' - 'note' AS as_to_jsonb
FROM event_log e JOIN daily d ON d.day = (e.key->>'day')::date AND d.rate = (e.key->>'rate')::float8
WHERE target = 'daily'::regclass ORDER BY event_id;
RESET DateStyle;

-- A version column that allows NULL: a stored NULL is older than any version.
CREATE TABLE loose (id int PRIMARY KEY, v rowseq, x int);
INSERT INTO loose VALUES (1, NULL, 0);
SELECT applied, outcome, stored_version FROM versioned_upsert('loose', '{"id": 1, "v": 1, "x": 1}');
-- A BEFORE trigger that sets the version to NULL: the message is skipped
-- against a stored version, and updates a stored NULL, as any message does.
CREATE FUNCTION null_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.x < 0 THEN NEW.v := NULL; END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER null_version BEFORE INSERT OR UPDATE ON loose
	FOR EACH ROW EXECUTE FUNCTION null_version();
SELECT applied, outcome, version, stored_version FROM versioned_upsert('loose', '{"id": 1, "v": 2, "x": -1}');
INSERT INTO loose VALUES (2, NULL, 0);
SELECT applied, outcome, version, stored_version FROM versioned_upsert('loose', '{"id": 2, "v": 2, "x": -2}');
SELECT applied, outcome, version, stored_version FROM versioned_upsert('loose', '{"id": 2, "v": 2, "x": -3}');
SELECT * FROM loose ORDER BY id;
SELECT e.key, e.version, e.outcome, e.data FROM event_log e
WHERE e.target = 'loose'::regclass ORDER BY e.event_id;

-- Hybrid-clock stamps and plain counters compare as integers.
SELECT outcome FROM versioned_upsert('item', jsonb_build_object('id', 7, 'ver', rowseq('2026-01-01', 0)));
SELECT outcome FROM versioned_upsert('item', jsonb_build_object('id', 7, 'ver', rowseq('2026-01-01', 1)));
SELECT outcome FROM versioned_upsert('item', jsonb_build_object('id', 7, 'ver', rowseq('2025-12-31 23:59:59.999', 65535)));

-- The result is a composite that can be expanded or kept whole.
SELECT (versioned_upsert('item', '{"id": 8, "ver": 1}')).outcome;
SELECT pg_typeof(versioned_upsert('item', '{"id": 8, "ver": 2}'));

-- Domains: a version column of a domain over rowseq, a key of a domain type;
-- their constraints are checked as for any INSERT.
\set SHOW_CONTEXT never
CREATE DOMAIN small_version AS rowseq CHECK (VALUE < '1000');
CREATE DOMAIN sku AS text CHECK (VALUE ~ '^[A-Z]+-[0-9]+$');
CREATE TABLE product (code sku PRIMARY KEY, v small_version NOT NULL, price numeric);
SELECT outcome FROM versioned_upsert('product', '{"code": "AB-1", "v": 5, "price": 9.5}');
SELECT outcome FROM versioned_upsert('product', '{"code": "AB-1", "v": 6, "price": 9.75}');
SELECT versioned_upsert('product', '{"code": "AB-1", "v": 5000}');
SELECT versioned_upsert('product', '{"code": "lower-1", "v": 1}');
SELECT * FROM product;
SELECT key FROM event_log WHERE target = 'product'::regclass ORDER BY event_id;

-- A domain's default, once ALTER DOMAIN changed it, fills the columns that
-- the next message leaves out.  A domain over a domain took a copy of its
-- default when it was created, as for any INSERT.
CREATE DOMAIN label_text AS text DEFAULT 'first';
CREATE DOMAIN short_label AS label_text CHECK (length(VALUE) < 20);
CREATE TABLE labelled (id int PRIMARY KEY, v rowseq, a label_text, b short_label);
SELECT outcome FROM versioned_upsert('labelled', '{"id": 1, "v": 1}');
ALTER DOMAIN label_text SET DEFAULT 'second';
SELECT outcome FROM versioned_upsert('labelled', '{"id": 2, "v": 1}');
ALTER DOMAIN short_label SET DEFAULT 'third';
SELECT outcome FROM versioned_upsert_batch('labelled', '[{"id": 3, "v": 1}]');
SELECT * FROM labelled ORDER BY id;

-- Structured columns: a JSON object fills a composite, a JSON array an array
-- (of composites too); a JSON null meets a domain's NOT NULL.
CREATE TYPE point3 AS (x int, y int, z int);
CREATE DOMAIN required_text AS text NOT NULL;
CREATE TABLE shape (id int PRIMARY KEY, v rowseq, origin point3, path point3[], label required_text DEFAULT 'none', grid int[]);
SELECT outcome FROM versioned_upsert('shape',
	'{"id": 1, "v": 1, "origin": {"x": 1, "y": 2, "z": 3}, "path": [{"x": 0, "y": 0, "z": 0}, {"x": 1, "y": 1, "z": 1}], "grid": [[1, 2], [3, 4]]}');
SELECT * FROM shape;
SELECT versioned_upsert('shape', '{"id": 1, "v": 2, "label": null}');
SELECT versioned_upsert('shape', '{"id": 1, "v": 2, "origin": {"x": "one"}}');
SELECT outcome FROM versioned_upsert('shape', '{"id": 1, "v": 2, "label": "named", "grid": null}');
SELECT id, v, label, grid FROM shape;

-- Key columns take the same forms: an array key from a JSON array or its
-- text, a composite key from a JSON object or its text, on both the single
-- and the batch call; a value of the wrong shape is refused as
-- jsonb_populate_record() refuses it.
CREATE TABLE route (stops int[] PRIMARY KEY, v rowseq, note text);
SELECT outcome FROM versioned_upsert('route', '{"stops": [1, 2], "v": 1, "note": "a"}');
SELECT outcome FROM versioned_upsert('route', '{"stops": "{1,2}", "v": 2, "note": "b"}');
SELECT outcome FROM versioned_upsert_batch('route', '[{"stops": [1, 2], "v": 2}, {"stops": [[3], [4]], "v": 1}]');
SELECT versioned_upsert('route', '{"stops": {"a": 1}, "v": 3}');
SELECT versioned_upsert('route', '{"stops": [1, "x"], "v": 3}');
SELECT * FROM route ORDER BY stops;
CREATE TABLE located (at point3 PRIMARY KEY, v rowseq);
SELECT outcome FROM versioned_upsert('located', '{"at": {"x": 1, "y": 2, "z": 3}, "v": 1}');
SELECT outcome FROM versioned_upsert('located', '{"at": "(1,2,3)", "v": 1}');
SELECT versioned_upsert('located', '{"at": [1, 2, 3], "v": 2}');
SELECT * FROM located;
SELECT key, version, outcome FROM event_log WHERE target IN ('route'::regclass, 'located'::regclass) ORDER BY event_id;

-- json and jsonb columns take the JSON value itself, a scalar too, as
-- jsonb_populate_record() gives it; a JSON null is SQL NULL.  A jsonb key
-- is matched as jsonb compares, not by its text: 1, 1.0 and 1.00 are equal.
-- The event of an update logs the stored key, that of a stale message the
-- message's own.
CREATE TABLE doc (id int PRIMARY KEY, v rowseq, body jsonb, raw json);
SELECT outcome FROM versioned_upsert_batch('doc', '[
	{"id": 1, "v": 1, "body": "hello", "raw": 5},
	{"id": 2, "v": 1, "body": {"a": [1, 2]}, "raw": {"b": true}},
	{"id": 3, "v": 1, "body": null, "raw": null},
	{"id": 4, "v": 1, "body": true, "raw": "x\"y"}]');
SELECT d.id, d.body, d.raw::text, d.body IS NULL AS body_null,
	   d.body IS NOT DISTINCT FROM p.body AND d.raw::text IS NOT DISTINCT FROM p.raw::text AS as_populate_record
  FROM doc d, event_log e, jsonb_populate_record(NULL::doc, e.payload) p
 WHERE e.target = 'doc'::regclass AND (e.key->>'id')::int = d.id
 ORDER BY d.id;
CREATE TABLE keyed_by_doc (k jsonb PRIMARY KEY, v rowseq, note text);
SELECT outcome FROM versioned_upsert('keyed_by_doc', '{"k": {"a": [2], "b": 1}, "v": 1, "note": "x"}');
SELECT outcome FROM versioned_upsert('keyed_by_doc', '{"k": {"a": [2], "b": 1.0}, "v": 2, "note": "y"}');
SELECT outcome FROM versioned_upsert('keyed_by_doc', '{"k": {"a": [2.00], "b": 1}, "v": 1, "note": "z"}');
SELECT * FROM keyed_by_doc;
SELECT key, version, outcome FROM event_log WHERE target = 'keyed_by_doc'::regclass ORDER BY event_id;
