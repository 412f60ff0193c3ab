/*-------------------------------------------------------------------------
 *
 * publisher.c
 *	  The publisher: a background worker that notifies every committed
 *	  applied event through LISTEN/NOTIFY, in order, exactly once.
 *
 * Writers queue applied events in upsert_order.outbox in the transaction
 * that logs them (event_log.c), and wake the worker when they commit
 * (publisher_shmem.c).  The worker takes the waiting events in event_id
 * order, a batch per transaction, and in that one transaction gives each the
 * next seq, records what it notifies in upsert_order.publication, removes the
 * events from the outbox and issues the notifications.  NOTIFY is
 * transactional, so all of that happens at the worker's commit or not at
 * all: a crash at any point leaves either the batch published and notified,
 * or the batch still waiting with its seqs unused.  The worker commits with
 * at least a local WAL flush, so what listeners were told survives a crash.
 *
 * Why event_id order is safe: two events on the same key are logged by
 * transactions that hold the row lock in turn, and the second takes its
 * event_id after the first committed.  So whenever the worker sees the
 * second, it sees the first too, with a smaller event_id: per key,
 * notifications come in version order.
 *
 * The worker reads the outbox from its consumed horizon, an event_id at or
 * below which nothing can appear in it any more, or from higher up while a
 * transaction that wrote an event holds the horizon back (outbox_horizon.c),
 * so that it does not step over the index entries of the rows it deleted.
 *
 * Only one process publishes a database (this worker), and nothing it does
 * is lost on failure; if a batch fails (a bad channel name, a full
 * notification queue) the worker records the error for publisher_status,
 * waits, and tries the same events again.
 *
 * Between batches, when upsert_order.event_retention is set, the worker
 * also deletes expired events, a batch of event_purge.c's statement per
 * transaction, so that a long retention pass never holds publishing back.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "catalog/pg_database.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "upsert_order.h"

/* Seconds between two retention passes, at most. */
#define RETENTION_INTERVAL_S	10

/*
 * Retention batches per round, before the worker looks for new events: when
 * the last publishing batch was not full, and when it was (under a steady
 * load every batch is full, and retention must still make progress).
 */
#define RETENTION_BATCHES_PER_ROUND 10
#define RETENTION_BATCHES_PER_BUSY_ROUND 1

/* What retention_batch() returns while purge_events() holds the purge lock */
#define RETENTION_PURGE_BUSY	(-2)

/* The longest wait of a retention batch for a row lock */
#define RETENTION_LOCK_TIMEOUT	"1s"

/* Seconds before an error that repeats is logged again. */
#define ERROR_LOG_INTERVAL_S	60

/*
 * Bytes of payloads per batch, at most: a batch ends early when the next
 * event would pass it.  A payload stays under NOTIFY's 8000 bytes, but
 * publish_batch_size of them could take 800 MB, held twice (recorded and
 * queued): this keeps a batch's memory far below that, and still lets a
 * batch of the default size take payloads of any size.
 */
#define PUBLISH_BATCH_BYTES		(16 * 1024 * 1024)

/* One unit of work, run in its own transaction by run_in_transaction(). */
typedef int64 (*PublisherStep) (void);

/* The events a batch publishes, as events_read() found them. */
typedef struct BatchEvents
{
	int			n;
	HeapTuple  *rows;			/* event_log rows, in event_id order */
	TupleDesc	tupdesc;		/* a copy of event_log's */
	AttrNumber	attnums[LOG_NCOLUMNS];	/* event_log's, by EventLogColumn */
	int64		last_seq;		/* the highest seq published before them */
} BatchEvents;

/*
 * A range is read when it holds at most this many event_ids per waiting
 * event: reading an event of the range that is not waiting (a message that
 * was not applied, an event published earlier) costs less than a walk down
 * the index for each waiting one.
 */
#define EVENTS_RANGE_SPREAD		2

/*
 * The last seq of the batch in progress and the publication table it goes
 * to; PublisherMain() reports them once the batch is committed.
 */
static int64 batch_last_seq = 0;
static Oid	batch_relid = InvalidOid;

/*
 * What the last committed batch published: its last seq and the publication
 * table it went to.  PublisherMain() reports them, and the next batch
 * numbers on from there without reading the table back, while
 * published_seq_trusted: the table is read when the worker starts, after a
 * failed batch, and when it is another (the extension was created again).
 */
static int64 published_seq = 0;
static Oid	published_relid = InvalidOid;
static bool published_seq_trusted = false;

/* The horizon the batch in progress reaches once committed. */
static int64 batch_horizon = 0;

/* Did the batch take as many waiting events as it may?  More may wait. */
static bool batch_full = false;

/* The worker's retention pass in progress. */
static TimestampTz retention_cutoff = 0;
static int64 retention_after = 0;
static TimestampTz next_retention = 0;

/* After a retention batch failed, no other before this time. */
static TimestampTz retention_retry_at = 0;

/*
 * Where the retention batch in progress came to, and whether it reached
 * the cutoff: the pass moves on only once the batch has committed.
 */
static int64 retention_batch_after = 0;
static bool retention_batch_reached = false;

/*
 * The last error a kind of step logged, to keep a repeating error from
 * flooding the log; one for each kind, so that a publishing error that
 * lasts and a retention error that comes back do not take turns.
 */
typedef struct StepErrors
{
	char		last_logged[256];
	TimestampTz last_logged_at;
} StepErrors;

static StepErrors publish_errors;
static StepErrors retention_errors;

/* Register the worker; called from _PG_init() while preloading. */
void
PublisherRegisterWorker(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	/* only where transactions can write: a primary, or a standby once promoted */
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	strlcpy(worker.bgw_library_name, "upsert_order", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "PublisherMain", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "upsert_order publisher", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "upsert_order publisher", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

/* The columns of publication that a batch writes. */
static const char *const publication_columns[] = {
	"seq", "event_id", "channel", "payload", "published_at"
};
static const Oid publication_column_types[lengthof(publication_columns)] = {
	INT8OID, INT8OID, TEXTOID, JSONOID, TIMESTAMPTZOID
};

/*
 * The publisher's own tables, found by name once and kept while neither
 * changes, as event_log.c keeps event_log, its sequence and the outbox:
 * every batch would otherwise look each one up again, and the extension
 * itself (pg_extension has no catalog cache), at a tenth of what a small
 * batch costs.  Each is looked up in a generation of tables_generation,
 * which the relcache callback below moves on when either of them (or
 * everything) is invalidated; a lookup is current while its generation is.
 * The OIDs are found at the start of a batch, under the lock on the
 * extension; a table's column numbers once the batch has locked it.
 */
typedef struct WorkerTables
{
	uint64		found_at;		/* generation of the OIDs, 0 before any */
	uint64		publication_found_at;	/* of publication_attnums */
	uint64		settings_found_at;	/* of the settings' attnums */
	Oid			publication;
	Oid			publication_owner;	/* whom its rows are written as */
	Oid			target_settings;
	AttrNumber	publication_attnums[lengthof(publication_columns)];
	AttrNumber	channel_attnum; /* target_settings.channel */
	AttrNumber	publish_data_attnum;	/* target_settings.publish_data */
} WorkerTables;

static WorkerTables worker_tables;
static uint64 tables_generation = 1;

static void
worker_tables_invalidate(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || relid == worker_tables.publication ||
		relid == worker_tables.target_settings)
		tables_generation++;
}

/*
 * Look the tables up.  A lookup may itself take in invalidations (reading a
 * catalog locks it), which move the generation on: the OIDs are then found
 * again at the next batch.
 */
static void
worker_tables_find(void)
{
	uint64		generation = tables_generation;
	Oid			owner;

	worker_tables.publication = ExtensionTableLookup("publication",
													 &worker_tables.publication_owner);
	worker_tables.target_settings = ExtensionTableLookup("target_settings", &owner);
	worker_tables.found_at = generation;
	worker_tables.publication_found_at = 0;
	worker_tables.settings_found_at = 0;
}

/*
 * The column numbers of publication, and of target_settings, each for a
 * batch that has locked the table: the lock took in any change committed
 * since the batch began.
 */
static void
publication_columns_find(void)
{
	uint64		generation = tables_generation;

	if (worker_tables.publication_found_at == generation)
		return;
	for (int c = 0; c < lengthof(publication_columns); c++)
		worker_tables.publication_attnums[c] =
			ExtensionColumn(worker_tables.publication, "publication", publication_columns[c],
							publication_column_types[c]);
	worker_tables.publication_found_at = generation;
}

static void
settings_columns_find(void)
{
	uint64		generation = tables_generation;

	if (worker_tables.settings_found_at == generation)
		return;
	worker_tables.channel_attnum =
		ExtensionColumn(worker_tables.target_settings, "target_settings", "channel", TEXTOID);
	worker_tables.publish_data_attnum =
		ExtensionColumn(worker_tables.target_settings, "target_settings", "publish_data", BOOLOID);
	worker_tables.settings_found_at = generation;
}

/* The extension as extension_ready() last found it. */
static Oid	ready_extoid = InvalidOid;

/*
 * Is the extension installed in this database?  Takes a share lock on it,
 * so that DROP EXTENSION waits for the end of this transaction rather than
 * pulling the tables from under it, and finds its tables (worker_tables).
 * The lock is taken first on the extension found last time.  Taking it
 * takes in the invalidations of whatever committed before: had the
 * extension been dropped, its tables would have gone with it, and the
 * lookups of all five (these two, and event_log.c's three) would no longer
 * be current.  While they are, the extension is still the one installed,
 * with no catalog lookup at all.  (Unless a superuser first took all five
 * tables out of it with ALTER EXTENSION ... DROP, and event_log's rowseq
 * column, which DROP EXTENSION ... CASCADE would drop: then the worker goes
 * on publishing from them until it restarts.)
 * Otherwise the extension is looked up again, under the lock of the one
 * found, which may have been dropped while the lock was awaited.
 */
static bool
extension_ready(void)
{
	Oid			extoid;

	if (OidIsValid(ready_extoid))
	{
		LockDatabaseObject(ExtensionRelationId, ready_extoid, 0, AccessShareLock);
		if (worker_tables.found_at == tables_generation && EventLogTablesCurrent())
			return true;
	}
	extoid = get_extension_oid("upsert_order", true);
	if (!OidIsValid(extoid) || extoid != ready_extoid)
	{
		ready_extoid = InvalidOid;
		if (!OidIsValid(extoid))
			return false;
		LockDatabaseObject(ExtensionRelationId, extoid, 0, AccessShareLock);
		if (get_extension_oid("upsert_order", true) != extoid)
			return false;
	}
	worker_tables_find();
	ready_extoid = extoid;
	return true;
}

/* What a batch needs to know of a target: its settings and its name. */
typedef struct BatchTarget
{
	Oid			target;			/* hash key */
	char	   *channel;
	bool		publish_data;
	char	   *name;			/* schema.table, NULL if it was dropped */
} BatchTarget;

/*
 * A batch's notifications, in seq order: the columns of publication, and
 * the payloads' texts, which NOTIFY sends.
 */
typedef struct BatchNotifications
{
	int			n;
	Datum	   *seqs;
	Datum	   *event_ids;
	char	  **channels;
	Datum	   *payloads;		/* json */
	char	  **texts;
} BatchNotifications;

/*
 * A scan of one of the extension's tables (relid, named relname) by its
 * primary key, whose first column is of type keytype, with a snapshot taken
 * when it begins: the worker reads its tables this way, below SQL.  The
 * caller sets nkeys scan keys on the key's columns with index_rescan().
 */
typedef struct KeyScan
{
	Relation	rel;
	Relation	pkey;
	AttrNumber	key_attnum;		/* the table's column of the key's first */
	Snapshot	snapshot;
	TupleTableSlot *slot;
	IndexScanDesc scan;
} KeyScan;

static void
key_scan_begin(KeyScan *ks, Oid relid, const char *relname, const char *keycol,
			   Oid keytype, int nkeys)
{
	Oid			pkey_relid;
	Form_pg_attribute keyatt;

	ks->rel = table_open(relid, AccessShareLock);
	pkey_relid = RelationGetPrimaryKeyIndex(ks->rel);
	if (!OidIsValid(pkey_relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("relation \"%s.%s\" has no primary key", UPSERT_ORDER_SCHEMA, relname),
				 errhint("Give the table its primary key on column \"%s\" back.", keycol)));
	ks->pkey = index_open(pkey_relid, AccessShareLock);
	ks->key_attnum = ks->pkey->rd_index->indkey.values[0];
	/* a primary key's columns are plain columns, never expressions */
	keyatt = TupleDescAttr(RelationGetDescr(ks->rel), ks->key_attnum - 1);
	if (keyatt->atttypid != keytype || strcmp(NameStr(keyatt->attname), keycol) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the primary key of \"%s.%s\" does not start with column \"%s\" of type %s",
						UPSERT_ORDER_SCHEMA, relname, keycol, format_type_be(keytype)),
				 errhint("Give the table its primary key on column \"%s\" back.", keycol)));
	ks->snapshot = RegisterSnapshot(GetLatestSnapshot());
	ks->slot = table_slot_create(ks->rel, NULL);
	ks->scan = index_beginscan(ks->rel, ks->pkey, ks->snapshot, nkeys, 0);
}

/* The next row of the scan in ks->slot; false at the end. */
static bool
key_scan_next(KeyScan *ks, ScanDirection direction)
{
	return index_getnext_slot(ks->scan, direction, ks->slot);
}

/* End the scan; the locks stay to the end of the transaction. */
static void
key_scan_end(KeyScan *ks)
{
	index_endscan(ks->scan);
	ExecDropSingleTupleTableSlot(ks->slot);
	UnregisterSnapshot(ks->snapshot);
	index_close(ks->pkey, NoLock);
	table_close(ks->rel, NoLock);
}

/*
 * The rows of a catalog whose key, the first column of index (attnum in the
 * catalog), is oid, as snapshot shows them: copies, in index order.
 */
static List *
catalog_rows(Oid catalog, Oid index, AttrNumber attnum, Oid oid, Snapshot snapshot)
{
	Relation	rel = table_open(catalog, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	row;
	List	   *rows = NIL;

	ScanKeyInit(&key, attnum, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(oid));
	scan = systable_beginscan(rel, index, true, snapshot, 1, &key);
	while (HeapTupleIsValid(row = systable_getnext(scan)))
		rows = lappend(rows, heap_copytuple(row));
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return rows;
}

/* The pg_class row of relid as snapshot shows it, or NULL. */
static HeapTuple
class_row(Oid relid, Snapshot snapshot)
{
	List	   *rows = catalog_rows(RelationRelationId, ClassOidIndexId, Anum_pg_class_oid,
									relid, snapshot);
	HeapTuple	row = rows != NIL ? linitial(rows) : NULL;

	list_free(rows);
	return row;
}

/*
 * The tables relid inherits from directly, as snapshot shows pg_inherits:
 * its partitioned table, or its parents under INHERITS.
 */
static List *
inheritance_parents(Oid relid, Snapshot snapshot)
{
	List	   *rows = catalog_rows(InheritsRelationId, InheritsRelidSeqnoIndexId,
									Anum_pg_inherits_inhrelid, relid, snapshot);
	List	   *parents = NIL;
	ListCell   *lc;

	foreach(lc, rows)
	{
		Form_pg_inherits inherits = (Form_pg_inherits) GETSTRUCT((HeapTuple) lfirst(lc));

		parents = lappend_oid(parents, inherits->inhparent);
	}
	list_free_deep(rows);
	return parents;
}

/* Position ks, a scan of target_settings, on relid's row; false if none. */
static bool
settings_row(KeyScan *ks, Oid relid)
{
	ScanKeyData key;

	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(relid));
	index_rescan(ks->scan, &key, 1, NULL, 0);
	return key_scan_next(ks, ForwardScanDirection);
}

/*
 * Are the rows of a table (its pg_class row: class) to be published?  As its
 * row in target_settings says, if it has one (ks is on it) that does; else
 * unless the table has row level security enabled: its policies say which
 * rows each role may see, and a notification goes to every listener.
 */
static bool
table_publishes_data(KeyScan *ks, bool has_settings, Form_pg_class class)
{
	if (has_settings)
	{
		bool		isnull;
		Datum		value = slot_getattr(ks->slot, worker_tables.publish_data_attnum, &isnull);

		if (!isnull)
			return DatumGetBool(value);
	}
	return !class->relrowsecurity;
}

/*
 * Do the tables relid inherits from, and theirs up to the roots, publish
 * their rows (ks's snapshot shows them)?  A child's rows can be read through
 * each of them, under its privileges and policies, and a message may name
 * the child itself.  A partition being detached concurrently still counts as
 * one: until that commits, messages may reach it through its parent.
 *
 * Breadth first, each ancestor once: under multiple inheritance the paths
 * to the roots can be exponentially many more than the tables on them.
 */
static bool
ancestors_publish_data(KeyScan *ks, Oid relid)
{
	List	   *pending = list_make1_oid(relid);
	List	   *seen = list_make1_oid(relid);
	bool		publishes = true;

	while (publishes && pending != NIL)
	{
		List	   *parents;
		ListCell   *lc;

		CHECK_FOR_INTERRUPTS();
		parents = inheritance_parents(linitial_oid(pending), ks->snapshot);
		pending = list_delete_first(pending);
		foreach(lc, parents)
		{
			Oid			parent = lfirst_oid(lc);
			HeapTuple	class;

			if (list_member_oid(seen, parent))
				continue;
			seen = lappend_oid(seen, parent);
			if ((class = class_row(parent, ks->snapshot)) == NULL)
				continue;
			publishes = table_publishes_data(ks, settings_row(ks, parent),
											 (Form_pg_class) GETSTRUCT(class));
			heap_freetuple(class);
			if (!publishes)
				break;
			pending = lappend_oid(pending, parent);
		}
		list_free(parents);
	}
	list_free(pending);
	list_free(seen);
	return publishes;
}

/*
 * Set entry's name and settings, or the defaults where target_settings has
 * none for it (see table_publishes_data()).  A dropped table's settings went
 * with it: its name is NULL, its events go on the default channel, and
 * without their rows, which publish_data() may have kept out of its
 * notifications and which no privilege guards any more.
 * Read with a snapshot of its own, newer than the one the events were read
 * with (that one may predate a setting made before one of the events
 * committed), and the table looked up in pg_class with the same snapshot:
 * the catalog cache may still show a table whose DROP committed, together
 * with its settings, before that snapshot was taken.  A rename committed
 * before it shows.
 *
 * A temporary table has no settings (configure() refuses it), and its rows,
 * which only its own session can read, are not published.  Nor are those of
 * a partition or an inheritance child if a table it inherits from, at any
 * level, keeps its own out.
 */
static void
configured_settings(BatchTarget *entry)
{
	KeyScan		ks;
	HeapTuple	class;
	Form_pg_class form;
	char	   *nspname = NULL;
	bool		has_settings;

	entry->name = NULL;
	entry->channel = publisher_channel;
	entry->publish_data = false;

	key_scan_begin(&ks, worker_tables.target_settings, "target_settings", "target", REGCLASSOID, 1);
	settings_columns_find();
	class = class_row(entry->target, ks.snapshot);
	if (class != NULL)
		nspname = get_namespace_name(((Form_pg_class) GETSTRUCT(class))->relnamespace);
	if (nspname == NULL)
	{
		key_scan_end(&ks);
		return;
	}
	form = (Form_pg_class) GETSTRUCT(class);
	/* quoted where SQL needs it, so that ::regclass reads back this table */
	entry->name = quote_qualified_identifier(nspname, NameStr(form->relname));

	if (form->relpersistence == RELPERSISTENCE_TEMP)
	{
		key_scan_end(&ks);
		return;
	}
	has_settings = settings_row(&ks, entry->target);
	entry->publish_data = table_publishes_data(&ks, has_settings, form);
	if (has_settings)
	{
		bool		isnull;
		Datum		value = slot_getattr(ks.slot, worker_tables.channel_attnum, &isnull);

		if (!isnull)
			entry->channel = TextDatumGetCString(value);
	}

	/* its parents, read with the same snapshot, up to the roots */
	if (entry->publish_data)
		entry->publish_data = ancestors_publish_data(&ks, entry->target);
	key_scan_end(&ks);
}

/* The settings and name of target, looked up once per batch. */
static BatchTarget *
batch_target(HTAB *targets, Oid target)
{
	BatchTarget *entry;
	bool		found;

	entry = hash_search(targets, &target, HASH_ENTER, &found);
	if (!found)
		configured_settings(entry);
	return entry;
}

/*
 * Column col of an event_log row of events; those read without isnull are
 * NOT NULL in event_log.
 */
static Datum
event_column(const BatchEvents *events, HeapTuple row, EventLogColumn col, bool *isnull)
{
	bool		null;
	Datum		value = heap_getattr(row, events->attnums[col], events->tupdesc, &null);

	if (isnull)
		*isnull = null;
	else if (null)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("column \"%s\" of an event in \"%s.event_log\" is null",
						NameStr(TupleDescAttr(events->tupdesc, events->attnums[col] - 1)->attname),
						UPSERT_ORDER_SCHEMA),
				 errdetail("The extension writes a value there in every event."),
				 errhint("Give the column its NOT NULL constraint back, and the event its value.")));
	return value;
}

/*
 * Number the events (the rows of events_read()) after the highest seq
 * published so far, and describe each as its notification, until
 * PUBLISH_BATCH_BYTES would be passed (the first event is always taken):
 * batch->n tells how many were.
 */
static void
describe_events(const BatchEvents *events, BatchNotifications *batch)
{
	MemoryContext batch_cxt = CurrentMemoryContext;
	MemoryContext event_cxt;
	HASHCTL		ctl;
	HTAB	   *targets;
	int64		last_seq = events->last_seq;
	Size		bytes = 0;
	int			n = events->n;

	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(BatchTarget);
	ctl.hcxt = batch_cxt;
	targets = hash_create("upsert_order publisher targets", 16, &ctl,
						  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	batch->n = 0;
	batch->seqs = palloc(sizeof(Datum) * n);
	batch->event_ids = palloc(sizeof(Datum) * n);
	batch->channels = palloc(sizeof(char *) * n);
	batch->payloads = palloc(sizeof(Datum) * n);
	batch->texts = palloc(sizeof(char *) * n);

	/*
	 * Each event's detoasted row and the payloads tried for it live in
	 * event_cxt until the next event: only the payload kept stays for the
	 * batch (as a string and as a json datum), at most NOTIFY's limit.
	 */
	event_cxt = AllocSetContextCreate(batch_cxt, "upsert_order publisher event",
									  ALLOCSET_DEFAULT_SIZES);
	for (int i = 0; i < n; i++)
	{
		HeapTuple	row = events->rows[i];
		PublishedEvent event;
		BatchTarget *target;
		char		version[MAXINT8LEN + 1];
		char	   *payload_text;

		CHECK_FOR_INTERRUPTS();

		/* in batch_cxt: the batch keeps what it learns of a target */
		target = batch_target(targets, DatumGetObjectId(event_column(events, row, LOG_TARGET, NULL)));

		MemoryContextSwitchTo(event_cxt);
		/* only a seq written into publication by hand can get here */
		if (last_seq == PG_INT64_MAX)
			ereport(ERROR,
					(errcode(ERRCODE_SEQUENCE_GENERATOR_LIMIT_EXCEEDED),
					 errmsg("table \"%s.publication\" has reached the largest seq",
							UPSERT_ORDER_SCHEMA),
					 errhint("Delete the rows that were written into it by hand.")));
		event.seq = ++last_seq;
		event.event_id = DatumGetInt64(event_column(events, row, LOG_EVENT_ID, NULL));
		event.table = target->name;
		event.inserted = strcmp(TextDatumGetCString(event_column(events, row, LOG_OUTCOME, NULL)),
								"inserted") == 0;
		event.key = event_column(events, row, LOG_KEY, NULL);
		/* rowseq's text is its decimal number */
		(void) pg_lltoa(DatumGetRowseq(event_column(events, row, LOG_VERSION, NULL)), version);
		event.version = version;
		event.publish_data = target->publish_data;
		event.data = (Datum) 0;
		event.data_isnull = true;
		if (event.publish_data)
			event.data = event_column(events, row, LOG_DATA, &event.data_isnull);
		payload_text = PublisherPayload(&event, PUBLISHER_PAYLOAD_LIMIT);

		MemoryContextSwitchTo(batch_cxt);
		bytes += 2 * (strlen(payload_text) + 1);
		if (i > 0 && bytes > PUBLISH_BATCH_BYTES)
			break;
		batch->n = i + 1;
		batch->seqs[i] = Int64GetDatum(event.seq);
		batch->event_ids[i] = Int64GetDatum(event.event_id);
		batch->channels[i] = target->channel;
		batch->texts[i] = pstrdup(payload_text);
		batch->payloads[i] = CStringGetTextDatum(batch->texts[i]);
		MemoryContextReset(event_cxt);
	}
	MemoryContextDelete(event_cxt);
}

/* The events waiting in the outbox that a batch takes, in event_id order. */
typedef struct WaitingEvents
{
	int			n;
	int64	   *event_ids;
	Datum	   *tids;			/* of their outbox rows */
} WaitingEvents;

/*
 * Read into *waiting the event_ids of up to publisher_batch_size events
 * waiting in the outbox, in order, and the TIDs of their outbox rows; false
 * when none is waiting.  A scan of the outbox's primary key, below SQL:
 * this runs for every batch, and an idle round costs one probe of the
 * index.  The snapshot is taken here, after the horizon's sample, and the
 * scan starts where outbox_horizon.c says it may, given that snapshot.
 * The rows are deleted at these TIDs at the end of the batch: they cannot
 * go meanwhile, or be replaced, while the batch's snapshot holds back
 * VACUUM.
 */
static bool
waiting_read(Oid outbox_relid, WaitingEvents *waiting)
{
	KeyScan		ks;
	ScanKeyData key;

	waiting->n = 0;
	waiting->event_ids = palloc(sizeof(int64) * publisher_batch_size);
	waiting->tids = palloc(sizeof(Datum) * publisher_batch_size);

	key_scan_begin(&ks, outbox_relid, "outbox", "event_id", INT8OID, 1);
	ScanKeyInit(&key, 1, BTGreaterStrategyNumber, F_INT8GT,
				Int64GetDatum(OutboxHorizonScanStart(ks.snapshot)));
	index_rescan(ks.scan, &key, 1, NULL, 0);
	while (waiting->n < publisher_batch_size && key_scan_next(&ks, ForwardScanDirection))
	{
		bool		isnull;
		Datum		event_id = slot_getattr(ks.slot, ks.key_attnum, &isnull);
		ItemPointer tid = palloc(sizeof(ItemPointerData));

		Assert(!isnull);
		ItemPointerCopy(&ks.slot->tts_tid, tid);
		waiting->event_ids[waiting->n] = DatumGetInt64(event_id);
		waiting->tids[waiting->n] = PointerGetDatum(tid);
		waiting->n++;
	}
	key_scan_end(&ks);
	return waiting->n > 0;
}

/*
 * The highest seq published so far (0 before the first): the last entry of
 * publication's primary key.  Only this worker adds to publication.
 */
static int64
last_published_seq(Oid publication_relid)
{
	KeyScan		ks;
	int64		seq = 0;

	key_scan_begin(&ks, publication_relid, "publication", "seq", INT8OID, 0);
	index_rescan(ks.scan, NULL, 0, NULL, 0);
	if (key_scan_next(&ks, BackwardScanDirection))
	{
		bool		isnull;

		seq = DatumGetInt64(slot_getattr(ks.slot, ks.key_attnum, &isnull));
		/* seqs count from 1: a lower one was written by hand */
		if (seq < 1)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("table \"%s.publication\" holds seq %lld", UPSERT_ORDER_SCHEMA,
							(long long) seq),
					 errdetail("Seqs start at 1."),
					 errhint("Delete the rows that were written into it by hand.")));
	}
	key_scan_end(&ks);
	return seq;
}

/*
 * Read the events of waiting from event_log into *events, those that are
 * waiting only (not the others of a range), in event_id order, with a
 * snapshot taken now, and the highest seq published so far.  By event_log's
 * primary key whatever the sizes of event_log and outbox: the waiting
 * event_ids one by one, or the range from the first to the last, which
 * reads every event in it but walks the index down once.  Waiting events
 * are most often the newest, numbered close together, and the range is
 * read then.
 */
static void
events_read(const WaitingEvents *waiting, Oid log_relid, BatchEvents *events)
{
	int64		first = waiting->event_ids[0];
	int64		last = waiting->event_ids[waiting->n - 1];
	bool		range = last - first < (int64) EVENTS_RANGE_SPREAD * waiting->n;
	Oid			publication_relid = worker_tables.publication;
	Oid			relid;
	KeyScan		ks;
	ScanKeyData keys[2];
	int			w = 0;

	/*
	 * event_log first, then the lock the notifications are recorded under:
	 * in the order the retention statement takes them, so that a session
	 * locking both in that order cannot deadlock with a batch.  Both before
	 * the events are read and described, so that a batch kept waiting for
	 * publication describes them as they are once it goes on (a table
	 * dropped meanwhile shows as dropped).
	 */
	LockRelationOid(log_relid, AccessShareLock);
	relid = EventLogColumns(events->attnums);
	if (relid != log_relid)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("relation \"%s.event_log\" was replaced during a publishing batch",
						UPSERT_ORDER_SCHEMA)));
	LockRelationOid(publication_relid, RowExclusiveLock);

	events->last_seq = published_seq_trusted && publication_relid == published_relid ?
		published_seq : last_published_seq(publication_relid);
	key_scan_begin(&ks, relid, "event_log", "event_id", INT8OID, range ? 2 : 1);
	/* a copy: the relcache may rebuild the table's once it is closed */
	events->tupdesc = CreateTupleDescCopy(RelationGetDescr(ks.rel));
	events->rows = palloc(sizeof(HeapTuple) * waiting->n);
	events->n = 0;

	for (int i = 0; i < (range ? 1 : waiting->n); i++)
	{
		if (range)
		{
			ScanKeyInit(&keys[0], 1, BTGreaterEqualStrategyNumber, F_INT8GE, Int64GetDatum(first));
			ScanKeyInit(&keys[1], 1, BTLessEqualStrategyNumber, F_INT8LE, Int64GetDatum(last));
		}
		else
			ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_INT8EQ,
						Int64GetDatum(waiting->event_ids[i]));
		index_rescan(ks.scan, keys, range ? 2 : 1, NULL, 0);

		/* Both lists are in event_id order: one walk keeps the waiting ones. */
		while (key_scan_next(&ks, ForwardScanDirection))
		{
			bool		isnull;
			int64		event_id = DatumGetInt64(slot_getattr(ks.slot, ks.key_attnum, &isnull));

			while (w < waiting->n && waiting->event_ids[w] < event_id)
				w++;
			if (w < waiting->n && waiting->event_ids[w] == event_id)
				events->rows[events->n++] = ExecCopySlotHeapTuple(ks.slot);
		}
	}
	key_scan_end(&ks);
}

/*
 * Run what follows as owner, the owner of one of the extension's tables,
 * and return true (end with OwnerSectionEnd()); unless owner is a
 * superuser.  What the worker's writes run (a trigger, a constraint or an
 * index expression that the owner added) must not run as the superuser the
 * worker is, as writers append to event_log as its owner.  A superuser
 * owner's code may run as one anyway, and the restricted context would
 * only refuse its deferred triggers (a deferrable foreign key referencing
 * publication, for one).
 */
static bool
worker_owner_section_begin(Oid owner, OwnerSection *section)
{
	if (superuser_arg(owner))
		return false;
	OwnerSectionBegin(owner, section);
	return true;
}

/*
 * Record the batch's notifications in publication, and take the first
 * ntaken events of waiting out of the outbox (outbox_relid), those that
 * were not published included, so that they cannot block the queue.  Below
 * SQL, as event_log is written: a statement would cost more to start than
 * to write the few rows of a batch under a steady load.
 */
static void
record_notifications(BatchNotifications *batch, const WaitingEvents *waiting, int ntaken,
					 Oid outbox_relid)
{
	AttrNumber *attnums = worker_tables.publication_attnums;
	Appender   *ap;
	Relation	outbox;
	OwnerSection section;
	bool		as_owner;

	publication_columns_find();
	as_owner = worker_owner_section_begin(worker_tables.publication_owner, &section);
	ap = AppenderOpen(worker_tables.publication);
	for (int i = 0; i < batch->n; i++)
	{
		AppenderNewRow(ap);
		AppenderSet(ap, attnums[0], batch->seqs[i]);
		AppenderSet(ap, attnums[1], batch->event_ids[i]);
		AppenderSet(ap, attnums[2], CStringGetTextDatum(batch->channels[i]));
		AppenderSet(ap, attnums[3], batch->payloads[i]);
		AppenderSet(ap, attnums[4], TimestampTzGetDatum(GetCurrentTimestamp()));
		AppenderInsert(ap);
	}
	AppenderClose(ap);
	if (as_owner)
		OwnerSectionEnd(&section);

	outbox = table_open(outbox_relid, RowExclusiveLock);
	for (int i = 0; i < ntaken; i++)
		simple_table_tuple_delete(outbox, (ItemPointer) DatumGetPointer(waiting->tids[i]),
								  GetActiveSnapshot());
	table_close(outbox, NoLock);
}

/*
 * Publish one batch: the waiting events, up to publisher_batch_size, get the
 * next seqs, their notifications are recorded and queued, and they leave the
 * outbox.  Returns how many events were published, or -1 when the extension
 * is not installed.  Runs inside run_in_transaction().
 */
static int64
publish_batch(void)
{
	bool		keep_horizon;
	TransactionId xmin;
	Oid			log_relid;
	Oid			seq_relid;
	Oid			outbox_relid;
	WaitingEvents waiting;
	BatchEvents events;
	int			nevents;
	int			ntaken;
	BatchNotifications batch;

	batch_full = false;
	if (!extension_ready())
		return -1;

	/*
	 * The snapshot pushed by run_in_transaction(): the statements below take
	 * later ones, whose xmin can only be the same or greater.
	 */
	xmin = GetActiveSnapshot()->xmin;
	EventLogTableOids(&log_relid, &seq_relid, &outbox_relid);
	keep_horizon = OutboxHorizonSample(outbox_relid, seq_relid);
	if (keep_horizon)
		OutboxHorizonCheckWriters(log_relid, xmin);

	/*
	 * Listeners must never be told of a batch that a crash or a failover
	 * could take back, so the commit is flushed to WAL, and waits for the
	 * synchronous standbys if there are any, even when synchronous_commit
	 * is off or local.  That also flushes the commits of the writers, which
	 * come before it.
	 */
	if (synchronous_commit < SYNCHRONOUS_COMMIT_REMOTE_WRITE)
		(void) set_config_option("synchronous_commit", "on",
								 PGC_SUSET, PGC_S_SESSION,
								 GUC_ACTION_LOCAL, true, 0, false);

	if (!waiting_read(outbox_relid, &waiting))
	{
		batch_horizon = keep_horizon ? OutboxHorizonReached(xmin, false, 0) : 0;
		return 0;
	}
	batch_full = waiting.n >= publisher_batch_size;

	batch_relid = worker_tables.publication;
	events_read(&waiting, log_relid, &events);

	/*
	 * The locks of the tables the batch goes on to write and read come
	 * first: a transaction that changed settings waits for this batch as it
	 * commits, and must not hold one of them up (by a LOCK of its own) in
	 * a cycle with the batch.
	 */
	LockRelationOid(worker_tables.publication, RowExclusiveLock);
	LockRelationOid(outbox_relid, RowExclusiveLock);
	LockRelationOid(worker_tables.target_settings, AccessShareLock);
	PublisherLockSettings(ready_extoid, ShareLock);
	describe_events(&events, &batch);
	nevents = events.n;
	ntaken = waiting.n;
	if (batch.n < nevents)
	{
		/* cut short by size: the events after the last described wait */
		int64		last_described = DatumGetInt64(batch.event_ids[batch.n - 1]);

		ntaken = 0;
		while (ntaken < waiting.n && waiting.event_ids[ntaken] <= last_described)
			ntaken++;
		batch_full = true;
	}
	record_notifications(&batch, &waiting, ntaken, outbox_relid);

	/*
	 * Queue the notifications in seq order; they are sent at commit, in that
	 * order.  An invalid channel or payload raises an error here, and a full
	 * queue raises one at commit: either way the whole batch is undone.
	 */
	for (int i = 0; i < batch.n; i++)
		Async_Notify(batch.channels[i], batch.texts[i]);

	batch_last_seq = batch.n > 0 ? DatumGetInt64(batch.seqs[batch.n - 1]) : 0;
	batch_horizon = keep_horizon ?
		OutboxHorizonReached(xmin, batch_full, waiting.event_ids[ntaken - 1]) : 0;
	return batch.n;
}

/*
 * Order changes of the targets' settings and batches, with a lock on the
 * extension (extoid): a batch holds it in share mode from before it reads
 * any settings to its commit, and a transaction that changed settings takes
 * it in row exclusive mode (which conflicts with share mode, not with
 * itself) as it commits, to the end.  So a change either has committed when
 * a batch reads the settings, or commits after the batch: once configure()
 * or publish_data() has committed, every notification made with the setting
 * before was queued before.  Neither side holds it long, the batch for its
 * own work, the change for its commit alone.
 */
void
PublisherLockSettings(Oid extoid, LOCKMODE mode)
{
	LockDatabaseObject(ExtensionRelationId, extoid, SETTINGS_LOCK_SUBID, mode);
}

/*
 * One batch of EventPurgeBatch() for the worker's retention pass;
 * returns how many events it deleted (and where it came to, in
 * retention_batch_after and retention_batch_reached), -1 when the
 * extension is not installed, or RETENTION_PURGE_BUSY when purge_events()
 * is running.
 */
static int64
retention_batch(void)
{
	OwnerSection section;
	bool		as_owner;
	int64		purged;

	if (!extension_ready())
		return -1;
	if (!EventPurgeLock(false))
		return RETENTION_PURGE_BUSY;

	/*
	 * A transaction that deleted or locked expired rows itself (only the
	 * owner of event_log can) would hold this batch, and all publishing
	 * with it, until it ends: give up waiting after a moment instead.  The
	 * error shows in publisher_status, and the pass is tried again
	 * RETENTION_INTERVAL_S later (run_retention()).  For this transaction
	 * only: a setting made with the source of override_settings()
	 * (PGC_S_OVERRIDE) would also become the value the transaction's end
	 * goes back to, and the publishing batches, which wait for as long as
	 * it takes, would then give up too.
	 */
	(void) set_config_option("lock_timeout", RETENTION_LOCK_TIMEOUT,
							 PGC_SUSET, PGC_S_SESSION, GUC_ACTION_LOCAL,
							 true, 0, false);

	/* as event_log's owner, as purge_events() runs it */
	as_owner = worker_owner_section_begin(EventLogOwner(), &section);
	purged = EventPurgeBatch(retention_cutoff, retention_after,
							 &retention_batch_after, &retention_batch_reached);
	if (as_owner)
		OwnerSectionEnd(&section);
	return purged;
}

/*
 * Run one step in a transaction of its own.  On error, log it (unless it
 * repeats the last one of its kind logged within a minute), record it for
 * publisher_status if show_error, and return false: the transaction is
 * rolled back, so nothing of the step remains and the step can simply be
 * run again.
 */
static bool
run_in_transaction(PublisherStep step, const char *activity, StepErrors *errors,
				   bool show_error, int64 *result)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool ok = true;

	PG_TRY();
	{
		/* so that the statement start time shown in pg_stat_activity is this step's */
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, activity);

		*result = step();

		SPI_finish();
		PopActiveSnapshot();

		/*
		 * A cancel that came in the batch aborts it here.  One that comes
		 * during the commit is ignored: it would only cut short the wait for
		 * the synchronous standbys, after which listeners would be told of a
		 * batch no standby holds, and which a failover would number again.
		 * One that came between the check and the signal being ignored is
		 * dropped with them.
		 */
		CHECK_FOR_INTERRUPTS();
		pqsignal(SIGINT, SIG_IGN);
		QueryCancelPending = false;
		CommitTransactionCommand();
		pqsignal(SIGINT, StatementCancelHandler);
#if PG_VERSION_NUM < 150000
		/* before 15, the sender signals the listeners itself */
		ProcessCompletedNotifies();
#endif
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		TimestampTz now = GetCurrentTimestamp();

		pqsignal(SIGINT, StatementCancelHandler);	/* if the commit failed */
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		if (strncmp(edata->message, errors->last_logged, sizeof(errors->last_logged) - 1) != 0 ||
			TimestampDifferenceExceeds(errors->last_logged_at, now, ERROR_LOG_INTERVAL_S * 1000))
		{
			EmitErrorReport();
			strlcpy(errors->last_logged, edata->message, sizeof(errors->last_logged));
			errors->last_logged_at = now;
		}
		FlushErrorState();
		AbortCurrentTransaction();

		if (show_error)
			PublisherReportError(edata->message);
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();

	/* the transaction's end left us in TopMemoryContext */
	MemoryContextSwitchTo(cxt);
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return ok;
}

/* Sleep until latch set, timeout, or postmaster death. */
static void
wait_for_work(long timeout_ms)
{
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 timeout_ms, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
}

/*
 * Between batches: leave on SIGTERM, reload the configuration on SIGHUP.
 * The worker gets a query cancel (SIGINT) as a backend does; during a batch
 * it cancels the batch, which is tried again.  Here there is nothing to
 * cancel, and outside a transaction the error would end the worker: drop it.
 */
static void
serve_interrupts(void)
{
	QueryCancelPending = false;
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

/*
 * Wait until the time given, serving signals, whatever commits meanwhile:
 * the caller runs a batch next, which takes what they queued.
 */
static void
pause_until(TimestampTz until)
{
	long		remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), until);

	if (remaining <= 0)
		return;
	PublisherPausing(true);
	do
	{
		wait_for_work(remaining);
		serve_interrupts();
	} while ((remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), until)) > 0);
	PublisherPausing(false);
}

/*
 * After an error, wait the whole naptime before trying again: under load,
 * commits come all the time, and retrying at that pace would only repeat
 * the error.
 */
static void
back_off(void)
{
	pause_until(TimestampTzPlusMilliseconds(GetCurrentTimestamp(), publisher_naptime));
}

/*
 * Run up to max_batches batches of the retention pass, starting one when
 * upsert_order.event_retention is set and the last one ended long enough
 * ago; *more says that the pass has batches left.  show_errors: a batch's
 * error goes to publisher_status too, not to the log alone.
 *
 * A batch that fails (most likely on a row that event_log's owner locked
 * by hand, after its lock timeout) leaves the pass where it was, for
 * RETENTION_INTERVAL_S: only retention waits, not publishing, which the
 * worker's pause after an error would hold back for a whole naptime each
 * time, and commits would not cut short.  The pass moves on only past
 * batches that committed.
 */
static void
run_retention(int max_batches, bool show_errors, bool *more)
{
	TimestampTz now = GetCurrentTimestamp();
	int64		purged;

	*more = false;
	if (publisher_event_retention <= 0 || now < retention_retry_at)
		return;

	if (retention_cutoff == 0)
	{
		if (now < next_retention)
			return;
		retention_cutoff = now - (TimestampTz) publisher_event_retention * USECS_PER_SEC;
		retention_after = 0;
		next_retention = TimestampTzPlusMilliseconds(now, Min(publisher_event_retention,
															  RETENTION_INTERVAL_S) * 1000);
	}

	for (int i = 0; i < max_batches && retention_cutoff != 0; i++)
	{
		if (!run_in_transaction(retention_batch, "deleting expired upsert_order events",
								&retention_errors, show_errors, &purged))
		{
			retention_retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
															 RETENTION_INTERVAL_S * 1000);
			return;
		}
		if (purged == RETENTION_PURGE_BUSY)
		{
			/* the pass goes on where it was, after the worker's next sleep */
			return;
		}
		if (purged < 0)
		{
			retention_cutoff = 0;	/* the extension is gone */
			break;
		}
		retention_after = retention_batch_after;
		if (retention_batch_reached)
		{
			/* the pass is over; the next one starts from the oldest event again */
			retention_after = 0;
			retention_cutoff = 0;
		}
	}
	*more = retention_cutoff != 0;
}

/*
 * Settings the worker needs whatever the database or the role it connects
 * as set (ALTER DATABASE ... SET applies to it as to any session).
 */
static void
override_settings(void)
{
	/*
	 * It runs as the bootstrap superuser it connected as: the owner of the
	 * database may set role or session_authorization for it, which would
	 * make it a role that cannot write the extension's tables.  The role's
	 * name takes a catalog lookup, so a transaction.
	 */
	StartTransactionCommand();
	SetConfigOption("session_authorization", GetUserNameFromId(BOOTSTRAP_SUPERUSERID, false),
					PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("role", "none", PGC_SUSET, PGC_S_OVERRIDE);
	if (!superuser())
		ereport(FATAL,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("upsert_order publisher must run as a superuser"),
				 errdetail("Role \"%s\", which the worker connects as, is not a superuser.",
						   GetUserNameFromId(BOOTSTRAP_SUPERUSERID, false)),
				 errhint("Give the role the SUPERUSER attribute back.")));
	CommitTransactionCommand();

	/* the worker runs as a superuser: resolve every name in pg_catalog only */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);

	/*
	 * Its batches write, may wait for a lock (configure() or a purge holding
	 * publication), and must not be cut short: a batch that fails is retried
	 * whole, so a timeout shorter than a batch would stall it for good.
	 * Autovacuum forces the same for its own work.
	 */
	SetConfigOption("default_transaction_read_only", "off", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_isolation", "read committed", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("statement_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("lock_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("idle_in_transaction_session_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	/* a failed batch is reported and retried, never the end of the worker */
	SetConfigOption("exit_on_error", "off", PGC_SUSET, PGC_S_OVERRIDE);

	/*
	 * Plan the retention statement once, and by index (a batch reads its
	 * tables by their keys itself).  Every row it touches is found by key or
	 * at the head of an index, and statistics taken while a table was small
	 * (an empty outbox) must not yield a plan that scans it whole once it
	 * has grown.
	 */
	SetConfigOption("plan_cache_mode", "force_generic_plan", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("enable_seqscan", "off", PGC_SUSET, PGC_S_OVERRIDE);
}

/*
 * Can the worker connect to upsert_order.database: does it exist, and does
 * it accept connections?  Read from pg_database, a shared catalog, which a
 * process connected to no database can read, but only by a heap scan: the
 * index on its names may not be in the shared relcache, and without a
 * database it cannot be loaded from pg_class.
 */
static bool
database_connectable(void)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	bool		connectable = false;

	StartTransactionCommand();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_database_datname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum(publisher_database));
	scan = systable_beginscan(rel, DatabaseNameIndexId, false, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tuple);

		connectable = db->datallowconn;
#ifdef DATCONNLIMIT_INVALID_DB
		/* what an interrupted DROP DATABASE leaves (minor releases since 15.4) */
		connectable = connectable && db->datconnlimit != DATCONNLIMIT_INVALID_DB;
#endif
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return connectable;
}

/*
 * The worker's last start failed to connect to upsert_order.database: it
 * does not exist, or does not accept connections.  Connecting again would
 * only fail again, with a FATAL in the log at every restart.  Instead, stay
 * connected to no database, say once what the worker waits for, and look
 * at pg_database every naptime.  Once the database can be connected to,
 * exit to be started again: a process connects to a database only once.
 */
static void wait_for_database(void) pg_attribute_noreturn();

static void
wait_for_database(void)
{
	char	   *activity = psprintf("waiting for database \"%s\"", publisher_database);

	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("upsert_order publisher");
	pgstat_report_activity(STATE_IDLE, activity);
	ereport(LOG,
			(errmsg("upsert_order publisher is waiting for database \"%s\"", publisher_database),
			 errdetail("The database does not exist or does not accept connections."),
			 errhint("Create the database, or set upsert_order.database to another one and restart the server.")));

	while (!database_connectable())
	{
		wait_for_work(publisher_naptime);
		serve_interrupts();
	}

	PublisherNoteConnecting(false);
	ereport(LOG,
			(errmsg("upsert_order publisher found database \"%s\", and restarts to connect to it",
					publisher_database)));
	proc_exit(1);
}

/* Entry point of the worker. */
void
PublisherMain(Datum main_arg)
{
	MemoryContext loop_cxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	/* SIGTERM: leave at once; an open batch is rolled back, nothing is lost */
	pqsignal(SIGTERM, die);
	/* SIGINT keeps a backend's handler: see serve_interrupts() */
	BackgroundWorkerUnblockSignals();

	/*
	 * Connecting to a database that does not exist ends the process with
	 * FATAL, before it could note why: so note the attempt first, and clear
	 * the note once connected.  A note left by the last start is that start's
	 * failure.
	 */
	if (PublisherNoteConnecting(true))
		wait_for_database();
	BackgroundWorkerInitializeConnection(publisher_database, NULL, 0);
	PublisherNoteConnecting(false);
	PublisherAttach();
	pgstat_report_appname("upsert_order publisher");

	override_settings();
	CacheRegisterRelcacheCallback(worker_tables_invalidate, (Datum) 0);

	ereport(LOG,
			(errmsg("upsert_order publisher started for database \"%s\"", publisher_database)));

	loop_cxt = AllocSetContextCreate(TopMemoryContext, "upsert_order publisher",
									 ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(loop_cxt);

	for (;;)
	{
		int64		published;
		bool		more_retention;
		uint64		commits_before;
		TimestampTz batch_started;

		/*
		 * Reset first: a commit from now on makes the next wait return at
		 * once, or, if a wait in the batch consumed its wake-up, moves the
		 * count.
		 */
		ResetLatch(MyLatch);
		commits_before = PublisherCommitCount();
		MemoryContextReset(loop_cxt);
		serve_interrupts();

		batch_started = GetCurrentTimestamp();
		if (!run_in_transaction(publish_batch, "publishing upsert_order events",
								&publish_errors, true, &published))
		{
			/* the retry reads the last seq and finds its own tables again */
			published_seq_trusted = false;
			worker_tables.found_at = 0;

			/*
			 * Events published before go on expiring: a failure that lasts
			 * (a channel name NOTIFY refuses) must not keep them.  Its error
			 * stays in publisher_status; retention's own only goes to the
			 * log.
			 */
			run_retention(RETENTION_BATCHES_PER_ROUND, false, &more_retention);
			back_off();
			continue;
		}
		/* the batch is committed and the listeners signalled */
		if (published > 0)
		{
			published_seq = batch_last_seq;
			published_relid = batch_relid;
			published_seq_trusted = true;
		}
		if (published >= 0)
			OutboxHorizonAdvance(batch_horizon);
		PublisherReportSuccess(published_relid, published_seq);

		if (published >= 0)
		{
			run_retention(batch_full ? RETENTION_BATCHES_PER_BUSY_ROUND :
						  RETENTION_BATCHES_PER_ROUND, true, &more_retention);
			/* a full batch: more may be waiting, go on without sleeping */
			if (batch_full || more_retention)
				continue;
		}

		/*
		 * A commit during the batch: its events may not be in it.  Events
		 * keep coming, so let them gather for the next batch: a batch costs
		 * its own transaction and commit, and the worker's time is taken
		 * from the writers' cores.
		 */
		if (PublisherCommitCount() != commits_before)
		{
			pause_until(TimestampTzPlusMilliseconds(batch_started, publisher_delay));
			continue;
		}
		wait_for_work(publisher_naptime);
	}
}
