/*-------------------------------------------------------------------------
 *
 * rowseq.c
 *	  The rowseq data type: a non-negative 64-bit row version laid out as a
 *	  hybrid logical clock (milliseconds since the Unix epoch in the upper
 *	  48 bits, whose top bit is always 0, a logical counter in the lower 16).
 *
 * Comparison, hashing and sorting reuse PostgreSQL's int8 support functions
 * (the representation is identical), so only input, output, the casts that
 * must reject negative values and the clock helpers live here.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "common/int.h"
#include "datatype/timestamp.h"
#include "libpq/pqformat.h"
#include "utils/builtins.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "upsert_order.h"

/* Microseconds between the Unix epoch and PostgreSQL's 2000-01-01 epoch */
#define UNIX_TO_PG_EPOCH_USECS \
	((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY)

PG_FUNCTION_INFO_V1(rowseq_in);
PG_FUNCTION_INFO_V1(rowseq_out);
PG_FUNCTION_INFO_V1(rowseq_recv);
PG_FUNCTION_INFO_V1(rowseq_from_int8);
PG_FUNCTION_INFO_V1(rowseq_from_int4);
PG_FUNCTION_INFO_V1(rowseq_make);
PG_FUNCTION_INFO_V1(rowseq_time);
PG_FUNCTION_INFO_V1(rowseq_logical);

/*
 * Parse the text form of a rowseq: decimal digits only.  Signs, spaces,
 * exponents and fractions are refused rather than silently normalised,
 * because a version that changes meaning on the way in is worse than none.
 * Errors name the value as "shown": the text itself, unless the caller has
 * a shorter spelling of the same value (see version_from_number()).
 */
rowseq
RowseqFromText(const char *text, const char *shown)
{
	uint64		value = 0;

	if (*text == '\0' || text[strspn(text, "0123456789")] != '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid input syntax for type rowseq: \"%s\"", shown),
				 errdetail("A rowseq is written as decimal digits only.")));

	for (const char *p = text; *p; p++)
	{
		/* checked before it is computed: value * 10 may not fit in 64 bits */
		if (value > ((uint64) ROWSEQ_MAX - (uint64) (*p - '0')) / 10)
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("value \"%s\" is out of range for type rowseq", shown),
					 errdetail("A rowseq lies between 0 and %lld.",
							   (long long) ROWSEQ_MAX)));
		value = value * 10 + (*p - '0');
	}

	return (rowseq) value;
}

/*
 * The OID of upsert_order.rowseq, looked up in the extension's schema, and
 * checked to be the extension's own: values of a column of that type are
 * handled as rowseq's (eight bytes, by value), and a type its schema's
 * owner created under the name, with the original renamed, would be read
 * as one.  For what is built once per table, not for every call.
 */
Oid
RowseqTypeOid(void)
{
	Oid			nspid = get_namespace_oid(UPSERT_ORDER_SCHEMA, false);
	Oid			typid = GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
										CStringGetDatum("rowseq"),
										ObjectIdGetDatum(nspid));

	if (!OidIsValid(typid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("type \"%s.rowseq\" does not exist", UPSERT_ORDER_SCHEMA),
				 errhint("Recreate the extension with DROP EXTENSION and CREATE EXTENSION upsert_order.")));
	if (getExtensionOfObject(TypeRelationId, typid) != get_extension_oid("upsert_order", false))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("type \"%s.rowseq\" is not a member of extension \"upsert_order\"",
						UPSERT_ORDER_SCHEMA),
				 errhint("Give the type that CREATE EXTENSION created its name back.")));
	return typid;
}

/* Raise the out-of-range error shared by the integer casts. */
static void
rowseq_check_range(int64 value)
{
	if (value < 0)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("value %lld is out of range for type rowseq",
						(long long) value),
				 errdetail("A rowseq lies between 0 and %lld.",
						   (long long) ROWSEQ_MAX)));
}

Datum
rowseq_in(PG_FUNCTION_ARGS)
{
	char	   *text = PG_GETARG_CSTRING(0);

	PG_RETURN_ROWSEQ(RowseqFromText(text, text));
}

Datum
rowseq_out(PG_FUNCTION_ARGS)
{
	char		buf[MAXINT8LEN + 1];

	pg_lltoa(PG_GETARG_ROWSEQ(0), buf);
	PG_RETURN_CSTRING(pstrdup(buf));
}

/* Binary input: an int8 on the wire, refused when negative. */
Datum
rowseq_recv(PG_FUNCTION_ARGS)
{
	StringInfo	buf = (StringInfo) PG_GETARG_POINTER(0);
	int64		value = pq_getmsgint64(buf);

	rowseq_check_range(value);
	PG_RETURN_ROWSEQ(value);
}

Datum
rowseq_from_int8(PG_FUNCTION_ARGS)
{
	int64		value = PG_GETARG_INT64(0);

	rowseq_check_range(value);
	PG_RETURN_ROWSEQ(value);
}

Datum
rowseq_from_int4(PG_FUNCTION_ARGS)
{
	int64		value = PG_GETARG_INT32(0);

	rowseq_check_range(value);
	PG_RETURN_ROWSEQ(value);
}

/*
 * rowseq(ts timestamptz, logical int): the stamp for a wall-clock time.
 * Sub-millisecond precision is dropped (the layout has none), so
 * rowseq_time() gives back ts truncated to the millisecond.
 */
Datum
rowseq_make(PG_FUNCTION_ARGS)
{
	TimestampTz ts = PG_GETARG_TIMESTAMPTZ(0);
	int32		logical = PG_GETARG_INT32(1);
	int64		unix_usecs;
	int64		ms;

	if (TIMESTAMP_NOT_FINITE(ts))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range for type rowseq"),
				 errdetail("Infinite timestamps have no rowseq.")));

	if (logical < 0 || logical > ROWSEQ_LOGICAL_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("logical counter %d is out of range for type rowseq",
						logical),
				 errdetail("The logical counter lies between 0 and %d.",
						   ROWSEQ_LOGICAL_MAX)));

	if (pg_add_s64_overflow(ts, UNIX_TO_PG_EPOCH_USECS, &unix_usecs) ||
		unix_usecs / 1000 > ROWSEQ_MS_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range for type rowseq"),
				 errdetail("A rowseq holds no time after %s.",
						   timestamptz_to_str(ROWSEQ_MS_MAX * 1000 - UNIX_TO_PG_EPOCH_USECS))));
	if (unix_usecs < 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range for type rowseq"),
				 errdetail("A rowseq holds no time before 1970-01-01 00:00:00 UTC.")));

	ms = unix_usecs / 1000;
	PG_RETURN_ROWSEQ((ms << ROWSEQ_LOGICAL_BITS) | logical);
}

/* The wall-clock part of a rowseq, as a timestamptz with millisecond precision. */
Datum
rowseq_time(PG_FUNCTION_ARGS)
{
	rowseq		value = PG_GETARG_ROWSEQ(0);
	int64		ms = value >> ROWSEQ_LOGICAL_BITS;

	PG_RETURN_TIMESTAMPTZ(ms * 1000 - UNIX_TO_PG_EPOCH_USECS);
}

/* The logical counter part of a rowseq. */
Datum
rowseq_logical(PG_FUNCTION_ARGS)
{
	rowseq		value = PG_GETARG_ROWSEQ(0);

	PG_RETURN_INT32((int32) (value & ROWSEQ_LOGICAL_MAX));
}
