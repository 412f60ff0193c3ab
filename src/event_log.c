/*-------------------------------------------------------------------------
 *
 * event_log.c
 *	  Appends one row to upsert_order.event_log for every message, in the
 *	  caller's transaction.
 *
 * Callers of versioned_upsert() hold no privilege on event_log, and must not
 * be able to forge or erase its rows.  So the one fixed INSERT below runs as
 * the owner of event_log, the way PostgreSQL runs foreign-key checks as the
 * owner of the referenced table.  Only values computed by the extension are
 * passed to it; no user code runs while the user is switched.
 *
 * An applied event (inserted or updated) in the database the publisher
 * serves is also queued in upsert_order.outbox by the same statement, so the
 * event and its place in the queue commit or vanish together; the publisher
 * worker is woken when the transaction commits.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "upsert_order.h"

#define EVENT_LOG_NARGS 7

static Oid	event_log_relid = InvalidOid;
static Oid	event_log_owner = InvalidOid;
static SPIPlanPtr event_log_plan = NULL;
static bool event_log_plan_stale = false;

/*
 * Forget what we know of event_log when it changes.  The plan is only marked
 * here and replaced on next use: freeing it inside a callback could pull it
 * from under a running statement.
 */
static void
event_log_invalidate(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || relid == event_log_relid)
	{
		event_log_relid = InvalidOid;
		event_log_plan_stale = true;
	}
}

void
EventLogInitCache(void)
{
	CacheRegisterRelcacheCallback(event_log_invalidate, (Datum) 0);
}

/*
 * Find one of the extension's tables by name; returns its OID and sets
 * *owner.  A missing table means the extension was tampered with.
 */
Oid
ExtensionTableLookup(const char *relname, Oid *owner)
{
	Oid			nspid = get_namespace_oid(UPSERT_ORDER_SCHEMA, false);
	Oid			relid = get_relname_relid(relname, nspid);
	HeapTuple	tuple;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"%s.%s\" does not exist", UPSERT_ORDER_SCHEMA, relname),
				 errhint("Recreate the extension with DROP EXTENSION and CREATE EXTENSION upsert_order.")));
	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	*owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);
	return relid;
}

/* Find event_log and its owner, and (re)prepare the insert when needed. */
static void
event_log_prepare(void)
{
	if (!OidIsValid(event_log_relid))
		event_log_relid = ExtensionTableLookup("event_log", &event_log_owner);

	if (event_log_plan != NULL && event_log_plan_stale)
	{
		SPI_freeplan(event_log_plan);
		event_log_plan = NULL;
	}

	if (event_log_plan == NULL)
	{
		Oid			argtypes[EVENT_LOG_NARGS] = {
			REGCLASSOID, JSONBOID, RowseqTypeOid(), TEXTOID, JSONBOID, JSONBOID,
			BOOLOID
		};
		SPIPlanPtr	plan;

		/*
		 * One statement, so that queueing costs no extra round trip through
		 * SPI.  $7 says whether the event is to be published.
		 */
		plan = SPI_prepare("WITH logged AS ("
						   "  INSERT INTO upsert_order.event_log"
						   "   (target, key, version, outcome, payload, data)"
						   "  VALUES ($1, $2, $3, $4, $5, $6) RETURNING event_id),"
						   " queued AS ("
						   "  INSERT INTO upsert_order.outbox (event_id)"
						   "  SELECT event_id FROM logged WHERE $7)"
						   " SELECT event_id FROM logged",
						   EVENT_LOG_NARGS, argtypes);
		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "could not prepare the event_log insert: %s",
				 SPI_result_code_string(SPI_result));
		event_log_plan = plan;
		event_log_plan_stale = false;
	}
}

/*
 * Append one event; returns its event_id.  Must be called inside an SPI
 * connection.
 */
int64
EventLogAppend(const LoggedEvent *event)
{
	Datum		values[EVENT_LOG_NARGS];
	char		nulls[EVENT_LOG_NARGS] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	Oid			save_userid;
	int			save_sec_context;
	int			ret;
	bool		isnull;
	int64		event_id;
	bool		publish;

	event_log_prepare();

	publish = (strcmp(event->outcome, "inserted") == 0 ||
			   strcmp(event->outcome, "updated") == 0) &&
		PublisherServesThisDatabase();

	values[0] = ObjectIdGetDatum(event->target);
	values[1] = JsonbPGetDatum(event->key);
	values[2] = RowseqGetDatum(event->version);
	values[3] = CStringGetTextDatum(event->outcome);
	values[4] = JsonbPGetDatum(event->payload);
	values[5] = event->data;
	if (event->data_isnull)
		nulls[5] = 'n';
	values[6] = BoolGetDatum(publish);

	/*
	 * Switch to the owner of event_log for this one statement.  An error
	 * needs no cleanup here: aborting the (sub)transaction restores the user.
	 */
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(event_log_owner,
						   save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	ret = SPI_execute_plan(event_log_plan, values, nulls, false, 1);
	SetUserIdAndSecContext(save_userid, save_sec_context);

	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not append to event_log: %s", SPI_result_code_string(ret));

	event_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 1, &isnull));
	if (publish)
		PublisherWakeAtCommit();
	return event_id;
}
