/*-------------------------------------------------------------------------
 *
 * publisher_payload.c
 *	  The notification payload of one published event, made to fit
 *	  NOTIFY's size limit.
 *
 * The payload is the object {"seq", "event_id", "table", "op", "key",
 * "version", "data"}: recorded as jsonb in the publication table (and so
 * returned by events_since()), sent as that jsonb's text by NOTIFY.  When
 * the text would not fit in a notification, "data" is left out and
 * "data_omitted" set; if it still would not fit, "key" too ("key_omitted").
 *
 * It is built with the jsonb API, once per event.  jsonb_build_object() in
 * SQL looked up the type of each argument and printed and parsed back every
 * number, for every event: it was a fifth of the worker's time.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "upsert_order.h"

static void
push_key(JsonbParseState **state, const char *key)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) key;
	v.val.string.len = strlen(key);
	(void) pushJsonbValue(state, WJB_KEY, &v);
}

/* key: a string, or null */
static void
push_string(JsonbParseState **state, const char *key, const char *value)
{
	JsonbValue	v;

	push_key(state, key);
	if (value == NULL)
		v.type = jbvNull;
	else
	{
		v.type = jbvString;
		v.val.string.val = (char *) value;
		v.val.string.len = strlen(value);
	}
	(void) pushJsonbValue(state, WJB_VALUE, &v);
}

/* key: a number */
static void
push_int8(JsonbParseState **state, const char *key, int64 value)
{
	JsonbValue	v;

	push_key(state, key);
	v.type = jbvNumeric;
	v.val.numeric = int64_to_numeric(value);
	(void) pushJsonbValue(state, WJB_VALUE, &v);
}

/* key: true */
static void
push_true(JsonbParseState **state, const char *key)
{
	JsonbValue	v;

	push_key(state, key);
	v.type = jbvBool;
	v.val.boolean = true;
	(void) pushJsonbValue(state, WJB_VALUE, &v);
}

/* key: a jsonb value, or null */
static void
push_jsonb(JsonbParseState **state, const char *key, Jsonb *value)
{
	JsonbValue	v;

	push_key(state, key);
	if (value == NULL)
	{
		v.type = jbvNull;
		(void) pushJsonbValue(state, WJB_VALUE, &v);
		return;
	}
	v.type = jbvBinary;
	v.val.binary.data = &value->root;
	v.val.binary.len = VARSIZE(value) - VARHDRSZ;
	(void) pushJsonbValue(state, WJB_VALUE, &v);
}

static Jsonb *
payload_build(const PublishedEvent *event, bool with_key, bool with_data)
{
	JsonbParseState *state = NULL;
	JsonbValue *object;

	/*
	 * In jsonb's order of keys (shorter first, then bytewise), which is the
	 * order of the text too: the sort at the end of the object then finds
	 * the pairs in place, and moves none of them.
	 */
	(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	push_string(&state, "op", event->inserted ? "insert" : "update");
	if (with_key)
		push_jsonb(&state, "key", event->key);
	push_int8(&state, "seq", event->seq);
	if (with_data)
		push_jsonb(&state, "data", event->data);
	push_string(&state, "table", event->table);
	push_string(&state, "version", event->version);
	push_int8(&state, "event_id", event->event_id);
	if (!with_key)
		push_true(&state, "key_omitted");
	if (!with_data)
		push_true(&state, "data_omitted");
	object = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(object);
}

/*
 * The payload of event, the fullest that fits in limit bytes of text; the
 * last resort, without key and data, is returned whatever its size (with
 * NOTIFY's limit it always fits: its longest part is the table's name).
 * *text is its text, as jsonb's output function makes it.
 */
Jsonb *
PublisherPayload(const PublishedEvent *event, int limit, char **text)
{
	Jsonb	   *payload = payload_build(event, true, true);

	*text = JsonbToCString(NULL, &payload->root, VARSIZE(payload));
	if (strlen(*text) < (size_t) limit)
		return payload;

	payload = payload_build(event, true, false);
	*text = JsonbToCString(NULL, &payload->root, VARSIZE(payload));
	if (strlen(*text) < (size_t) limit)
		return payload;

	payload = payload_build(event, false, false);
	*text = JsonbToCString(NULL, &payload->root, VARSIZE(payload));
	return payload;
}
