/*-------------------------------------------------------------------------
 *
 * message.c
 *	  Reading a message: the new_row object of versioned_upsert() as the
 *	  target's typed column values, its primary key and its version.
 *
 * Every value is converted as its column would convert it in an INSERT:
 * scalars by their column's input function (a domain's constraints
 * included), arrays and composites (which JSON spells as arrays and
 * objects) by jsonb_populate_record().  The key is also kept as a JSON
 * object, spelled the same whatever form the sender used, for event_log.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "funcapi.h"
#include "nodes/makefuncs.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "upsert_order.h"

/* The text an input function of (base) type basetype reads for a JSON value. */
static char *
json_value_to_cstring(JsonbValue *value, Oid basetype)
{
	/*
	 * json and jsonb columns take the JSON value itself, and a scalar column
	 * given an array or an object gets its JSON text, which the type's input
	 * function reads (or refuses) as it would any text.
	 */
	if (basetype == JSONBOID || basetype == JSONOID || value->type == jbvBinary)
	{
		if (value->type == jbvBinary)
			return JsonbToCString(NULL, value->val.binary.data, value->val.binary.len);
		return JsonbToCString(NULL, &JsonbValueToJsonb(value)->root, 0);
	}

	switch (value->type)
	{
		case jbvString:
			return pnstrdup(value->val.string.val, value->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out,
													   NumericGetDatum(value->val.numeric)));
		case jbvBool:
			return pstrdup(value->val.boolean ? "true" : "false");
		default:
			elog(ERROR, "unexpected jsonb value type %d", (int) value->type);
	}
	return NULL;				/* keep compiler quiet */
}

/*
 * A typed key value as a JSON value.  The usual types as to_jsonb() writes
 * them, and as event_log.data holds them: numbers as numbers (NaN and
 * infinities as strings), booleans as booleans, dates and times in ISO
 * form whatever the session's DateStyle, text, uuid and rowseq as strings.
 * A key then matches the stored row's JSON in the same session, whatever
 * form the sender used ("7" or 7); what to_jsonb() takes from the session
 * (TimeZone, extra_float_digits) and a numeric's scale still show.  jsonb
 * is itself; any other type (an array, a composite) is its output
 * function's text.
 */
static void
push_key_value(JsonbParseState **state, Datum value, TargetColumn *col)
{
	JsonbValue	jv;

	if (col->json_kind != ROW_JSON_OTHER)
		RowJsonValue(&jv, col, value);
	else if (col->basetype == JSONBOID)
	{
		Jsonb	   *jb = DatumGetJsonbP(value);

		jv.type = jbvBinary;
		jv.val.binary.data = &jb->root;
		jv.val.binary.len = VARSIZE(jb) - VARHDRSZ;
	}
	else
	{
		jv.type = jbvString;
		jv.val.string.val = OutputFunctionCall(&col->output, value);
		jv.val.string.len = strlen(jv.val.string.val);
	}
	pushJsonbValue(state, WJB_VALUE, &jv);
}

/* The primary key of a message as a JSON object, e.g. {"id": 7}. */
static Jsonb *
build_key(UpsertTarget *target, Datum *key_values)
{
	JsonbParseState *state = NULL;
	JsonbValue *result;

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	for (int i = 0; i < target->npkey; i++)
	{
		TargetColumn *col = &target->columns[target->pkey[i] - 1];
		JsonbValue	name;

		name.type = jbvString;
		name.val.string.val = col->name;
		name.val.string.len = strlen(col->name);
		pushJsonbValue(&state, WJB_KEY, &name);
		push_key_value(&state, key_values[i], col);
	}
	result = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(result);
}

/*
 * The key of the row a message wrote, given its key columns as stored, in
 * the terms of event_log.key.  It is the message's own, unless the stored
 * key differs from it: an update keeps the stored key, which may be equal
 * to the message's without being the same (numeric 1.0 and 1.00, a
 * case-insensitive collation), and a BEFORE trigger may change the key.
 * The log and the notification then name the row as data shows it, and a
 * listener that reads the row by key finds the one that was written.
 */
Jsonb *
MessageStoredKey(UpsertTarget *target, UpsertMessage *msg, Datum *stored_key)
{
	for (int i = 0; i < target->npkey; i++)
	{
		TargetColumn *col = &target->columns[target->pkey[i] - 1];

		if (!datum_image_eq(stored_key[i], msg->key_values[i], col->typbyval, col->typlen))
			return build_key(target, stored_key);
	}
	return msg->key;
}

/* Index of a key column in the primary key, or -1. */
static int
key_position(UpsertTarget *target, AttrNumber attnum)
{
	for (int i = 0; i < target->npkey; i++)
		if (target->pkey[i] == attnum)
			return i;
	return -1;
}

/*
 * The version a JSON number stands for.  Its decimal form can be far longer
 * than what was sent (1e100000 has 100,001 digits): an error names such a
 * number by its first characters when they show its decimal point, and
 * otherwise in scientific notation, rather than repeat every digit.  Not in
 * scientific notation alone: six digits would round 100.000...001 to
 * 1.000000e+02, which reads as a version the call accepts.
 */
#define VERSION_SHOWN_MAX	64

static rowseq
version_from_number(Numeric number)
{
	char	   *text = DatumGetCString(DirectFunctionCall1(numeric_out,
														   NumericGetDatum(number)));
	const char *point;

	if (strlen(text) <= VERSION_SHOWN_MAX)
		return RowseqFromText(text, text);
	point = strchr(text, '.');
	if (point != NULL && point - text < VERSION_SHOWN_MAX)
		return RowseqFromText(text, psprintf("%.*s...", VERSION_SHOWN_MAX, text));
	return RowseqFromText(text, numeric_out_sci(number, 6));
}

/* The version a message carries: a JSON number or string of digits. */
static rowseq
parse_version(JsonbValue *value)
{
	char	   *text;

	if (value->type == jbvNumeric)
	{
		Datum		number = NumericGetDatum(value->val.numeric);

		/*
		 * jsonb keeps a number's scale, so 100.0 would read as "100.0": a
		 * number with no fractional part stands for its integer, as 1e2
		 * does.
		 */
		if (DatumGetInt32(DirectFunctionCall1(numeric_scale, number)) > 0)
		{
			Datum		whole = DirectFunctionCall2(numeric_trunc, number, Int32GetDatum(0));

			if (DatumGetBool(DirectFunctionCall2(numeric_eq, number, whole)))
				number = whole;
		}
		return version_from_number(DatumGetNumeric(number));
	}

	/* a string, a boolean, or an array or object (refused as not digits) */
	text = json_value_to_cstring(value, TEXTOID);
	return RowseqFromText(text, text);
}

/*
 * The value of an array or composite column, converted the way
 * jsonb_populate_record() converts a field (from a JSON array or object, or
 * from the type's text form; a JSON null meets a domain's NOT NULL): the
 * value goes through a one-column record of the column's type.  Such
 * columns are rare enough that doing this per message is fine.
 */
static Datum
parse_structured_value(TargetColumn *col, JsonbValue *value, bool *isnull)
{
	TupleDesc	desc = CreateTemplateTupleDesc(1);
	Datum		field = (Datum) 0;
	bool		field_isnull = true;
	JsonbParseState *state = NULL;
	JsonbValue	name;
	Jsonb	   *object;
	FmgrInfo	populate;
	HeapTupleHeader record;

	TupleDescInitEntry(desc, 1, col->name, col->typid, col->typmod, 0);
	desc = BlessTupleDesc(desc);

	name.type = jbvString;
	name.val.string.val = col->name;
	name.val.string.len = strlen(col->name);
	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	pushJsonbValue(&state, WJB_KEY, &name);
	pushJsonbValue(&state, WJB_VALUE, value);
	object = JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL));

	/* jsonb_populate_record() reads its first argument's type from the call. */
	fmgr_info(F_JSONB_POPULATE_RECORD, &populate);
	populate.fn_expr = (Node *)
		makeFuncExpr(F_JSONB_POPULATE_RECORD, RECORDOID,
					 list_make2(makeNullConst(RECORDOID, -1, InvalidOid),
								makeNullConst(JSONBOID, -1, InvalidOid)),
					 InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
	record = DatumGetHeapTupleHeader(
		FunctionCall2(&populate,
					  heap_copy_tuple_as_datum(heap_form_tuple(desc, &field, &field_isnull), desc),
					  JsonbPGetDatum(object)));
	return GetAttributeByNum(record, 1, isnull);
}

/*
 * A scalar column's value from its text form.  A domain's input function
 * keeps the domain's constraints, compiled, in fn_extra (a range's keeps its
 * element type's input function there, which may be a domain's), and
 * whether the caller may execute the functions they call is checked when
 * they are compiled: so they are compiled again for every message, as every
 * statement compiles them, under the role running it.
 */
static Datum
column_input(TargetColumn *col, char *text)
{
	FmgrInfo	input;

	if (!col->input_checks)
		return InputFunctionCall(&col->input, text, col->ioparam, col->typmod);
	fmgr_info_copy(&input, &col->input, CurrentMemoryContext);	/* fn_extra unset */
	return InputFunctionCall(&input, text, col->ioparam, col->typmod);
}

/* The value of a primary key column, which must not be null. */
static Datum
parse_key_value(TargetColumn *col, JsonbValue *value)
{
	if (value->type == jbvNull)
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("primary key column \"%s\" is null in new_row", col->name),
				 errdetail("The row is found by its primary key, so every key column needs a value.")));
	if (col->structured)
	{
		bool		isnull;
		Datum		key = parse_structured_value(col, value, &isnull);

		if (isnull)				/* not from a JSON value that is not null */
			elog(ERROR, "jsonb_populate_record() made a null key value");
		return key;
	}
	return column_input(col, json_value_to_cstring(value, col->basetype));
}

/* The value of another column, into msg->values and msg->nulls. */
static void
parse_other_value(UpsertMessage *msg, TargetColumn *col, AttrNumber attnum,
				  JsonbValue *value)
{
	char	   *text = NULL;

	if (col->structured)
	{
		msg->values[attnum - 1] = parse_structured_value(col, value, &msg->nulls[attnum - 1]);
		msg->structured = bms_add_member(msg->structured, attnum);
	}
	else
	{
		/* A JSON null still goes through the input function: a domain may refuse it. */
		if (value->type != jbvNull)
			text = json_value_to_cstring(value, col->basetype);
		msg->values[attnum - 1] = column_input(col, text);
		msg->nulls[attnum - 1] = (text == NULL);
	}
	msg->others = bms_add_member(msg->others, attnum);
}

/* The column a key of new_row names, which must exist. */
static AttrNumber
parse_column_name(UpsertTarget *target, JsonbValue *key)
{
	char	   *name = pnstrdup(key->val.string.val, key->val.string.len);
	AttrNumber	attnum = TargetColumnByName(target, name);

	if (attnum == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of relation \"%s\" does not exist",
						name, target->displayname),
				 errdetail("Every key of new_row must name a column of the target table.")));
	pfree(name);
	return attnum;
}

/*
 * Read new_row: check every name, convert the key and the version, and note
 * which other columns it sets.  A missing or null version is assigned from
 * the server clock.
 */
void
MessageParse(UpsertTarget *target, Jsonb *new_row, UpsertMessage *msg)
{
	JsonbIterator *it;
	JsonbValue	key;
	JsonbValue	value;
	JsonbIteratorToken tok;
	bool	   *key_seen = palloc0(sizeof(bool) * target->npkey);
	bool		have_version = false;

	if (!JB_ROOT_IS_OBJECT(new_row) || JB_ROOT_IS_SCALAR(new_row))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("new_row must be a JSON object"),
				 errdetail("A message is one row, given as an object of column names and values.")));

	msg->new_row = new_row;
	msg->key_values = palloc0(sizeof(Datum) * target->npkey);
	msg->others = NULL;
	msg->structured = NULL;
	/* Every column the message gives no value (dropped ones too) reads as null. */
	msg->values = palloc0(sizeof(Datum) * target->ncolumns);
	msg->nulls = palloc(sizeof(bool) * target->ncolumns);
	memset(msg->nulls, true, sizeof(bool) * target->ncolumns);

	it = JsonbIteratorInit(&new_row->root);
	while ((tok = JsonbIteratorNext(&it, &key, true)) != WJB_DONE)
	{
		AttrNumber	attnum;
		TargetColumn *col;
		int			keypos;

		if (tok != WJB_KEY)
			continue;
		attnum = parse_column_name(target, &key);
		col = &target->columns[attnum - 1];
		tok = JsonbIteratorNext(&it, &value, true);
		Assert(tok == WJB_VALUE);

		if (attnum == target->version_attnum)
		{
			if (value.type != jbvNull)
			{
				msg->version = parse_version(&value);
				have_version = true;
			}
		}
		else if ((keypos = key_position(target, attnum)) >= 0)
		{
			msg->key_values[keypos] = parse_key_value(col, &value);
			key_seen[keypos] = true;
		}
		else
			parse_other_value(msg, col, attnum, &value);

		/* before the next column's conversion uses what may be gone */
		TargetCheckUnchanged(target);
	}

	for (int i = 0; i < target->npkey; i++)
		if (!key_seen[i])
			ereport(ERROR,
					(errcode(ERRCODE_NOT_NULL_VIOLATION),
					 errmsg("primary key column \"%s\" is missing from new_row",
							target->columns[target->pkey[i] - 1].name),
					 errdetail("The row is found by its primary key, so every key column needs a value.")));

	if (!have_version)
		msg->version = HlcNow();
	msg->key = build_key(target, msg->key_values);
}
