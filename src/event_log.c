/*-------------------------------------------------------------------------
 *
 * event_log.c
 *	  Appends one row to upsert_order.event_log for every message, in the
 *	  caller's transaction, and queues applied events for the publisher.
 *
 * Callers of versioned_upsert() hold no privilege on event_log, and must not
 * be able to forge or erase its rows.  The rows are written here, through
 * the executor's simple insert path (the one logical replication uses to
 * apply a row; see extension_tables.c), with values the extension computed:
 * no SQL statement, no plan, no permission check on the extension's own
 * tables.  While a row is written the current user is the owner of its
 * table, the way PostgreSQL runs foreign-key checks as the owner of the
 * referenced table, so that anything that does run (a trigger the owner
 * added) runs as the owner.  A batch of messages keeps both tables open
 * for inserts from its first row to its end.
 *
 * An applied event (inserted or updated) in the database the publisher
 * serves is also queued in upsert_order.outbox in the same transaction, so
 * the event and its place in the queue commit or vanish together; the
 * publisher worker is woken when the transaction commits.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "upsert_order.h"

static const char *const log_column_names[LOG_NCOLUMNS] = {
	"event_id", "target", "key", "version", "outcome", "payload", "data", "logged_at"
};

/* Their types; the version's, rowseq, has an OID only known at run time. */
static const Oid log_column_types[LOG_NCOLUMNS] = {
	INT8OID, REGCLASSOID, JSONBOID, InvalidOid, TEXTOID, JSONBOID, JSONBOID, TIMESTAMPTZOID
};

/* What we know of the extension's tables; reset when any of them changes. */
typedef struct EventLogTables
{
	bool		valid;
	Oid			log_relid;
	Oid			log_owner;
	Oid			outbox_owner;
	Oid			seq_relid;		/* event_log_event_id_seq */
	Oid			outbox_relid;
	AttrNumber	log_attnum[LOG_NCOLUMNS];
	AttrNumber	outbox_attnum;	/* outbox.event_id */
} EventLogTables;

static EventLogTables tables;

/*
 * The appenders a batch keeps open (EventLogBatchBegin, EventLogBatchEnd):
 * opening one costs a good part of an insert.  A single call opens and
 * closes its own.
 */
static Appender *kept_log = NULL;
static Appender *kept_outbox = NULL;

/* Batches running (nested ones count: a trigger may start one). */
static int	batch_depth = 0;

/*
 * The outermost batch's resource owner and memory.  Kept appenders are used
 * only while that owner is current, so that whatever they hold belongs to
 * it: a call nested in a subtransaction (in a trigger, say) gets temporary
 * ones.
 */
static ResourceOwner batch_owner = NULL;
static MemoryContext batch_cxt = NULL;

/* One of the tables changed since the kept appenders were opened. */
static bool appenders_stale = false;

/* Forget the tables when one of them (or everything) is invalidated. */
static void
event_log_invalidate(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || relid == tables.log_relid ||
		relid == tables.seq_relid || relid == tables.outbox_relid)
	{
		tables.valid = false;
		appenders_stale = true;
	}
}

static void event_log_xact_callback(XactEvent event, void *arg);

void
EventLogInitCache(void)
{
	CacheRegisterRelcacheCallback(event_log_invalidate, (Datum) 0);
	RegisterXactCallback(event_log_xact_callback, NULL);
}

/*
 * Find the extension's tables and the attribute numbers of their columns.
 * Called again once a table is locked for an insert: taking the lock
 * processes the invalidations of a change committed meanwhile.
 */
static void
event_log_tables(void)
{
	Oid			seq_owner;

	if (tables.valid)
		return;

	tables.log_relid = ExtensionTableLookup("event_log", &tables.log_owner);
	tables.seq_relid = ExtensionTableLookup("event_log_event_id_seq", &seq_owner);
	tables.outbox_relid = ExtensionTableLookup("outbox", &tables.outbox_owner);
	for (int i = 0; i < LOG_NCOLUMNS; i++)
	{
		Oid			typid = log_column_types[i];

		if (i == LOG_VERSION)
			typid = RowseqTypeOid();
		tables.log_attnum[i] = ExtensionColumn(tables.log_relid, "event_log",
											   log_column_names[i], typid);
	}
	tables.outbox_attnum = ExtensionColumn(tables.outbox_relid, "outbox", "event_id", INT8OID);
	tables.valid = true;
}

/* Close the kept appenders: the batch ended, or a table changed. */
static void
appenders_close_kept(void)
{
	if (kept_log)
		AppenderClose(kept_log);
	if (kept_outbox)
		AppenderClose(kept_outbox);
	kept_log = kept_outbox = NULL;
}

/*
 * Forget the kept appenders without closing them: after an error, the abort
 * of the (sub)transaction that owns batch_owner releases what they hold,
 * and their memory goes with the batch's.
 */
static void
appenders_forget_kept(void)
{
	kept_log = kept_outbox = NULL;
	batch_depth = 0;
	batch_owner = NULL;
	batch_cxt = NULL;
	appenders_stale = false;
}

/* A transaction never ends inside a batch; if one did, start afresh. */
static void
event_log_xact_callback(XactEvent event, void *arg)
{
	appenders_forget_kept();
}

/*
 * Keep the tables open for inserts until the matching EventLogBatchEnd(), or
 * EventLogBatchAbort() on error.
 */
void
EventLogBatchBegin(void)
{
	if (batch_depth++ == 0)
	{
		batch_owner = CurrentResourceOwner;
		batch_cxt = CurrentMemoryContext;
	}
}

void
EventLogBatchEnd(void)
{
	Assert(batch_depth > 0);
	if (--batch_depth == 0)
	{
		appenders_close_kept();
		appenders_forget_kept();
	}
}

void
EventLogBatchAbort(void)
{
	/*
	 * A nested batch's error may have been caught by a subtransaction inside
	 * the outer one; what the outer batch keeps belongs to the outer's owner
	 * and stays valid, and an insert of the outer batch that was running
	 * when the nested batch began still is.
	 */
	if (--batch_depth <= 0)
		appenders_forget_kept();
}

/* Is an insert through a kept appender running? */
static bool
appenders_busy(void)
{
	return (kept_log && AppenderBusy(kept_log)) || (kept_outbox && AppenderBusy(kept_outbox));
}

/*
 * The appender to insert into one of the tables with: in a batch, the kept
 * one, opened on first use; otherwise a temporary one.  Temporary ones are
 * also used where a kept one must not be: inside a subtransaction of the
 * batch, while a kept one's insert runs (a function in a constraint of the
 * table may log a message of its own), and on a table with triggers (which
 * an owner may add), whose firing state should not outlive a row.
 */
static Appender *
appender_get(Appender **kept, Oid relid)
{
	if (batch_depth == 0 || CurrentResourceOwner != batch_owner || appenders_busy())
		return AppenderOpenOneRow(relid);
	if (appenders_stale)
	{
		appenders_close_kept();
		appenders_stale = false;
	}
	if (*kept == NULL)
	{
		MemoryContext oldcxt = MemoryContextSwitchTo(batch_cxt);

		*kept = AppenderOpen(relid);
		MemoryContextSwitchTo(oldcxt);
	}
	if (AppenderHasTriggers(*kept))
		return AppenderOpenOneRow(relid);
	return *kept;
}

/*
 * Open one of the extension's tables for an insert; *relid is its field in
 * tables.  Locking the table may have brought news of a change to it: look
 * the tables up again, and refuse a table that is no longer the one named.
 */
static Appender *
appender_for(Appender **kept, Oid *relid)
{
	Appender   *ap = appender_get(kept, *relid);
	Relation	rel = AppenderRelation(ap);

	event_log_tables();
	if (RelationGetRelid(rel) != *relid)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("relation \"%s.%s\" was replaced while it was being written",
						UPSERT_ORDER_SCHEMA, RelationGetRelationName(rel)),
				 errhint("Retry the transaction.")));
	return ap;
}

/*
 * event_log's OID, and the attribute numbers of its columns, in the order of
 * EventLogColumn, in attnums.  For a caller that has locked event_log: the
 * lock processed the invalidations of any change committed before it.
 */
Oid
EventLogColumns(AttrNumber *attnums)
{
	event_log_tables();
	memcpy(attnums, tables.log_attnum, sizeof(tables.log_attnum));
	return tables.log_relid;
}

/*
 * The OIDs of event_log, its sequence and the outbox, as kept here (looked
 * up again after any of them changed).  For the publisher, which locks the
 * tables afterwards, and checks event_log's OID again then
 * (EventLogColumns).
 */
void
EventLogTableOids(Oid *log_relid, Oid *seq_relid, Oid *outbox_relid)
{
	event_log_tables();
	*log_relid = tables.log_relid;
	*seq_relid = tables.seq_relid;
	*outbox_relid = tables.outbox_relid;
}

/* The owner of event_log, as kept here with its OID. */
Oid
EventLogOwner(void)
{
	event_log_tables();
	return tables.log_owner;
}

/*
 * Are the OIDs kept here current: has none of the tables changed since they
 * were looked up, as far as the invalidations taken in so far tell?
 */
bool
EventLogTablesCurrent(void)
{
	return tables.valid;
}

/*
 * The event_id of an event about to be logged: taken as the row is
 * written, or ahead of it when the row must be logged after something that
 * runs in between (upsert.c).
 */
int64
EventLogTakeId(void)
{
	int64		event_id;

	/*
	 * A read-only transaction may write a temporary target, but not the log;
	 * say so in the call's terms before nextval() refuses in its own.
	 */
	if (XactReadOnly)
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot log an event in a read-only transaction"),
				 errdetail("Every message is logged in %s.event_log, even one for a temporary table.",
						   UPSERT_ORDER_SCHEMA)));

	event_log_tables();

	/*
	 * The publisher relies on a transaction having its ID, and holding the
	 * lock that writing event_log takes, before it takes the event_id of an
	 * event it queues (see the top of outbox_horizon.c).  Writing the target
	 * row has usually assigned the ID already, and writing the event takes
	 * both anyway.
	 */
	(void) GetTopTransactionId();
	LockRelationOid(tables.log_relid, RowExclusiveLock);
	event_id = nextval_internal(tables.seq_relid, false);

	/*
	 * The publisher's queue starts after 0, and 0 means "none taken yet":
	 * only a sequence altered by hand hands out less.
	 */
	if (event_id <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("sequence \"%s.event_log_event_id_seq\" returned event_id %lld",
						UPSERT_ORDER_SCHEMA, (long long) event_id),
				 errdetail("Event IDs start at 1."),
				 errhint("Set the sequence back above the highest event_id with setval().")));
	return event_id;
}

/* Write the event_log row; returns its event_id. */
static int64
append_event(const LoggedEvent *event)
{
	int64		event_id = event->event_id ? event->event_id : EventLogTakeId();
	Appender   *ap = appender_for(&kept_log, &tables.log_relid);

#define SET_COLUMN(col, value) AppenderSet(ap, tables.log_attnum[col], (value))
	AppenderNewRow(ap);
	SET_COLUMN(LOG_EVENT_ID, Int64GetDatum(event_id));
	SET_COLUMN(LOG_TARGET, ObjectIdGetDatum(event->target));
	SET_COLUMN(LOG_KEY, JsonbPGetDatum(event->key));
	SET_COLUMN(LOG_VERSION, RowseqGetDatum(event->version));
	SET_COLUMN(LOG_OUTCOME, CStringGetTextDatum(event->outcome));
	SET_COLUMN(LOG_PAYLOAD, JsonbPGetDatum(event->payload));
	if (!event->data_isnull)
		SET_COLUMN(LOG_DATA, event->data);
	else
		AppenderSetNull(ap, tables.log_attnum[LOG_DATA]);
	SET_COLUMN(LOG_LOGGED_AT, TimestampTzGetDatum(GetCurrentTimestamp()));
#undef SET_COLUMN

	AppenderInsert(ap);
	return event_id;
}

/* Queue an applied event for the publisher. */
static void
queue_event(int64 event_id)
{
	Appender   *ap = appender_for(&kept_outbox, &tables.outbox_relid);

	AppenderNewRow(ap);
	AppenderSet(ap, tables.outbox_attnum, Int64GetDatum(event_id));
	AppenderInsert(ap);
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
	int			owner_sec_context;
	int64		event_id;
	bool		publish;

	event_log_tables();

	publish = (strcmp(event->outcome, "inserted") == 0 ||
			   strcmp(event->outcome, "updated") == 0) &&
		PublisherServesThisDatabase();

	/*
	 * Write each row as the owner of its table.  An error needs no cleanup
	 * here: aborting the (sub)transaction restores the user.  Not in an
	 * OwnerSection, whose two settings would cost a good part of a call:
	 * AppenderInsert() reduces search_path where an insert can run code,
	 * and the simple insert path applies no row level security.
	 */
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	owner_sec_context = save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
		SECURITY_RESTRICTED_OPERATION;
	SetUserIdAndSecContext(tables.log_owner, owner_sec_context);
	event_id = append_event(event);
	if (publish)
	{
		SetUserIdAndSecContext(tables.outbox_owner, owner_sec_context);
		queue_event(event_id);
	}
	SetUserIdAndSecContext(save_userid, save_sec_context);

	/* Let later statements of the transaction see the rows. */
	CommandCounterIncrement();

	if (publish)
		PublisherWakeAtCommit();
	return event_id;
}
