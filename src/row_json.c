/*-------------------------------------------------------------------------
 *
 * row_json.c
 *	  The stored row as jsonb, for event_log.data: exactly what to_jsonb()
 *	  makes of the row, built straight from its values.
 *
 * to_jsonb() works out how to convert each column (through the type's
 * category, its output function, a cast to json for types outside the
 * core) on every call, and turns integers into JSON numbers by printing and
 * re-parsing them.  That was a tenth of an applied message.  Here the way to
 * convert each column is decided once per table (RowJsonKindOf, called when
 * the target's metadata is built), for the types whose conversion is fixed
 * and simple; a table with a column of any other type keeps to_jsonb().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/jsonapi.h"
#include "executor/tuptable.h"
#include "parser/parse_coerce.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/numeric.h"

#include "upsert_order.h"

/*
 * How to_jsonb() converts a column of this base type, if it is one of those
 * done here; ROW_JSON_OTHER otherwise.  rowseq_oid is RowseqTypeOid(), which
 * the caller looked up once for all the table's columns.
 */
RowJsonKind
RowJsonKindOf(Oid basetype, Oid rowseq_oid)
{
	switch (basetype)
	{
		case BOOLOID:
			return ROW_JSON_BOOL;
		case INT2OID:
			return ROW_JSON_INT2;
		case INT4OID:
			return ROW_JSON_INT4;
		case INT8OID:
			return ROW_JSON_INT8;
		case NUMERICOID:
			return ROW_JSON_NUMERIC;
		case FLOAT4OID:
		case FLOAT8OID:
			return ROW_JSON_FLOAT;
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
			return ROW_JSON_TEXT;
		case DATEOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			return ROW_JSON_DATETIME;
		case UUIDOID:
			return ROW_JSON_STRING;
	}

	/*
	 * rowseq is a string of its output, like any type from outside the core
	 * that has no cast to json (to_jsonb() would call such a cast).
	 */
	if (basetype == rowseq_oid)
	{
		Oid			castfunc;

		if (find_coercion_pathway(JSONOID, basetype, COERCION_EXPLICIT,
								  &castfunc) != COERCION_PATH_FUNC)
			return ROW_JSON_STRING;
	}
	return ROW_JSON_OTHER;
}

/* A string value, refused past jsonb's length limit as to_jsonb() does. */
static void
string_value(JsonbValue *jb, char *str, int len)
{
	if (len > JENTRY_OFFLENMASK)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("string too long to represent as jsonb string"),
				 errdetail("Due to an implementation restriction, jsonb strings cannot exceed %d bytes.",
						   JENTRY_OFFLENMASK)));
	jb->type = jbvString;
	jb->val.string.val = str;
	jb->val.string.len = len;
}

/* A number, or its text where JSON has no such number (NaN, Infinity). */
static void
numeric_value(JsonbValue *jb, Numeric num, TargetColumn *col, Datum value)
{
	if (numeric_is_nan(num) || numeric_is_inf(num))
	{
		char	   *str = OutputFunctionCall(&col->output, value);

		string_value(jb, str, strlen(str));
		return;
	}
	jb->type = jbvNumeric;
	jb->val.numeric = num;
}

/*
 * One column's value, as to_jsonb() converts it; col's json_kind is not
 * ROW_JSON_OTHER.
 */
void
RowJsonValue(JsonbValue *jb, TargetColumn *col, Datum value)
{
	char	   *str;

	switch (col->json_kind)
	{
		case ROW_JSON_BOOL:
			jb->type = jbvBool;
			jb->val.boolean = DatumGetBool(value);
			break;
		case ROW_JSON_INT2:
			numeric_value(jb, int64_to_numeric(DatumGetInt16(value)), col, value);
			break;
		case ROW_JSON_INT4:
			numeric_value(jb, int64_to_numeric(DatumGetInt32(value)), col, value);
			break;
		case ROW_JSON_INT8:
			numeric_value(jb, int64_to_numeric(DatumGetInt64(value)), col, value);
			break;
		case ROW_JSON_NUMERIC:
			numeric_value(jb, DatumGetNumeric(value), col, value);
			break;
		case ROW_JSON_FLOAT:
			/* through the text, as to_jsonb() does: it follows extra_float_digits */
			str = OutputFunctionCall(&col->output, value);
			if (IsValidJsonNumber(str, strlen(str)))
				numeric_value(jb, DatumGetNumeric(DirectFunctionCall3(numeric_in,
																	  CStringGetDatum(str),
																	  ObjectIdGetDatum(InvalidOid),
																	  Int32GetDatum(-1))),
							  col, value);
			else
				string_value(jb, str, strlen(str));
			break;
		case ROW_JSON_TEXT:
			{
				text	   *txt = DatumGetTextPP(value);

				string_value(jb, VARDATA_ANY(txt), VARSIZE_ANY_EXHDR(txt));
			}
			break;
		case ROW_JSON_DATETIME:
			str = JsonEncodeDateTime(NULL, value, col->basetype, NULL);
			string_value(jb, str, strlen(str));
			break;
		case ROW_JSON_STRING:
			str = OutputFunctionCall(&col->output, value);
			string_value(jb, str, strlen(str));
			break;
		case ROW_JSON_OTHER:
			elog(ERROR, "column \"%s\" has no direct conversion to jsonb", col->name);
	}
}

/* jsonb's order of object keys: the shorter first, then bytewise */
static int
json_key_cmp(const void *a, const void *b, void *arg)
{
	TargetColumn *columns = (TargetColumn *) arg;
	const char *name_a = columns[*(const int *) a].name;
	const char *name_b = columns[*(const int *) b].name;
	size_t		len_a = strlen(name_a);
	size_t		len_b = strlen(name_b);

	if (len_a != len_b)
		return len_a < len_b ? -1 : 1;
	return memcmp(name_a, name_b, len_a);
}

/*
 * The indexes in target->columns of its live columns, in the order jsonb
 * keeps the keys of an object, for RowToJsonb(): pushJsonbValue() sorts
 * the pairs of an object when it ends, moving each pair out of place byte
 * by byte, and pushed in this order they are all in place.  Allocated in
 * the current memory context.
 */
int *
RowJsonOrder(UpsertTarget *target)
{
	int		   *order = palloc(sizeof(int) * Max(target->nlive, 1));
	int			n = 0;

	for (int i = 0; i < target->ncolumns; i++)
		if (target->columns[i].attnum != InvalidAttrNumber)
			order[n++] = i;
	Assert(n == target->nlive);
	qsort_arg(order, n, sizeof(int), json_key_cmp, target->columns);
	return order;
}

/*
 * The row in slot as a jsonb object, for a target whose every column has a
 * kind other than ROW_JSON_OTHER (target->row_json_direct).
 */
Datum
RowToJsonb(UpsertTarget *target, TupleTableSlot *slot)
{
	JsonbParseState *state = NULL;
	JsonbValue *result;

	Assert(target->row_json_direct);
	slot_getallattrs(slot);
	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	for (int n = 0; n < target->nlive; n++)
	{
		int			i = target->row_json_order[n];
		TargetColumn *col = &target->columns[i];
		JsonbValue	jb;

		jb.type = jbvString;
		jb.val.string.val = col->name;
		jb.val.string.len = strlen(col->name);
		pushJsonbValue(&state, WJB_KEY, &jb);

		if (slot->tts_isnull[i])
			jb.type = jbvNull;
		else
			RowJsonValue(&jb, col, slot->tts_values[i]);
		pushJsonbValue(&state, WJB_VALUE, &jb);
	}
	result = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	return JsonbPGetDatum(JsonbValueToJsonb(result));
}
