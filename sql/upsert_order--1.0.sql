/* upsert_order--1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION upsert_order" to load this file. \quit

-- CREATE EXTENSION installs into the schema it finds under this name, whoever
-- owns it: refuse one that a role other than a superuser owns (see
-- check_install_schema() in src/extension_tables.c).
CREATE FUNCTION @extschema@._check_install_schema() RETURNS void
	AS 'MODULE_PATHNAME', 'check_install_schema' LANGUAGE C;
SELECT @extschema@._check_install_schema();
DROP FUNCTION @extschema@._check_install_schema();

-- Anyone may call the functions; what they can write is still decided by
-- their privileges on each target table.
GRANT USAGE ON SCHEMA @extschema@ TO PUBLIC;

-------------------------------------------------------------------------------
-- rowseq: a 64-bit, non-negative row version in hybrid logical clock layout.
-- Comparison, hashing and sorting reuse PostgreSQL's int8 support functions:
-- the representation is the same.
-------------------------------------------------------------------------------

CREATE TYPE @extschema@.rowseq;

CREATE FUNCTION @extschema@.rowseq_in(cstring) RETURNS @extschema@.rowseq
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.rowseq_out(@extschema@.rowseq) RETURNS cstring
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.rowseq_recv(internal) RETURNS @extschema@.rowseq
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.rowseq_send(@extschema@.rowseq) RETURNS bytea
	AS 'int8send' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE;

CREATE TYPE @extschema@.rowseq (
	INPUT = @extschema@.rowseq_in,
	OUTPUT = @extschema@.rowseq_out,
	RECEIVE = @extschema@.rowseq_recv,
	SEND = @extschema@.rowseq_send,
	-- bigint's representation (passed by value only where bigint is)
	LIKE = pg_catalog.int8,
	CATEGORY = 'N'
);
COMMENT ON TYPE @extschema@.rowseq IS
	'row version: milliseconds since 1970 in the upper 48 bits (the top one always 0), a logical counter in the lower 16';

CREATE FUNCTION @extschema@.rowseq_eq(@extschema@.rowseq, @extschema@.rowseq) RETURNS boolean
	AS 'int8eq' LANGUAGE internal IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION @extschema@.rowseq_ne(@extschema@.rowseq, @extschema@.rowseq) RETURNS boolean
	AS 'int8ne' LANGUAGE internal IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION @extschema@.rowseq_lt(@extschema@.rowseq, @extschema@.rowseq) RETURNS boolean
	AS 'int8lt' LANGUAGE internal IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION @extschema@.rowseq_le(@extschema@.rowseq, @extschema@.rowseq) RETURNS boolean
	AS 'int8le' LANGUAGE internal IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION @extschema@.rowseq_gt(@extschema@.rowseq, @extschema@.rowseq) RETURNS boolean
	AS 'int8gt' LANGUAGE internal IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION @extschema@.rowseq_ge(@extschema@.rowseq, @extschema@.rowseq) RETURNS boolean
	AS 'int8ge' LANGUAGE internal IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION @extschema@.rowseq_cmp(@extschema@.rowseq, @extschema@.rowseq) RETURNS integer
	AS 'btint8cmp' LANGUAGE internal IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION @extschema@.rowseq_sortsupport(internal) RETURNS void
	AS 'btint8sortsupport' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.rowseq_hash(@extschema@.rowseq) RETURNS integer
	AS 'hashint8' LANGUAGE internal IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION @extschema@.rowseq_hash_extended(@extschema@.rowseq, bigint) RETURNS bigint
	AS 'hashint8extended' LANGUAGE internal IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION @extschema@.rowseq_smaller(@extschema@.rowseq, @extschema@.rowseq) RETURNS @extschema@.rowseq
	AS 'int8smaller' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.rowseq_larger(@extschema@.rowseq, @extschema@.rowseq) RETURNS @extschema@.rowseq
	AS 'int8larger' LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE;

CREATE OPERATOR @extschema@.= (
	LEFTARG = @extschema@.rowseq, RIGHTARG = @extschema@.rowseq,
	FUNCTION = @extschema@.rowseq_eq, COMMUTATOR = OPERATOR(@extschema@.=),
	NEGATOR = OPERATOR(@extschema@.<>), RESTRICT = eqsel, JOIN = eqjoinsel,
	HASHES, MERGES
);
CREATE OPERATOR @extschema@.<> (
	LEFTARG = @extschema@.rowseq, RIGHTARG = @extschema@.rowseq,
	FUNCTION = @extschema@.rowseq_ne, COMMUTATOR = OPERATOR(@extschema@.<>),
	NEGATOR = OPERATOR(@extschema@.=), RESTRICT = neqsel, JOIN = neqjoinsel
);
CREATE OPERATOR @extschema@.< (
	LEFTARG = @extschema@.rowseq, RIGHTARG = @extschema@.rowseq,
	FUNCTION = @extschema@.rowseq_lt, COMMUTATOR = OPERATOR(@extschema@.>),
	NEGATOR = OPERATOR(@extschema@.>=), RESTRICT = scalarltsel, JOIN = scalarltjoinsel
);
CREATE OPERATOR @extschema@.<= (
	LEFTARG = @extschema@.rowseq, RIGHTARG = @extschema@.rowseq,
	FUNCTION = @extschema@.rowseq_le, COMMUTATOR = OPERATOR(@extschema@.>=),
	NEGATOR = OPERATOR(@extschema@.>), RESTRICT = scalarlesel, JOIN = scalarlejoinsel
);
CREATE OPERATOR @extschema@.> (
	LEFTARG = @extschema@.rowseq, RIGHTARG = @extschema@.rowseq,
	FUNCTION = @extschema@.rowseq_gt, COMMUTATOR = OPERATOR(@extschema@.<),
	NEGATOR = OPERATOR(@extschema@.<=), RESTRICT = scalargtsel, JOIN = scalargtjoinsel
);
CREATE OPERATOR @extschema@.>= (
	LEFTARG = @extschema@.rowseq, RIGHTARG = @extschema@.rowseq,
	FUNCTION = @extschema@.rowseq_ge, COMMUTATOR = OPERATOR(@extschema@.<=),
	NEGATOR = OPERATOR(@extschema@.<), RESTRICT = scalargesel, JOIN = scalargejoinsel
);

-- A version compared with an integer: ver > 100, 7 = ver.  Without these,
-- such a comparison finds no operator (the casts from integers apply on
-- assignment only).  Same representation, so int8's functions again; they
-- join the B-tree family so that an index on a rowseq column serves them.
-- The cross-type = is not marked HASHES or MERGES.
CREATE FUNCTION @extschema@.rowseq_int8_eq(@extschema@.rowseq, bigint) RETURNS boolean
	AS 'int8eq' LANGUAGE internal IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION @extschema@.rowseq_int8_ne(@extschema@.rowseq, bigint) RETURNS boolean
	AS 'int8ne' LANGUAGE internal IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION @extschema@.rowseq_int8_lt(@extschema@.rowseq, bigint) RETURNS boolean
	AS 'int8lt' LANGUAGE internal IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION @extschema@.rowseq_int8_le(@extschema@.rowseq, bigint) RETURNS boolean
	AS 'int8le' LANGUAGE internal IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION @extschema@.rowseq_int8_gt(@extschema@.rowseq, bigint) RETURNS boolean
	AS 'int8gt' LANGUAGE internal IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION @extschema@.rowseq_int8_ge(@extschema@.rowseq, bigint) RETURNS boolean
	AS 'int8ge' LANGUAGE internal IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION @extschema@.rowseq_int8_cmp(@extschema@.rowseq, bigint) RETURNS integer
	AS 'btint8cmp' LANGUAGE internal IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION @extschema@.int8_rowseq_eq(bigint, @extschema@.rowseq) RETURNS boolean
	AS 'int8eq' LANGUAGE internal IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION @extschema@.int8_rowseq_ne(bigint, @extschema@.rowseq) RETURNS boolean
	AS 'int8ne' LANGUAGE internal IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION @extschema@.int8_rowseq_lt(bigint, @extschema@.rowseq) RETURNS boolean
	AS 'int8lt' LANGUAGE internal IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION @extschema@.int8_rowseq_le(bigint, @extschema@.rowseq) RETURNS boolean
	AS 'int8le' LANGUAGE internal IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION @extschema@.int8_rowseq_gt(bigint, @extschema@.rowseq) RETURNS boolean
	AS 'int8gt' LANGUAGE internal IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION @extschema@.int8_rowseq_ge(bigint, @extschema@.rowseq) RETURNS boolean
	AS 'int8ge' LANGUAGE internal IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION @extschema@.int8_rowseq_cmp(bigint, @extschema@.rowseq) RETURNS integer
	AS 'btint8cmp' LANGUAGE internal IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE OPERATOR @extschema@.= (
	LEFTARG = @extschema@.rowseq, RIGHTARG = bigint,
	FUNCTION = @extschema@.rowseq_int8_eq, COMMUTATOR = OPERATOR(@extschema@.=),
	NEGATOR = OPERATOR(@extschema@.<>), RESTRICT = eqsel, JOIN = eqjoinsel
);
CREATE OPERATOR @extschema@.<> (
	LEFTARG = @extschema@.rowseq, RIGHTARG = bigint,
	FUNCTION = @extschema@.rowseq_int8_ne, COMMUTATOR = OPERATOR(@extschema@.<>),
	NEGATOR = OPERATOR(@extschema@.=), RESTRICT = neqsel, JOIN = neqjoinsel
);
CREATE OPERATOR @extschema@.< (
	LEFTARG = @extschema@.rowseq, RIGHTARG = bigint,
	FUNCTION = @extschema@.rowseq_int8_lt, COMMUTATOR = OPERATOR(@extschema@.>),
	NEGATOR = OPERATOR(@extschema@.>=), RESTRICT = scalarltsel, JOIN = scalarltjoinsel
);
CREATE OPERATOR @extschema@.<= (
	LEFTARG = @extschema@.rowseq, RIGHTARG = bigint,
	FUNCTION = @extschema@.rowseq_int8_le, COMMUTATOR = OPERATOR(@extschema@.>=),
	NEGATOR = OPERATOR(@extschema@.>), RESTRICT = scalarlesel, JOIN = scalarlejoinsel
);
CREATE OPERATOR @extschema@.> (
	LEFTARG = @extschema@.rowseq, RIGHTARG = bigint,
	FUNCTION = @extschema@.rowseq_int8_gt, COMMUTATOR = OPERATOR(@extschema@.<),
	NEGATOR = OPERATOR(@extschema@.<=), RESTRICT = scalargtsel, JOIN = scalargtjoinsel
);
CREATE OPERATOR @extschema@.>= (
	LEFTARG = @extschema@.rowseq, RIGHTARG = bigint,
	FUNCTION = @extschema@.rowseq_int8_ge, COMMUTATOR = OPERATOR(@extschema@.<=),
	NEGATOR = OPERATOR(@extschema@.<), RESTRICT = scalargesel, JOIN = scalargejoinsel
);
CREATE OPERATOR @extschema@.= (
	LEFTARG = bigint, RIGHTARG = @extschema@.rowseq,
	FUNCTION = @extschema@.int8_rowseq_eq, COMMUTATOR = OPERATOR(@extschema@.=),
	NEGATOR = OPERATOR(@extschema@.<>), RESTRICT = eqsel, JOIN = eqjoinsel
);
CREATE OPERATOR @extschema@.<> (
	LEFTARG = bigint, RIGHTARG = @extschema@.rowseq,
	FUNCTION = @extschema@.int8_rowseq_ne, COMMUTATOR = OPERATOR(@extschema@.<>),
	NEGATOR = OPERATOR(@extschema@.=), RESTRICT = neqsel, JOIN = neqjoinsel
);
CREATE OPERATOR @extschema@.< (
	LEFTARG = bigint, RIGHTARG = @extschema@.rowseq,
	FUNCTION = @extschema@.int8_rowseq_lt, COMMUTATOR = OPERATOR(@extschema@.>),
	NEGATOR = OPERATOR(@extschema@.>=), RESTRICT = scalarltsel, JOIN = scalarltjoinsel
);
CREATE OPERATOR @extschema@.<= (
	LEFTARG = bigint, RIGHTARG = @extschema@.rowseq,
	FUNCTION = @extschema@.int8_rowseq_le, COMMUTATOR = OPERATOR(@extschema@.>=),
	NEGATOR = OPERATOR(@extschema@.>), RESTRICT = scalarlesel, JOIN = scalarlejoinsel
);
CREATE OPERATOR @extschema@.> (
	LEFTARG = bigint, RIGHTARG = @extschema@.rowseq,
	FUNCTION = @extschema@.int8_rowseq_gt, COMMUTATOR = OPERATOR(@extschema@.<),
	NEGATOR = OPERATOR(@extschema@.<=), RESTRICT = scalargtsel, JOIN = scalargtjoinsel
);
CREATE OPERATOR @extschema@.>= (
	LEFTARG = bigint, RIGHTARG = @extschema@.rowseq,
	FUNCTION = @extschema@.int8_rowseq_ge, COMMUTATOR = OPERATOR(@extschema@.<=),
	NEGATOR = OPERATOR(@extschema@.<), RESTRICT = scalargesel, JOIN = scalargejoinsel
);

-- A B-tree family with cross-type operators must also order each of its
-- types by itself: an index scan for ver = ANY ('{1,2}'::bigint[]) sorts the
-- array with the family's bigint-to-bigint comparison, and one for
-- ver < ANY (...) picks the array's greatest element with its > operator.
-- bigint's own operators cannot be the family's: an operator in two B-tree
-- families is planned with both, and equalities of bigints would no longer
-- match those between bigint and integer.  These are the same comparisons
-- under names of their own, as text_pattern_ops has ~<~ and ~>~.
CREATE OPERATOR @extschema@.~<~ (
	LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = pg_catalog.int8lt,
	COMMUTATOR = OPERATOR(@extschema@.~>~), NEGATOR = OPERATOR(@extschema@.~>=~),
	RESTRICT = scalarltsel, JOIN = scalarltjoinsel
);
CREATE OPERATOR @extschema@.~<=~ (
	LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = pg_catalog.int8le,
	COMMUTATOR = OPERATOR(@extschema@.~>=~), NEGATOR = OPERATOR(@extschema@.~>~),
	RESTRICT = scalarlesel, JOIN = scalarlejoinsel
);
CREATE OPERATOR @extschema@.~=~ (
	LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = pg_catalog.int8eq,
	COMMUTATOR = OPERATOR(@extschema@.~=~),
	RESTRICT = eqsel, JOIN = eqjoinsel
);
CREATE OPERATOR @extschema@.~>=~ (
	LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = pg_catalog.int8ge,
	COMMUTATOR = OPERATOR(@extschema@.~<=~), NEGATOR = OPERATOR(@extschema@.~<~),
	RESTRICT = scalargesel, JOIN = scalargejoinsel
);
CREATE OPERATOR @extschema@.~>~ (
	LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = pg_catalog.int8gt,
	COMMUTATOR = OPERATOR(@extschema@.~<~), NEGATOR = OPERATOR(@extschema@.~<=~),
	RESTRICT = scalargtsel, JOIN = scalargtjoinsel
);

CREATE OPERATOR CLASS @extschema@.rowseq_ops
	DEFAULT FOR TYPE @extschema@.rowseq USING btree AS
		OPERATOR 1 @extschema@.<,
		OPERATOR 2 @extschema@.<=,
		OPERATOR 3 @extschema@.=,
		OPERATOR 4 @extschema@.>=,
		OPERATOR 5 @extschema@.>,
		FUNCTION 1 @extschema@.rowseq_cmp(@extschema@.rowseq, @extschema@.rowseq),
		FUNCTION 2 @extschema@.rowseq_sortsupport(internal),
		-- equal values are equal bytes: B-tree indexes may deduplicate
		FUNCTION 4 pg_catalog.btequalimage(oid);

ALTER OPERATOR FAMILY @extschema@.rowseq_ops USING btree ADD
	OPERATOR 1 @extschema@.< (@extschema@.rowseq, bigint),
	OPERATOR 2 @extschema@.<= (@extschema@.rowseq, bigint),
	OPERATOR 3 @extschema@.= (@extschema@.rowseq, bigint),
	OPERATOR 4 @extschema@.>= (@extschema@.rowseq, bigint),
	OPERATOR 5 @extschema@.> (@extschema@.rowseq, bigint),
	FUNCTION 1 @extschema@.rowseq_int8_cmp(@extschema@.rowseq, bigint),
	OPERATOR 1 @extschema@.< (bigint, @extschema@.rowseq),
	OPERATOR 2 @extschema@.<= (bigint, @extschema@.rowseq),
	OPERATOR 3 @extschema@.= (bigint, @extschema@.rowseq),
	OPERATOR 4 @extschema@.>= (bigint, @extschema@.rowseq),
	OPERATOR 5 @extschema@.> (bigint, @extschema@.rowseq),
	FUNCTION 1 @extschema@.int8_rowseq_cmp(bigint, @extschema@.rowseq),
	OPERATOR 1 @extschema@.~<~ (bigint, bigint),
	OPERATOR 2 @extschema@.~<=~ (bigint, bigint),
	OPERATOR 3 @extschema@.~=~ (bigint, bigint),
	OPERATOR 4 @extschema@.~>=~ (bigint, bigint),
	OPERATOR 5 @extschema@.~>~ (bigint, bigint),
	FUNCTION 1 pg_catalog.btint8cmp(bigint, bigint);

CREATE OPERATOR CLASS @extschema@.rowseq_hash_ops
	DEFAULT FOR TYPE @extschema@.rowseq USING hash AS
		OPERATOR 1 @extschema@.=,
		FUNCTION 1 @extschema@.rowseq_hash(@extschema@.rowseq),
		FUNCTION 2 @extschema@.rowseq_hash_extended(@extschema@.rowseq, bigint);

CREATE AGGREGATE @extschema@.min(@extschema@.rowseq) (
	SFUNC = @extschema@.rowseq_smaller, STYPE = @extschema@.rowseq,
	SORTOP = OPERATOR(@extschema@.<), COMBINEFUNC = @extschema@.rowseq_smaller,
	PARALLEL = SAFE
);
CREATE AGGREGATE @extschema@.max(@extschema@.rowseq) (
	SFUNC = @extschema@.rowseq_larger, STYPE = @extschema@.rowseq,
	SORTOP = OPERATOR(@extschema@.>), COMBINEFUNC = @extschema@.rowseq_larger,
	PARALLEL = SAFE
);

-- Casts.  Integers become versions on assignment (so INSERT ... VALUES (1, 5)
-- works); negative values are refused.  A rowseq always fits in a bigint.
CREATE FUNCTION @extschema@.rowseq(bigint) RETURNS @extschema@.rowseq
	AS 'MODULE_PATHNAME', 'rowseq_from_int8' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.rowseq(integer) RETURNS @extschema@.rowseq
	AS 'MODULE_PATHNAME', 'rowseq_from_int4' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE CAST (bigint AS @extschema@.rowseq)
	WITH FUNCTION @extschema@.rowseq(bigint) AS ASSIGNMENT;
CREATE CAST (integer AS @extschema@.rowseq)
	WITH FUNCTION @extschema@.rowseq(integer) AS ASSIGNMENT;
CREATE CAST (@extschema@.rowseq AS bigint) WITHOUT FUNCTION AS ASSIGNMENT;

-- The clock layout.
CREATE FUNCTION @extschema@.rowseq(ts timestamptz, logical integer DEFAULT 0)
	RETURNS @extschema@.rowseq
	AS 'MODULE_PATHNAME', 'rowseq_make' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.rowseq(timestamptz, integer) IS
	'the rowseq of a time (to the millisecond) and a logical counter (0 to 65535)';
CREATE FUNCTION @extschema@.rowseq_time(@extschema@.rowseq) RETURNS timestamptz
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.rowseq_logical(@extschema@.rowseq) RETURNS integer
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.rowseq_now() RETURNS @extschema@.rowseq
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE STRICT PARALLEL RESTRICTED;
COMMENT ON FUNCTION @extschema@.rowseq_now() IS
	'a server stamp, greater than every stamp this server handed out before';

-------------------------------------------------------------------------------
-- event_log: one row per message, applied or not.  Written by
-- versioned_upsert() as the owner of this table; nobody else gets to write
-- it.  Grant SELECT to the roles that may read it.
-------------------------------------------------------------------------------

CREATE SEQUENCE @extschema@.event_log_event_id_seq;

CREATE TABLE @extschema@.event_log (
	event_id	bigint NOT NULL DEFAULT pg_catalog.nextval('@extschema@.event_log_event_id_seq'::pg_catalog.regclass) PRIMARY KEY,
	target		regclass NOT NULL,
	key			jsonb NOT NULL,
	version		@extschema@.rowseq NOT NULL,
	outcome		text NOT NULL,
	payload		jsonb NOT NULL,
	data		jsonb,
	logged_at	timestamptz NOT NULL DEFAULT clock_timestamp()
);
ALTER SEQUENCE @extschema@.event_log_event_id_seq OWNED BY @extschema@.event_log.event_id;
COMMENT ON TABLE @extschema@.event_log IS
	'every message given to versioned_upsert(), applied or not; append-only';
-- No CHECK on outcome: only the extension writes this table, and a CHECK
-- would be re-read from the catalog for every event it writes.
COMMENT ON COLUMN @extschema@.event_log.outcome IS
	'inserted, updated, duplicate, stale or skipped';
COMMENT ON COLUMN @extschema@.event_log.data IS
	'the row as stored by this event (inserted and updated only)';

REVOKE ALL ON @extschema@.event_log FROM PUBLIC;
REVOKE ALL ON SEQUENCE @extschema@.event_log_event_id_seq FROM PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('@extschema@.event_log', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.event_log_event_id_seq', '');

-------------------------------------------------------------------------------
-- versioned_upsert
-------------------------------------------------------------------------------

CREATE TYPE @extschema@.upsert_result AS (
	applied			boolean,
	outcome			text,
	version			@extschema@.rowseq,
	stored_version	@extschema@.rowseq,
	event_id		bigint
);

-- The WHERE clause of the ON CONFLICT statement versioned_upsert() runs:
-- notes the stored version it is shown, and the table and TID of that row
-- version, when given the running call's token, a random number only that
-- statement knows.  Internal; called elsewhere it only compares its first
-- two arguments.  That statement runs as the caller of versioned_upsert(),
-- so this function and _event_id() must stay executable by every such caller.
CREATE FUNCTION @extschema@._conflict_check(stored @extschema@.rowseq, incoming @extschema@.rowseq, token bigint,
											stored_table oid DEFAULT NULL, stored_tid tid DEFAULT NULL)
	RETURNS boolean
	AS 'MODULE_PATHNAME', 'conflict_check' LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- In the RETURNING list of that statement: takes the event_id of the call's
-- event once its row is written, before the statement's AFTER triggers run,
-- so that a call those triggers make logs its event after this one.  Given
-- anything but the running call's token it returns NULL and takes nothing.
CREATE FUNCTION @extschema@._event_id(token bigint)
	RETURNS bigint
	AS 'MODULE_PATHNAME', 'event_id_for_statement' LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION @extschema@.versioned_upsert(target regclass, new_row jsonb)
	RETURNS @extschema@.upsert_result
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY INVOKER;
COMMENT ON FUNCTION @extschema@.versioned_upsert(regclass, jsonb) IS
	'insert or update a row only when new_row carries a newer version; log the message either way';

CREATE FUNCTION @extschema@.versioned_upsert_batch(target regclass, rows jsonb)
	RETURNS SETOF @extschema@.upsert_result
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY INVOKER ROWS 100;
COMMENT ON FUNCTION @extschema@.versioned_upsert_batch(regclass, jsonb) IS
	'versioned_upsert() for each element of a JSON array, in order, in one statement';

-------------------------------------------------------------------------------
-- publisher: a background worker (shared_preload_libraries) that notifies
-- every committed applied event through LISTEN/NOTIFY, in order, exactly once.
--
-- versioned_upsert() queues each applied event in outbox, in the writer's
-- transaction; the worker moves it to publication with the next seq and
-- notifies it, in one transaction of its own.  Only the database named by
-- upsert_order.database is published.
--
-- Privileges: the three tables are written by the extension only.  To let a
-- role catch up with events_since(), GRANT SELECT ON upsert_order.publication.
-- NOTIFY itself has no privileges: any role that can connect to the database
-- can LISTEN, and so read every notified row; publish_data() keeps a table's
-- rows out of its notifications.
-------------------------------------------------------------------------------

-- Applied events not yet published, by event_id.  A queue: rows come and go
-- all the time, so it is vacuumed often.
CREATE TABLE @extschema@.outbox (
	event_id	bigint PRIMARY KEY
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);
COMMENT ON TABLE @extschema@.outbox IS
	'applied events waiting to be notified by the publisher worker';

-- Every notification sent, by seq: gapless from 1, one per applied event.
-- A row goes with its event when a purge deletes it, except the newest: the
-- next seq is max(seq) + 1, and events_since() shows a listener that asks
-- for what was purged the jump to it.  That row stays with a null event_id
-- (the event_id may be handed out again, after a setval) until a later
-- purge finds a newer one.  payload is json, the text sent as it was sent
-- (in jsonb's form, so that events_since() gives the same text back): a
-- jsonb column would cost the worker a second copy of every payload.
CREATE TABLE @extschema@.publication (
	seq			bigint PRIMARY KEY,
	event_id	bigint UNIQUE,
	channel		text NOT NULL,
	payload		json NOT NULL,
	published_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX publication_event_purged ON @extschema@.publication (seq) WHERE event_id IS NULL;
COMMENT ON TABLE @extschema@.publication IS
	'the notifications sent by the publisher worker, in seq order';

-- Per-target settings, set with configure() and publish_data(); a target
-- has a row only while one of them differs from its default.  configure()
-- checks the name; a bad one written here directly stops the publisher,
-- which reports the error in publisher_status and retries until it is fixed.
CREATE TABLE @extschema@.target_settings (
	target		regclass PRIMARY KEY,
	channel		text,			-- null: upsert_order.channel
	publish_data boolean		-- null: unless the table has row level security
);
COMMENT ON TABLE @extschema@.target_settings IS
	'channel of each target that does not use upsert_order.channel, and whether its notifications carry the row';

REVOKE ALL ON @extschema@.outbox FROM PUBLIC;
REVOKE ALL ON @extschema@.publication FROM PUBLIC;
REVOKE ALL ON @extschema@.target_settings FROM PUBLIC;

-- pg_dump keeps what is waiting, what was published and the settings, so a
-- restored database goes on with the next seq.
SELECT pg_catalog.pg_extension_config_dump('@extschema@.outbox', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.publication', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.target_settings', '');

-- SECURITY INVOKER, but it writes target_settings as that table's owner after
-- checking that the caller owns target (see publisher_api.c).
-- Not executable by PUBLIC: a channel is shared by the listeners of every
-- table sent on it, and the commit of a change waits for the worker's batch
-- and holds up the next one (see publisher_api.c), so a superuser chooses
-- the roles that may change settings.
CREATE FUNCTION @extschema@.configure(target regclass, channel text)
	RETURNS void
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY INVOKER;
COMMENT ON FUNCTION @extschema@.configure(regclass, text) IS
	'notify the applied events of target on channel (null: back to upsert_order.channel); for the owner of target';
REVOKE ALL ON FUNCTION @extschema@.configure(regclass, text) FROM PUBLIC;

-- Whether the notifications of target's events carry the row ("data"), or
-- leave it out ("data_omitted": true) for listeners to read it by key, with
-- their own privileges and under row level security.  By default they carry
-- it unless the table has row level security enabled.  Checked and written
-- like configure(), and not executable by PUBLIC for the same reason: the
-- commit of a change waits for the worker's batch, and holds up the next
-- one until it is done, so a superuser chooses the roles that may change
-- settings.
CREATE FUNCTION @extschema@.publish_data(target regclass, publish boolean)
	RETURNS void
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY INVOKER;
COMMENT ON FUNCTION @extschema@.publish_data(regclass, boolean) IS
	'whether the notifications of target carry the row (null: back to the default, true unless it has row level security); for the owner of target';
REVOKE ALL ON FUNCTION @extschema@.publish_data(regclass, boolean) FROM PUBLIC;

-- A dropped table's settings are forgotten with it, so that a table given
-- the same OID later does not inherit them.  The function deletes as the
-- owner of target_settings (see publisher_api.c); it is not meant to be
-- called.  The trigger fires ALWAYS: a session with session_replication_role
-- = replica (a replication tool's, a restore's) drops tables too, and
-- settings it left behind would go to the next table that gets the OID.
CREATE FUNCTION @extschema@._forget_dropped_targets()
	RETURNS event_trigger
	AS 'MODULE_PATHNAME', 'forget_dropped_targets' LANGUAGE C SECURITY INVOKER;
REVOKE ALL ON FUNCTION @extschema@._forget_dropped_targets() FROM PUBLIC;
CREATE EVENT TRIGGER upsert_order_forget_dropped_targets ON sql_drop
	EXECUTE FUNCTION @extschema@._forget_dropped_targets();
ALTER EVENT TRIGGER upsert_order_forget_dropped_targets ENABLE ALWAYS;

-- Catch-up after a reconnect: LISTEN first, then read what was published
-- after the last seq received; skip notifications already read here.  The
-- payloads are those notified, byte for byte once cast to text.  Null
-- after_seq reads from the start, null max_events reads everything.  The
-- body runs with the caller's search_path (a SET clause would keep it from
-- being inlined), so it names pg_catalog's type and operator.
CREATE FUNCTION @extschema@.events_since(after_seq bigint, max_events integer DEFAULT 1000)
	RETURNS TABLE (seq bigint, channel text, payload jsonb)
	LANGUAGE sql STABLE PARALLEL SAFE SECURITY INVOKER
	AS $$
		SELECT p.seq, p.channel, p.payload::pg_catalog.jsonb
		  FROM ONLY @extschema@.publication p
		 WHERE p.seq OPERATOR(pg_catalog.>) coalesce(after_seq, 0)
		 ORDER BY p.seq
		 LIMIT max_events
	$$;
COMMENT ON FUNCTION @extschema@.events_since(bigint, integer) IS
	'the notifications published after after_seq, in seq order (needs SELECT on publication)';

-- SECURITY INVOKER, but it deletes as the owner of event_log: nobody else may
-- delete events, and this function never deletes one still waiting to be
-- published (see src/event_purge.c).
CREATE FUNCTION @extschema@.purge_events(older_than interval)
	RETURNS bigint
	AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY INVOKER;
COMMENT ON FUNCTION @extschema@.purge_events(interval) IS
	'delete the events logged more than older_than ago, and their publication rows (but the last), except those waiting to be published or published less than older_than ago; returns how many';
REVOKE ALL ON FUNCTION @extschema@.purge_events(interval) FROM PUBLIC;

-- The worker's own state, from shared memory.  Internal: use publisher_status.
CREATE FUNCTION @extschema@._publisher_state(OUT worker_pid integer, OUT last_seq bigint, OUT last_error text)
	RETURNS record
	AS 'MODULE_PATHNAME', 'publisher_state' LANGUAGE C VOLATILE PARALLEL RESTRICTED;
REVOKE ALL ON FUNCTION @extschema@._publisher_state() FROM PUBLIC;

-- An ordinary (not security_invoker) view, so that monitoring roles see the
-- counts without being able to read the events themselves.  last_seq is the
-- last seq notified; events_waiting those committed but not yet notified.
-- Each waiting event's logged_at is one probe of event_log by its key, not
-- a join: planned on statistics taken before a burst, a join could read all
-- of event_log, or all of its index for every waiting event.
CREATE VIEW @extschema@.publisher_status AS
	SELECT s.worker_pid,
		   coalesce(s.last_seq, (SELECT max(p.seq) FROM ONLY @extschema@.publication p), 0) AS last_seq,
		   (SELECT count(*) FROM ONLY @extschema@.outbox) AS events_waiting,
		   (SELECT pg_catalog.clock_timestamp() - min((SELECT e.logged_at FROM ONLY @extschema@.event_log e
									WHERE e.event_id = o.event_id))
			  FROM ONLY @extschema@.outbox o) AS oldest_waiting_age,
		   s.last_error
	  FROM @extschema@._publisher_state() s;
COMMENT ON VIEW @extschema@.publisher_status IS
	'the publisher worker: its pid (null when not running), the last seq notified, the events waiting and the last error';
REVOKE ALL ON @extschema@.publisher_status FROM PUBLIC;
GRANT SELECT ON @extschema@.publisher_status TO pg_monitor;
GRANT EXECUTE ON FUNCTION @extschema@._publisher_state() TO pg_monitor;
