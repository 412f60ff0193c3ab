-- The rowseq type: text and binary I/O, ordering, opclasses, casts, clock layout.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS upsert_order CASCADE;
DROP SCHEMA IF EXISTS rowseq CASCADE;
CREATE EXTENSION upsert_order;
RESET client_min_messages;
CREATE SCHEMA rowseq;
SET search_path = rowseq, upsert_order;

-- Text I/O round-trips exactly, at both ends of the range.
SELECT '0'::rowseq, '42'::rowseq, '9223372036854775807'::rowseq;
SELECT '9223372036854775807'::rowseq::text = '9223372036854775807' AS round_trips;

-- Malformed input names the offending text.
SELECT ''::rowseq;
SELECT 'abc'::rowseq;
SELECT '-1'::rowseq;
SELECT '1e3'::rowseq;
SELECT ' 12x'::rowseq;
SELECT ' 12'::rowseq;
SELECT '+12'::rowseq;
SELECT '1.0'::rowseq;
SELECT '9223372036854775808'::rowseq;
SELECT '99999999999999999999999'::rowseq;
-- past 2^64, where the digits would wrap around to a small number
SELECT '18446744073709551616'::rowseq;
SELECT '18446744073709551620'::rowseq;
SELECT '92233720368547758070'::rowseq;

-- Casts from integers; negative values are out of range.
SELECT 5::rowseq, 5::bigint::rowseq, 9223372036854775807::bigint::rowseq;
SELECT (-1)::bigint::rowseq;
SELECT (-1)::integer::rowseq;
SELECT '77'::rowseq::bigint + 1 AS plus_one;

-- Binary send/recv round-trip through COPY BINARY.
\getenv abs_builddir PG_ABS_BUILDDIR
\set binfile :abs_builddir '/results/rowseq.bin'
\set negfile :abs_builddir '/results/rowseq_neg.bin'
CREATE TEMP TABLE bin (v rowseq);
INSERT INTO bin VALUES (0), (1), ('9223372036854775807');
COPY bin TO :'binfile' WITH (FORMAT binary);
CREATE TEMP TABLE bin2 (v rowseq);
COPY bin2 FROM :'binfile' WITH (FORMAT binary);
SELECT v FROM bin2 ORDER BY v;
-- A negative int8 on the wire is refused.
CREATE TEMP TABLE binneg (v bigint);
INSERT INTO binneg VALUES (-5);
COPY binneg TO :'negfile' WITH (FORMAT binary);
COPY bin2 FROM :'negfile' WITH (FORMAT binary);

-- Operators, totally ordered like integers.
SELECT a, b, a = b AS eq, a <> b AS ne, a < b AS lt, a <= b AS le, a > b AS gt, a >= b AS ge
FROM (VALUES ('1'::rowseq, '2'::rowseq), ('2', '2'), ('3', '2'),
             ('0', '9223372036854775807')) AS t(a, b);
-- Against integers, either side, including negative ones and the extremes.
SELECT a, b, a = b AS eq, a <> b AS ne, a < b AS lt, a <= b AS le, a > b AS gt, a >= b AS ge,
       b = a AS eq_r, b <> a AS ne_r, b < a AS lt_r, b <= a AS le_r, b > a AS gt_r, b >= a AS ge_r
FROM (VALUES ('1'::rowseq, 2::bigint), ('2', 2), ('3', 2), ('0', -1),
             ('0', -9223372036854775808), ('9223372036854775807', 9223372036854775807)) AS t(a, b);
SELECT '5'::rowseq > 4 AS int4_literal, 5 = '5'::rowseq AS int4_left, '5'::rowseq < 2::smallint AS int2;
-- A literal of no type is still read as a rowseq; a fraction is refused.
SELECT '5'::rowseq = '5' AS untyped;
SELECT '5'::rowseq > 4.5;

-- Usable as a primary key, in ORDER BY, DISTINCT, GROUP BY, min() and max().
CREATE TABLE seqs (v rowseq PRIMARY KEY, g int);
INSERT INTO seqs VALUES (30, 1), (10, 1), (20, 2), ('9223372036854775807', 2);
INSERT INTO seqs VALUES (10, 3);
SELECT v FROM seqs ORDER BY v DESC;
SELECT DISTINCT g % 2 AS parity, min(v), max(v) FROM seqs GROUP BY g % 2 ORDER BY 1;
SELECT count(DISTINCT v) FROM seqs;
SELECT min(v), max(v) FROM seqs;
SELECT v, count(*) FROM (SELECT v FROM seqs UNION ALL SELECT v FROM seqs) s GROUP BY v ORDER BY v;

-- Merge join and hash join both use the opclasses.
CREATE TABLE seqs2 (v rowseq);
INSERT INTO seqs2 VALUES (10), (20), (40);
SET enable_hashjoin = off; SET enable_nestloop = off;
EXPLAIN (COSTS OFF) SELECT * FROM seqs JOIN seqs2 USING (v);
SELECT v FROM seqs JOIN seqs2 USING (v) ORDER BY v;
RESET enable_hashjoin; SET enable_mergejoin = off;
EXPLAIN (COSTS OFF) SELECT * FROM seqs JOIN seqs2 USING (v);
SELECT v FROM seqs JOIN seqs2 USING (v) ORDER BY v;
RESET enable_mergejoin; RESET enable_nestloop;
-- Without the schema on the search_path: what goes through the operator
-- classes works; a comparison written in the query names an operator, and
-- needs the schema or OPERATOR().
SET search_path = rowseq;
SELECT v FROM seqs2 ORDER BY v DESC;
SELECT count(DISTINCT v) FROM seqs2;
SELECT v FROM seqs JOIN seqs2 USING (v) ORDER BY v;
SELECT count(*) FROM seqs2 WHERE v OPERATOR(upsert_order.>) '10';
SET search_path = rowseq, upsert_order;
-- A hash index works too.
CREATE INDEX ON seqs2 USING hash (v);
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT * FROM seqs2 WHERE v = '20';
SELECT * FROM seqs2 WHERE v = '20';
-- A B-tree index serves comparisons with integers, a range with both kinds.
EXPLAIN (COSTS OFF) SELECT v FROM seqs WHERE v > 15 AND v <= '30';
SELECT v FROM seqs WHERE v > 15 AND v <= '30' ORDER BY v;
SELECT v FROM seqs WHERE v = 20 OR 10 = v ORDER BY v;
SELECT v FROM seqs WHERE v >= 20 AND v > 10::bigint AND v < 9223372036854775807 ORDER BY v;
-- Arrays of integers too: the scan sorts them, or takes their least or
-- greatest element, with the family's own bigint comparisons.
EXPLAIN (COSTS OFF) SELECT v FROM seqs WHERE v = ANY (ARRAY[30, 10, 99, 10]);
SELECT v FROM seqs WHERE v = ANY (ARRAY[30, 10, 99, 10]) ORDER BY v;
SELECT v FROM seqs WHERE v = ANY ('{9223372036854775807,20}'::bigint[]) ORDER BY v;
SELECT v FROM seqs WHERE v < ANY ('{15,25}'::bigint[]) ORDER BY v;
SELECT v FROM seqs WHERE v >= ANY ('{25,9223372036854775807}'::bigint[]) ORDER BY v;
SELECT v FROM seqs WHERE v > ANY ('{-1,25}'::bigint[]) ORDER BY v;
SELECT v FROM seqs WHERE v > 15 AND v > 25::bigint AND v <= ANY ('{30,20}'::bigint[]) ORDER BY v;
RESET enable_seqscan;
-- The B-tree family is complete (every type ordered by itself and by the
-- other), the hash family too: amvalidate() reports nothing.
SELECT c.opcname, amvalidate(c.oid)
  FROM pg_opclass c JOIN pg_namespace n ON n.oid = c.opcnamespace
 WHERE n.nspname = 'upsert_order' ORDER BY 1;
-- Equal rowseqs are equal bytes, so a B-tree index deduplicates them: it is
-- as small as the same index on bigint.
CREATE TABLE dedup (r rowseq, b bigint);
INSERT INTO dedup SELECT (i % 10)::rowseq, i % 10 FROM generate_series(1, 20000) i;
CREATE INDEX dedup_r ON dedup (r);
CREATE INDEX dedup_b ON dedup (b);
SELECT pg_relation_size('dedup_r') = pg_relation_size('dedup_b') AS deduplicated_like_bigint;
DROP TABLE dedup;

-- Clock layout: upper 48 bits milliseconds since 1970, lower 16 a counter.
SELECT rowseq('1970-01-01 00:00:00+00', 0) AS epoch,
       rowseq('1970-01-01 00:00:00.001+00', 5) AS one_ms_five;
SELECT rowseq('2026-11-21 12:00:00.123456+00', 7) AS stamp,
       rowseq_time(rowseq('2026-11-21 12:00:00.123456+00', 7)) AT TIME ZONE 'UTC' AS time,
       rowseq_logical(rowseq('2026-11-21 12:00:00.123456+00', 7)) AS logical;
-- Default logical counter is 0.  With one argument the timestamp must be typed:
-- rowseq('literal') is read as a cast of the literal to rowseq.
SELECT rowseq(timestamptz '2026-11-21 12:00:00+00') = rowseq('2026-11-21 12:00:00+00', 0) AS default_zero;
SELECT rowseq('2026-11-21 12:00:00+00');
-- A plain counter is a valid rowseq too, and decomposes the same way.
SELECT rowseq_time('3'::rowseq) AT TIME ZONE 'UTC' AS time, rowseq_logical('3'::rowseq) AS logical;
-- Every value round-trips through its parts.
SELECT count(*) AS mismatches
FROM (VALUES ('0'::rowseq), ('1'), ('65535'), ('65536'), ('117654391304028160'),
             ('9223372036854775807')) AS t(v)
WHERE rowseq(rowseq_time(v), rowseq_logical(v)) <> v;
-- Out of range parts are errors.
SELECT rowseq('2026-11-21 12:00:00+00', 65536);
SELECT rowseq('2026-11-21 12:00:00+00', -1);
SELECT rowseq('1969-12-31 23:59:59+00', 0);
SELECT rowseq('infinity', 0);
SELECT rowseq('294276-12-31 23:59:59+00', 0);
SELECT rowseq('6500-01-01 00:00:00+00', 0);

-- rowseq_now(): strictly increasing, never behind the wall clock.
CREATE TEMP TABLE stamps AS
  SELECT i, clock_timestamp() AS before, rowseq_now() AS s, clock_timestamp() AS after
  FROM generate_series(1, 5000) i;
SELECT count(*) = count(DISTINCT s) AS unique_stamps FROM stamps;
SELECT bool_and(s > prev) AS strictly_increasing
FROM (SELECT s, lag(s) OVER (ORDER BY i) AS prev FROM stamps) t WHERE prev IS NOT NULL;
-- Against the clock read with each stamp, not a later statement's now(): a
-- slow machine may take seconds between the two statements.
SELECT bool_and(rowseq_time(s) >= date_trunc('milliseconds', before) - interval '1 second') AS near_wall_clock,
       bool_and(rowseq_time(s) <= after + interval '1 second') AS not_ahead
FROM stamps;
