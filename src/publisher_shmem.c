/*-------------------------------------------------------------------------
 *
 * publisher_shmem.c
 *	  What the publisher worker shares with the backends: its latch, so that
 *	  a committing writer can wake it, and its state for the
 *	  publisher_status view; and what it tells its own next start: that
 *	  connecting to its database failed.
 *
 * A backend that queued an event in the outbox sets a flag; at commit a
 * transaction callback counts the commit and sets the worker's latch.  The
 * callback runs after the commit is visible to other transactions (the
 * worker must see the outbox row once it wakes), and it must not fail, so
 * it only touches a counter and a pointer under a spinlock and sets a latch.
 * A prepared transaction's commit runs no callback of its own: COMMIT
 * PREPARED wakes the worker once it returns.
 * The count is for the wake-ups the latch loses: any wait inside a batch (a
 * lock, the commit's wait for a synchronous standby) uses and resets the
 * worker's latch too.  While the worker pauses between batches on purpose,
 * commits are only counted.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/utility.h"
#include "utils/builtins.h"

#include "upsert_order.h"

/* Enough for an error message; longer ones are cut. */
#define PUBLISHER_ERROR_LEN		512

typedef struct PublisherShared
{
	slock_t		mutex;			/* protects everything below */
	pid_t		pid;			/* the worker's, 0 when it is not running */
	Latch	   *latch;			/* the worker's latch, NULL when not running */
	bool		pausing;		/* the worker pauses on purpose: commits need
								 * not wake it */
	uint64		commits;		/* commits that queued events, ever */
	Oid			database;		/* the database the worker is connected to */
	bool		connecting;		/* the worker is connecting, or its last start
								 * failed to */
	Oid			publication_relid;	/* the table last_seq refers to */
	int64		last_seq;		/* last seq notified since the worker started */
	char		last_error[PUBLISHER_ERROR_LEN];	/* "" after a success */
} PublisherShared;

static PublisherShared *publisher = NULL;

/* Set when this transaction queued an event; cleared at its end. */
static bool wake_at_commit = false;

PG_FUNCTION_INFO_V1(publisher_state);

void
PublisherRequestShmem(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(PublisherShared)));
}

void
PublisherStartupShmem(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	publisher = ShmemInitStruct("upsert_order publisher", sizeof(PublisherShared), &found);
	if (!found)
	{
		memset(publisher, 0, sizeof(PublisherShared));
		SpinLockInit(&publisher->mutex);
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Is this database the one the publisher serves?  Events are queued only
 * there: elsewhere nobody would ever take them out of the outbox.  Computed
 * once per backend; a served database cannot be renamed while the worker is
 * connected to it.
 */
bool
PublisherServesThisDatabase(void)
{
	static int	serves = -1;

	if (serves < 0)
	{
		char	   *name;

		if (publisher == NULL || publisher_database == NULL)
			serves = 0;
		else
		{
			name = get_database_name(MyDatabaseId);
			serves = (name != NULL && strcmp(name, publisher_database) == 0) ? 1 : 0;
		}
	}
	return serves == 1;
}

/*
 * How many commits queued events so far.  The worker reads it before a
 * batch, and does not sleep after the batch if it moved: a commit whose
 * wake-up a wait inside the batch consumed may have queued events the
 * batch did not see.
 */
uint64
PublisherCommitCount(void)
{
	uint64		commits;

	SpinLockAcquire(&publisher->mutex);
	commits = publisher->commits;
	SpinLockRelease(&publisher->mutex);
	return commits;
}

/*
 * The worker starts (or ends) a pause after which it runs a batch whatever
 * happened meanwhile: until then, a commit only counts itself, and spares
 * the worker a wake-up, and itself the signal that sends it.  Signals to the
 * worker (SIGTERM, SIGHUP) still set its latch.
 */
void
PublisherPausing(bool pausing)
{
	SpinLockAcquire(&publisher->mutex);
	publisher->pausing = pausing;
	SpinLockRelease(&publisher->mutex);
}

/* Called by the event log once it queued an event in this transaction. */
void
PublisherWakeAtCommit(void)
{
	wake_at_commit = true;
}

/* Count a commit that queued events, and wake the worker unless it pauses. */
static void
publisher_wake(void)
{
	Latch	   *latch;

	if (publisher == NULL)
		return;
	SpinLockAcquire(&publisher->mutex);
	publisher->commits++;
	latch = publisher->pausing ? NULL : publisher->latch;
	SpinLockRelease(&publisher->mutex);
	if (latch != NULL)
		SetLatch(latch);
}

/*
 * Transaction callback: wake the worker when a transaction that queued
 * events commits.  A subtransaction that queued an event and then rolled
 * back leaves the flag set; the wake-up it causes is harmless.
 */
static void
publisher_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
			if (wake_at_commit)
				publisher_wake();
			wake_at_commit = false;
			break;

			/* A prepared transaction wakes the worker at COMMIT PREPARED. */
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			wake_at_commit = false;
			break;
		default:
			break;
	}
}

static ProcessUtility_hook_type prev_process_utility = NULL;

/*
 * COMMIT PREPARED commits a transaction that may have queued events, in a
 * session whose own transaction queued none, maybe after a restart: wake
 * the worker once the prepared transaction's commit is visible, which it is
 * when the command returns.  The command runs in the prepared transaction's
 * own database, so only where the worker serves it can that have queued
 * events.  Whether it did is not known here; a wake-up for nothing costs
 * the worker one look at an empty queue.
 */
static void
publisher_process_utility(PlannedStmt *pstmt, const char *queryString,
						  bool readOnlyTree, ProcessUtilityContext context,
						  ParamListInfo params, QueryEnvironment *queryEnv,
						  DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;
	bool		commit_prepared;

	/* asked now, while a transaction is sure to be open for the lookup */
	commit_prepared = IsA(parsetree, TransactionStmt) &&
		((TransactionStmt *) parsetree)->kind == TRANS_STMT_COMMIT_PREPARED &&
		PublisherServesThisDatabase();

	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context,
							 params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);

	if (commit_prepared)
		publisher_wake();
}

void
PublisherInitCallbacks(void)
{
	RegisterXactCallback(publisher_xact_callback, NULL);
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = publisher_process_utility;
}

/* on_shmem_exit callback of the worker: it is no longer there to be woken. */
static void
publisher_detach(int code, Datum arg)
{
	SpinLockAcquire(&publisher->mutex);
	publisher->pid = 0;
	publisher->latch = NULL;
	publisher->pausing = false;
	SpinLockRelease(&publisher->mutex);
}

/*
 * Note that the worker is (or is no longer) connecting to its database, and
 * return the note as it was: true when the last start failed to connect.
 */
bool
PublisherNoteConnecting(bool connecting)
{
	bool		was;

	SpinLockAcquire(&publisher->mutex);
	was = publisher->connecting;
	publisher->connecting = connecting;
	SpinLockRelease(&publisher->mutex);
	return was;
}

/* Called by the worker once connected: publish its pid and latch. */
void
PublisherAttach(void)
{
	if (publisher == NULL)
		elog(ERROR, "upsert_order publisher shared memory is not initialized");

	SpinLockAcquire(&publisher->mutex);
	publisher->pid = MyProcPid;
	publisher->latch = MyLatch;
	publisher->pausing = false;
	publisher->database = MyDatabaseId;
	publisher->publication_relid = InvalidOid;
	publisher->last_seq = 0;
	publisher->last_error[0] = '\0';
	SpinLockRelease(&publisher->mutex);

	on_shmem_exit(publisher_detach, (Datum) 0);
}

/* The worker notified up to last_seq, recorded in that publication table. */
void
PublisherReportSuccess(Oid publication_relid, int64 last_seq)
{
	SpinLockAcquire(&publisher->mutex);
	publisher->publication_relid = publication_relid;
	publisher->last_seq = last_seq;
	publisher->last_error[0] = '\0';
	SpinLockRelease(&publisher->mutex);
}

void
PublisherReportError(const char *message)
{
	/* cut at a character boundary: publisher_status shows it as text */
	int			len = pg_mbcliplen(message, strlen(message), PUBLISHER_ERROR_LEN - 1);

	SpinLockAcquire(&publisher->mutex);
	memcpy(publisher->last_error, message, len);
	publisher->last_error[len] = '\0';
	SpinLockRelease(&publisher->mutex);
}

/*
 * _publisher_state(): the worker's pid, the last seq it notified and its last
 * error, as seen by this database.  Behind the publisher_status view, which
 * adds what can be counted in SQL.
 *
 * When the library is not preloaded, or in a database the worker does not
 * serve, the pid and seq are null and last_error says why.  last_seq is
 * null until the worker notified something since it started, or when it
 * refers to another incarnation of the extension (dropped and created
 * again).
 */
Datum
publisher_state(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[3];
	bool		nulls[3] = {true, true, true};
	PublisherShared state;
	Oid			publication_relid;
	Oid			owner;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	if (publisher == NULL)
	{
		/* no worker runs, which a monitoring query sees as such */
		values[2] = CStringGetTextDatum("no publisher: upsert_order is not in shared_preload_libraries");
		nulls[2] = false;
	}
	else if (!PublisherServesThisDatabase())
	{
		values[2] = CStringGetTextDatum(psprintf("this database is not published: upsert_order.database is \"%s\"",
												 publisher_database));
		nulls[2] = false;
	}
	else
	{
		SpinLockAcquire(&publisher->mutex);
		memcpy(&state, publisher, sizeof(state));
		SpinLockRelease(&publisher->mutex);

		if (state.pid != 0 && state.database == MyDatabaseId)
		{
			values[0] = Int32GetDatum(state.pid);
			nulls[0] = false;
		}
		publication_relid = ExtensionTableLookup("publication", &owner);
		if (OidIsValid(state.publication_relid) &&
			state.publication_relid == publication_relid)
		{
			values[1] = Int64GetDatum(state.last_seq);
			nulls[1] = false;
		}
		if (state.last_error[0] != '\0')
		{
			values[2] = CStringGetTextDatum(state.last_error);
			nulls[2] = false;
		}
	}

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}
