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

-- Same privileges as the single call.
SET client_min_messages = warning;
DROP ROLE IF EXISTS upsert_batch_reader;
RESET client_min_messages;
CREATE ROLE upsert_batch_reader;
GRANT SELECT ON item TO upsert_batch_reader;
SET ROLE upsert_batch_reader;
SELECT * FROM versioned_upsert_batch('item', '[{"id": 9, "ver": 1}]');
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
