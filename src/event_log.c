/*-------------------------------------------------------------------------
 *
 * event_log.c
 *	  Appends one row to upsert_order.event_log for every message, in the
 *	  caller's transaction, and queues applied events for the publisher.
 *
 * Callers of versioned_upsert() hold no privilege on event_log, and must not
 * be able to forge or erase its rows.  The rows are written here, through
 * the executor's simple insert path (the one logical replication uses to
 * apply a row), with values the extension computed: no SQL statement, no
 * plan, no permission check on the extension's own tables.  While they are
 * written the current user is the owner of event_log, the way PostgreSQL
 * runs foreign-key checks as the owner of the referenced table, so that
 * anything that does run (a trigger the owner added) runs as the owner.
 *
 * An applied event (inserted or updated) in the database the publisher
 * serves is also queued in upsert_order.outbox in the same transaction, so
 * the event and its place in the queue commit or vanish together; the
 * publisher worker is woken when the transaction commits.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "upsert_order.h"

/* The columns of event_log, in the order of the install script. */
enum
{
	LOG_EVENT_ID,
	LOG_TARGET,
	LOG_KEY,
	LOG_VERSION,
	LOG_OUTCOME,
	LOG_PAYLOAD,
	LOG_DATA,
	LOG_LOGGED_AT,
	LOG_NCOLUMNS
};

static const char *const log_column_names[LOG_NCOLUMNS] = {
	"event_id", "target", "key", "version", "outcome", "payload", "data", "logged_at"
};

/* What we know of the extension's tables; reset when any of them changes. */
typedef struct EventLogTables
{
	bool		valid;
	Oid			log_relid;
	Oid			log_owner;
	Oid			seq_relid;		/* event_log_event_id_seq */
	Oid			outbox_relid;
	int			log_natts;		/* attributes of event_log, dropped included */
	AttrNumber	log_attnum[LOG_NCOLUMNS];
} EventLogTables;

static EventLogTables tables;

/* Forget the tables when one of them (or everything) is invalidated. */
static void
event_log_invalidate(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || relid == tables.log_relid ||
		relid == tables.seq_relid || relid == tables.outbox_relid)
		tables.valid = false;
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

/* Find the extension's tables and the attribute numbers of event_log. */
static void
event_log_tables(void)
{
	Oid			outbox_owner;
	Oid			seq_owner;
	HeapTuple	tuple;

	if (tables.valid)
		return;

	tables.log_relid = ExtensionTableLookup("event_log", &tables.log_owner);
	tables.seq_relid = ExtensionTableLookup("event_log_event_id_seq", &seq_owner);
	tables.outbox_relid = ExtensionTableLookup("outbox", &outbox_owner);
	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(tables.log_relid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", tables.log_relid);
	tables.log_natts = ((Form_pg_class) GETSTRUCT(tuple))->relnatts;
	ReleaseSysCache(tuple);
	for (int i = 0; i < LOG_NCOLUMNS; i++)
	{
		tables.log_attnum[i] = get_attnum(tables.log_relid, log_column_names[i]);
		if (tables.log_attnum[i] == InvalidAttrNumber)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%s\" of relation \"%s.event_log\" does not exist",
							log_column_names[i], UPSERT_ORDER_SCHEMA),
					 errhint("Recreate the extension with DROP EXTENSION and CREATE EXTENSION upsert_order.")));
	}
	tables.valid = true;
}

/*
 * Insert one row into one of the extension's tables, with its indexes and
 * constraints, as logical replication applies a row.  values and nulls are
 * in attribute order; columns not given are NULL (these tables have no
 * defaults that matter here: the caller supplies every value).
 */
static void
insert_row(Oid relid, Datum *values, bool *nulls)
{
	Relation	rel = table_open(relid, RowExclusiveLock);
	TupleDesc	tupdesc = RelationGetDescr(rel);
	EState	   *estate = CreateExecutorState();
	RangeTblEntry *rte = makeNode(RangeTblEntry);
	ResultRelInfo *rri = makeNode(ResultRelInfo);
	TupleTableSlot *slot;

	rte->rtekind = RTE_RELATION;
	rte->relid = relid;
	rte->relkind = rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
	ExecInitRangeTable(estate, list_make1(rte));
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	estate->es_output_cid = GetCurrentCommandId(true);
	ExecOpenIndices(rri, false);
	if (rri->ri_TrigDesc)
		AfterTriggerBeginQuery();

	slot = ExecInitExtraTupleSlot(estate, tupdesc, &TTSOpsVirtual);
	ExecClearTuple(slot);
	memcpy(slot->tts_values, values, sizeof(Datum) * tupdesc->natts);
	memcpy(slot->tts_isnull, nulls, sizeof(bool) * tupdesc->natts);
	ExecStoreVirtualTuple(slot);

	ExecSimpleRelationInsert(rri, estate, slot);

	if (rri->ri_TrigDesc)
		AfterTriggerEndQuery(estate);
	ExecCloseIndices(rri);
	ExecResetTupleTable(estate->es_tupleTable, false);
	FreeExecutorState(estate);
	table_close(rel, NoLock);
}

/* Write the event_log row; returns its event_id. */
static int64
append_event(const LoggedEvent *event)
{
	int			natts = tables.log_natts;
	Datum	   *values = palloc0(sizeof(Datum) * natts);
	bool	   *nulls = palloc(sizeof(bool) * natts);
	int64		event_id = nextval_internal(tables.seq_relid, false);

	memset(nulls, true, sizeof(bool) * natts);
#define SET_COLUMN(col, value) \
	do { \
		values[tables.log_attnum[col] - 1] = (value); \
		nulls[tables.log_attnum[col] - 1] = false; \
	} while (0)
	SET_COLUMN(LOG_EVENT_ID, Int64GetDatum(event_id));
	SET_COLUMN(LOG_TARGET, ObjectIdGetDatum(event->target));
	SET_COLUMN(LOG_KEY, JsonbPGetDatum(event->key));
	SET_COLUMN(LOG_VERSION, RowseqGetDatum(event->version));
	SET_COLUMN(LOG_OUTCOME, CStringGetTextDatum(event->outcome));
	SET_COLUMN(LOG_PAYLOAD, JsonbPGetDatum(event->payload));
	if (!event->data_isnull)
		SET_COLUMN(LOG_DATA, event->data);
	SET_COLUMN(LOG_LOGGED_AT, TimestampTzGetDatum(GetCurrentTimestamp()));
#undef SET_COLUMN

	insert_row(tables.log_relid, values, nulls);
	return event_id;
}

/* Queue an applied event for the publisher. */
static void
queue_event(int64 event_id)
{
	Datum		value = Int64GetDatum(event_id);
	bool		isnull = false;

	insert_row(tables.outbox_relid, &value, &isnull);
}

/*
 * Append one event, and queue it when the publisher is to notify it;
 * returns its event_id.
 */
int64
EventLogAppend(const LoggedEvent *event)
{
	Oid			save_userid;
	int			save_sec_context;
	int64		event_id;
	bool		publish;

	event_log_tables();

	publish = (strcmp(event->outcome, "inserted") == 0 ||
			   strcmp(event->outcome, "updated") == 0) &&
		PublisherServesThisDatabase();

	/*
	 * The publisher relies on a transaction having its ID before it takes
	 * the event_id of an event it queues (see the top of publisher.c).
	 * Writing the target row has usually assigned it already.
	 */
	if (publish)
		(void) GetTopTransactionId();

	/*
	 * Write as the owner of event_log.  An error needs no cleanup here:
	 * aborting the (sub)transaction restores the user.
	 */
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(tables.log_owner,
						   save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	event_id = append_event(event);
	if (publish)
		queue_event(event_id);
	SetUserIdAndSecContext(save_userid, save_sec_context);

	/* Let later statements of the transaction see the rows. */
	CommandCounterIncrement();

	if (publish)
		PublisherWakeAtCommit();
	return event_id;
}
