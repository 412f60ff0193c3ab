/* upsert_order--1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION upsert_order" to load this file. \quit

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
	INTERNALLENGTH = 8,
	PASSEDBYVALUE,
	ALIGNMENT = double,
	STORAGE = plain,
	CATEGORY = 'N'
);
COMMENT ON TYPE @extschema@.rowseq IS
	'row version: milliseconds since 1970 in the upper 48 bits, a logical counter in the lower 16';

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

CREATE OPERATOR CLASS @extschema@.rowseq_ops
	DEFAULT FOR TYPE @extschema@.rowseq USING btree AS
		OPERATOR 1 @extschema@.<,
		OPERATOR 2 @extschema@.<=,
		OPERATOR 3 @extschema@.=,
		OPERATOR 4 @extschema@.>=,
		OPERATOR 5 @extschema@.>,
		FUNCTION 1 @extschema@.rowseq_cmp(@extschema@.rowseq, @extschema@.rowseq),
		FUNCTION 2 @extschema@.rowseq_sortsupport(internal);

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
	event_id	bigint NOT NULL DEFAULT nextval('@extschema@.event_log_event_id_seq') PRIMARY KEY,
	target		regclass NOT NULL,
	key			jsonb NOT NULL,
	version		@extschema@.rowseq NOT NULL,
	outcome		text NOT NULL CHECK (outcome IN ('inserted', 'updated', 'duplicate', 'stale', 'skipped')),
	payload		jsonb NOT NULL,
	data		jsonb,
	logged_at	timestamptz NOT NULL DEFAULT clock_timestamp()
);
ALTER SEQUENCE @extschema@.event_log_event_id_seq OWNED BY @extschema@.event_log.event_id;
COMMENT ON TABLE @extschema@.event_log IS
	'every message given to versioned_upsert(), applied or not; append-only';
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
-- notes the stored version it is shown.  Internal; harmless to call.
CREATE FUNCTION @extschema@._conflict_check(stored @extschema@.rowseq, incoming @extschema@.rowseq)
	RETURNS boolean
	AS 'MODULE_PATHNAME', 'conflict_check' LANGUAGE C VOLATILE PARALLEL UNSAFE;

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
