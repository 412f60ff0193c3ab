/*-------------------------------------------------------------------------
 *
 * publisher_payload.c
 *	  The notification payload of one published event, made to fit
 *	  NOTIFY's size limit.
 *
 * The payload is the JSON object {"op", "key", "seq", "data", "table",
 * "version", "event_id"}: sent by NOTIFY, and recorded as the same text in
 * the publication table, whose events_since() returns it as jsonb.  When
 * the text would not fit in a notification, or the target's rows are not
 * to be published (publish_data()), "data" is left out and "data_omitted"
 * set; if it still would not fit, "key" too ("key_omitted").
 *
 * The text is written here in the form jsonb's output function gives the
 * same object: keys in jsonb's order (shorter first, then bytewise), the
 * same separators, and key and data as that function prints them.  So the
 * text comes back byte for byte from a cast to jsonb and back, and
 * events_since() returns what was notified.  Building the object as jsonb
 * first and printing that cost the worker a seventh of its time per event,
 * and recording the jsonb as well as sending its text, more.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/json.h"
#include "utils/jsonb.h"

#include "upsert_order.h"

/* , "name": value (name is a plain word, value JSON already) */
static void
append_member(StringInfo buf, const char *name, const char *value)
{
	appendStringInfoString(buf, ", \"");
	appendStringInfoString(buf, name);
	appendStringInfoString(buf, "\": ");
	appendStringInfoString(buf, value);
}

/* , "name": the value as a JSON string, or null */
static void
append_string(StringInfo buf, const char *name, const char *value)
{
	if (value == NULL)
	{
		append_member(buf, name, "null");
		return;
	}
	append_member(buf, name, "");
	escape_json(buf, value);
}

/* , "name": the number */
static void
append_int8(StringInfo buf, const char *name, int64 value)
{
	char		digits[MAXINT8LEN + 1];

	(void) pg_lltoa(value, digits);
	append_member(buf, name, digits);
}

/*
 * jsonb's binary form takes at most about 4 bytes for each byte of its text
 * (a small number: a 4-byte entry and an aligned numeric of 8 bytes, for a
 * digit and a separator), and a handful more for a small value.  A value
 * of more than twice that many bytes per byte of limit cannot print within
 * limit.
 */
#define UNPRINTABLE_JSONB_SIZE(limit)	(8 * (Size) (limit))

/*
 * Does jsonb's text certainly exceed limit bytes?  Judged from a lower bound
 * of its length, the text of its scalars (a string's with its quotes but
 * not its escapes), which stops growing as soon as it passes the limit.  A
 * number prints as long as its exponent and scale make it (1e131071 takes
 * 16 bytes and prints as 131,072 digits), so each is printed alone; the
 * text of a value that passes has at most about six times the bound.
 */
static bool
jsonb_text_exceeds(Jsonb *jsonb, int limit)
{
	JsonbIterator *it = JsonbIteratorInit(&jsonb->root);
	JsonbIteratorToken token;
	JsonbValue	v;
	Size		len = 0;

	while ((token = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		char	   *digits;

		if (token != WJB_KEY && token != WJB_VALUE && token != WJB_ELEM)
			continue;
		switch (v.type)
		{
			case jbvString:
				len += v.val.string.len + 2;
				break;
			case jbvNumeric:
				digits = DatumGetCString(DirectFunctionCall1(numeric_out,
															 NumericGetDatum(v.val.numeric)));
				len += strlen(digits);
				pfree(digits);
				break;
			default:			/* true, false, null */
				len += 4;
				break;
		}
		if (len > (Size) limit)
			return true;
	}
	return false;
}

/*
 * jsonb's text of value, "null" if isnull, or NULL if it is too large to
 * fit in limit bytes.  That is decided before printing: the text of a
 * large value could exceed what one allocation may hold (a control
 * character prints as six, a number as its exponent says), and the worker
 * would then fail on that event at every try.
 */
static char *
jsonb_text(Datum value, bool isnull, int limit)
{
	Jsonb	   *jsonb;

	if (isnull)
		return "null";
	if (toast_raw_datum_size(value) > UNPRINTABLE_JSONB_SIZE(limit))
		return NULL;
	jsonb = DatumGetJsonbP(value);
	if (jsonb_text_exceeds(jsonb, limit))
		return NULL;
	return JsonbToCString(NULL, &jsonb->root, VARSIZE(jsonb));
}

/* The payload of event, with key and data unless they are NULL. */
static void
payload_build(StringInfo buf, const PublishedEvent *event,
			  const char *key, const char *data)
{
	resetStringInfo(buf);
	appendStringInfoString(buf, event->inserted ? "{\"op\": \"insert\"" : "{\"op\": \"update\"");
	if (key)
		append_member(buf, "key", key);
	append_int8(buf, "seq", event->seq);
	if (data)
		append_member(buf, "data", data);
	append_string(buf, "table", event->table);
	append_string(buf, "version", event->version);
	append_int8(buf, "event_id", event->event_id);
	if (!key)
		append_member(buf, "key_omitted", "true");
	if (!data)
		append_member(buf, "data_omitted", "true");
	appendStringInfoChar(buf, '}');
}

/*
 * The text of the payload of event, the fullest that fits in limit bytes;
 * the last resort, without key and data, is returned whatever its size
 * (with NOTIFY's limit it always fits: its longest part is the table's
 * name).
 */
char *
PublisherPayload(const PublishedEvent *event, int limit)
{
	StringInfoData buf;
	char	   *key = jsonb_text(event->key, false, limit);
	char	   *data = NULL;

	if (key && event->publish_data)
		data = jsonb_text(event->data, event->data_isnull, limit);

	initStringInfo(&buf);
	if (data)
	{
		payload_build(&buf, event, key, data);
		if (buf.len < limit)
			return buf.data;
	}
	if (key)
	{
		payload_build(&buf, event, key, NULL);
		if (buf.len < limit)
			return buf.data;
	}
	payload_build(&buf, event, NULL, NULL);
	return buf.data;
}
