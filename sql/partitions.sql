-- Partitioned targets: rows are routed as INSERT ... ON CONFLICT routes them.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS upsert_order CASCADE;
DROP SCHEMA IF EXISTS partitions CASCADE;
CREATE EXTENSION upsert_order;
RESET client_min_messages;
CREATE SCHEMA partitions;
SET search_path = partitions, upsert_order;
-- Errors raised inside the statement versioned_upsert() runs carry that
-- statement as context; the tests look at the errors themselves.
\set SHOW_CONTEXT never

CREATE TABLE reading (
	region	text,
	id		int,
	ver		rowseq NOT NULL,
	value	numeric,
	PRIMARY KEY (region, id)
) PARTITION BY LIST (region);
CREATE TABLE reading_eu PARTITION OF reading FOR VALUES IN ('eu');
CREATE TABLE reading_us PARTITION OF reading FOR VALUES IN ('us')
	PARTITION BY HASH (id);
CREATE TABLE reading_us_0 PARTITION OF reading_us FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE reading_us_1 PARTITION OF reading_us FOR VALUES WITH (MODULUS 2, REMAINDER 1);

SELECT outcome FROM versioned_upsert('reading', '{"region": "eu", "id": 1, "ver": 1, "value": 1.5}');
SELECT outcome FROM versioned_upsert('reading', '{"region": "us", "id": 1, "ver": 1, "value": 2.5}');
SELECT outcome FROM versioned_upsert('reading', '{"region": "us", "id": 2, "ver": 1, "value": 3.5}');
SELECT outcome FROM versioned_upsert('reading', '{"region": "us", "id": 2, "ver": 3, "value": 4.5}');
SELECT outcome FROM versioned_upsert('reading', '{"region": "us", "id": 2, "ver": 2, "value": 0}');
SELECT outcome FROM versioned_upsert('reading', '{"region": "eu", "id": 1, "ver": 1}');
SELECT tableoid::regclass AS partition, * FROM reading ORDER BY region, id;
SELECT target, key, version, outcome FROM event_log ORDER BY event_id;

-- No partition for the row: the routing error aborts the call.
SELECT versioned_upsert('reading', '{"region": "asia", "id": 1, "ver": 1}');
SELECT count(*) AS events FROM event_log;

-- A partition can be a target of its own.
SELECT outcome FROM versioned_upsert('reading_eu', '{"region": "eu", "id": 5, "ver": 1}');
-- But a row that does not belong there is refused by the partition constraint.
SELECT versioned_upsert('reading_eu', '{"region": "us", "id": 5, "ver": 1}');

-- Attaching and detaching partitions invalidates what the call knows of the table.
CREATE TABLE reading_asia (LIKE reading INCLUDING ALL);
ALTER TABLE reading ATTACH PARTITION reading_asia FOR VALUES IN ('asia');
SELECT outcome FROM versioned_upsert('reading', '{"region": "asia", "id": 1, "ver": 1}');
ALTER TABLE reading DETACH PARTITION reading_asia;
SELECT versioned_upsert('reading', '{"region": "asia", "id": 2, "ver": 1}');
SELECT tableoid::regclass AS partition, region, id FROM reading WHERE region = 'asia';
