/*-------------------------------------------------------------------------
 *
 * direct.c
 *	  The direct path of versioned_upsert(): a message is decided and applied
 *	  below SQL, through the executor's row routines (those logical
 *	  replication applies rows with, and the speculative insertion of ON
 *	  CONFLICT), instead of through the INSERT ... ON CONFLICT statement of
 *	  upsert_statement.c.
 *
 * It is taken only where nothing but the row itself could tell the two
 * apart: per table, as target_read_direct() in target.c lists them (a heap
 * table with no triggers, rules or row level security, among others); per
 * message, at READ COMMITTED, with every column present (so no default
 * applies) and none an array or composite.  Then it does what the
 * statement would do, in the same order:
 *
 *	- the privileges the statement needs (INSERT, UPDATE on the columns it
 *	  sets, SELECT on the row), checked the same way;
 *	- the proposed row's NOT NULL and CHECK constraints, which ON CONFLICT
 *	  checks before it looks for a conflict;
 *	- the stored version, read with a fresh snapshot (taken again after
 *	  the CHECK constraints ran, since a function they call may have
 *	  changed the row);
 *	- when another transaction is updating or deleting that row, or holds
 *	  a lock on it, the row lock, which waits for that transaction as the
 *	  statement's lock does; if it changed the row, the decision starts
 *	  over from the index, as the statement's does (the row may now have
 *	  another key, or be gone);
 *	- a message not newer than the stored version is stale or a duplicate
 *	  right there.  Unlike the statement, the call does not lock the row
 *	  when nobody else held it: a writer that comes after it does not wait
 *	  for its transaction to end;
 *	- a newer message updates the row read, checking the row it writes
 *	  (with the stored key) against the constraints, as UPDATE does, under
 *	  the row lock the statement takes (taken first where another unique
 *	  index covers the columns it sets, or a CHECK constraint calls a
 *	  function that is not immutable);
 *	- a key with no visible row is inserted as ON CONFLICT inserts:
 *	  speculatively, confirmed only if nobody inserted the key meanwhile.
 *	  ON CONFLICT first waits for any transaction inserting the same key;
 *	  the call, which has just found no row, does so only when it tries
 *	  again after a conflict.
 *
 * Whenever a concurrent writer changed or deleted the row found, or
 * inserted the key not found, it looks again with a new snapshot.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/multixact.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "executor/executor.h"
#include "miscadmin.h"
#if PG_VERSION_NUM >= 160000
#include "parser/parse_relation.h"
#endif
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "storage/procarray.h"
#include "utils/datum.h"
#include "utils/inval.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "upsert_order.h"

/*
 * What the direct path sets up for a target: opened for one call, or kept
 * by a batch for all its rows (DirectOpen, DirectClose).
 */
struct DirectState
{
	UpsertTarget *target;
	uint64		generation;		/* target->generation when opened */
	Oid			userid;			/* the role its expressions were compiled for */
	Relation	rel;
	Relation	pkey;			/* its primary key index */
	EState	   *estate;
	ResultRelInfo *rri;
	bool		indexes_open;	/* for the index entries of non-HOT updates */
	TupleTableSlot *proposed;	/* the row the message describes */
	TupleTableSlot *stored;		/* the row as stored */
	Snapshot	snapshot;		/* of the message being decided */
	uint64		function_changes;	/* direct_function_changes when opened */
};

/*
 * How many times a function or a role's membership changed, as far as this
 * backend has heard.  A state kept by a batch holds the table's constraints
 * and index expressions compiled as they were when it was opened: a SQL
 * function inlined into them, and the EXECUTE privilege on each function
 * they call, checked then.  After a change, the next element opens a new
 * state, so that it sees what a call of its own would.
 */
static uint64 direct_function_changes = 0;

static void
direct_functions_changed(Datum arg, int cacheid, uint32 hashvalue)
{
	direct_function_changes++;
}

void
DirectInitCache(void)
{
	CacheRegisterSyscacheCallback(PROCOID, direct_functions_changed, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHMEMROLEMEM, direct_functions_changed, (Datum) 0);
}

/* Does this message qualify for the direct path? */
bool
DirectApplies(UpsertTarget *target, UpsertMessage *msg)
{
	return target->direct_ok &&
		!IsolationUsesXactSnapshot() &&
		msg->structured == NULL &&
		target->npkey + 1 + bms_num_members(msg->others) == target->nlive;
}

/*
 * The columns INSERT ... ON CONFLICT DO UPDATE would write, as its range
 * table entry lists them: every column of the message inserted, all but
 * the key updated (the SET list).  Offset by FirstLowInvalidHeapAttributeNumber.
 */
static void
direct_written_columns(UpsertTarget *target, Bitmapset **inserted, Bitmapset **updated)
{
	*inserted = NULL;
	*updated = NULL;
	for (int i = 0; i < target->ncolumns; i++)
	{
		AttrNumber	attnum = target->columns[i].attnum;
		bool		is_key = false;

		if (attnum == InvalidAttrNumber)
			continue;
		for (int k = 0; k < target->npkey; k++)
			is_key |= (target->pkey[k] == attnum);
		*inserted = bms_add_member(*inserted, attnum - FirstLowInvalidHeapAttributeNumber);
		if (!is_key)
			*updated = bms_add_member(*updated, attnum - FirstLowInvalidHeapAttributeNumber);
	}
}

/*
 * Set up the direct path for a target, in memory of cxt.  TargetLookup()
 * holds RowExclusiveLock on the table.
 */
DirectState *
DirectOpen(UpsertTarget *target, MemoryContext cxt)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(cxt);
	DirectState *ds = palloc0(sizeof(DirectState));
	Bitmapset  *inserted;
	Bitmapset  *updated;

	ds->target = target;
	ds->generation = target->generation;
	ds->userid = GetUserId();
	ds->function_changes = direct_function_changes;
	ds->rel = table_open(target->relid, NoLock);
	ds->pkey = index_open(target->pkey_index, AccessShareLock);

	direct_written_columns(target, &inserted, &updated);
	ds->estate = SimpleExecStateCreate(ds->rel, inserted, updated, &ds->rri);
	bms_free(inserted);
	bms_free(updated);
	SimpleExecStateRequireUpsertPrivileges(ds->estate, false);
	MemoryContextSwitchTo(ds->estate->es_query_cxt);
	ds->proposed = ExecInitExtraTupleSlot(ds->estate, RelationGetDescr(ds->rel),
										  &TTSOpsVirtual);
	ds->stored = table_slot_create(ds->rel, &ds->estate->es_tupleTable);

	MemoryContextSwitchTo(oldcxt);
	return ds;
}

/*
 * Was ds opened for this (still valid) metadata of its target, for the
 * current role, and with the functions as they are?  Whether the role may
 * execute the functions that the table's constraints and index expressions
 * call is checked when they are compiled, and a function one of them calls
 * may change the role, replace a function or revoke a privilege in the
 * middle of a batch (as may another session: a batch processes
 * invalidations before each element, see target_lock()).
 */
bool
DirectStateMatches(DirectState *ds, UpsertTarget *target)
{
	return ds->generation == target->generation && ds->userid == GetUserId() &&
		ds->function_changes == direct_function_changes;
}

void
DirectClose(DirectState *ds)
{
	SimpleExecStateFree(ds->estate);
	/* the lock stays to the end of the transaction, as after an index scan */
	index_close(ds->pkey, NoLock);
	table_close(ds->rel, NoLock);
	pfree(ds);
}

/*
 * The message's key in the proposed row: what an insert writes.  An update
 * writes the stored key instead (direct_keep_stored_key), and a retry after
 * the row went away puts the message's back.
 */
static void
direct_set_message_key(DirectState *ds, UpsertTarget *target, UpsertMessage *msg)
{
	for (int k = 0; k < target->npkey; k++)
	{
		ds->proposed->tts_values[target->pkey[k] - 1] = msg->key_values[k];
		ds->proposed->tts_isnull[target->pkey[k] - 1] = false;
	}
}

/* Start deciding one message: a fresh snapshot, and the proposed row. */
static void
direct_begin(DirectState *ds, UpsertTarget *target, UpsertMessage *msg)
{
	TupleDesc	tupdesc = RelationGetDescr(ds->rel);

	/*
	 * See what the calling command wrote so far, as SPI does before each
	 * statement it runs: the row it inserted or deleted a moment ago.
	 */
	CommandCounterIncrement();
	ds->estate->es_output_cid = GetCurrentCommandId(true);
	ds->snapshot = RegisterSnapshot(GetLatestSnapshot());
	ds->estate->es_snapshot = ds->snapshot;

	/*
	 * Functions that CHECK constraints and index expressions call see what
	 * they would see under the statement: its snapshot, not the caller's.
	 * It stays active when a retry looks again, as the statement's does.
	 */
	PushActiveSnapshot(ds->snapshot);

	/* Every column comes from the message; a dropped one is null there. */
	ExecClearTuple(ds->proposed);
	memcpy(ds->proposed->tts_values, msg->values, sizeof(Datum) * tupdesc->natts);
	memcpy(ds->proposed->tts_isnull, msg->nulls, sizeof(bool) * tupdesc->natts);
	direct_set_message_key(ds, target, msg);
	ds->proposed->tts_values[target->version_attnum - 1] = RowseqGetDatum(msg->version);
	ds->proposed->tts_isnull[target->version_attnum - 1] = false;
	ExecStoreVirtualTuple(ds->proposed);
	/* a CHECK constraint may read tableoid */
	ds->proposed->tts_tableOid = RelationGetRelid(ds->rel);
}

/* Done with one message: drop what refers to it. */
static void
direct_end(DirectState *ds)
{
	ExecClearTuple(ds->stored);
	ExecClearTuple(ds->proposed);
	ResetPerTupleExprContext(ds->estate);
	/* the first snapshot of the message, which a retry may have unregistered */
	PopActiveSnapshot();
	ds->estate->es_snapshot = InvalidSnapshot;
	UnregisterSnapshot(ds->snapshot);
	ds->snapshot = NULL;
}

/* Find the visible row with the message's key, without locking it. */
static bool
direct_find(DirectState *ds, UpsertTarget *target, UpsertMessage *msg)
{
	ScanKeyData *keys = palloc(sizeof(ScanKeyData) * target->npkey);
	IndexScanDesc scan;
	bool		found;

	for (int k = 0; k < target->npkey; k++)
		ScanKeyEntryInitialize(&keys[k], 0, k + 1, BTEqualStrategyNumber, InvalidOid,
							   target->pkey_collation[k], target->pkey_eqproc[k],
							   msg->key_values[k]);

	scan = index_beginscan(ds->rel, ds->pkey, ds->snapshot, target->npkey, 0);
	index_rescan(scan, keys, target->npkey, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, ds->stored);
	index_endscan(scan);
	return found;
}

/*
 * The row was written by a later command of this transaction than the one
 * deciding the message: a call made while this one checked its proposed
 * row (a CHECK constraint's function, say) changed the same row.  Updating
 * it now would undo that change unseen.  The statement finds the changed
 * row as its conflict and refuses to affect it a second time; this raises
 * the same error.
 */
static void direct_row_changed_by_nested_call(void) pg_attribute_noreturn();

static void
direct_row_changed_by_nested_call(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_CARDINALITY_VIOLATION),
			 errmsg("ON CONFLICT DO UPDATE command cannot affect row a second time"),
			 errhint("Ensure that no rows proposed for insertion within the same command have duplicate constrained values.")));
}

/*
 * Lock the row found, waiting for a concurrent writer of it as the
 * statement's lock does; false when that writer changed or deleted it,
 * which sends the caller back to the index, as the statement starts over
 * (the newest version may have another key).
 */
static bool
direct_lock(DirectState *ds, UpsertTarget *target)
{
	TM_FailureData tmfd;
	TM_Result	result;
	ItemPointerData tid = ds->stored->tts_tid;

	result = table_tuple_lock(ds->rel, &tid, ds->snapshot, ds->stored,
							  ds->estate->es_output_cid,
							  target->update_lockmode,
							  LockWaitBlock, 0, &tmfd);
	switch (result)
	{
		case TM_Ok:
			return true;
		case TM_Updated:
		case TM_Deleted:
			return false;
		case TM_SelfModified:
		case TM_Invisible:
			direct_row_changed_by_nested_call();
			break;
		default:
			elog(ERROR, "unexpected table_tuple_lock result %d", (int) result);
	}
	return false;
}

/* The stored version of the row in ds->stored; false if it is null. */
static bool
direct_stored_version(DirectState *ds, UpsertTarget *target, rowseq *version)
{
	bool		isnull;
	Datum		value = slot_getattr(ds->stored, target->version_attnum, &isnull);

	*version = isnull ? 0 : DatumGetRowseq(value);
	return !isnull;
}

/*
 * Is another transaction writing the row found, or holding a lock on it
 * (which it may take to update or delete the row next)?  The row read is
 * the newest committed version as of our snapshot; if nobody else has an
 * updater or deleter in its xmax, or a lock that is still held, nobody can
 * replace it before this call is done, and its version is the one a message
 * can be compared with.  Whenever in doubt (an updater of any outcome, a
 * multixact with a running member) say yes: the caller then locks the row,
 * which waits only for what the statement's lock would wait for.
 */
static bool
direct_row_contended(DirectState *ds)
{
	BufferHeapTupleTableSlot *bslot = (BufferHeapTupleTableSlot *) ds->stored;
	HeapTupleHeader header;
	uint16		infomask;
	TransactionId xmax;

	Assert(TTS_IS_BUFFERTUPLE(ds->stored));
	header = bslot->base.tuple->t_data;

	LockBuffer(bslot->buffer, BUFFER_LOCK_SHARE);
	infomask = header->t_infomask;
	xmax = HeapTupleHeaderGetRawXmax(header);
	LockBuffer(bslot->buffer, BUFFER_LOCK_UNLOCK);

	if (infomask & HEAP_XMAX_INVALID)
		return false;
	if (!HEAP_XMAX_IS_LOCKED_ONLY(infomask))
		return true;
	/* only lockers: the lock matters while its holder runs */
	if (infomask & HEAP_XMAX_IS_MULTI)
		return MultiXactIdIsRunning(xmax, true);
	return !TransactionIdIsCurrentTransactionId(xmax) && TransactionIdIsInProgress(xmax);
}

/*
 * Did a later command of this transaction than the one deciding the
 * message insert the row found?  Only a call made while the proposed row
 * was checked can have: the statement, which finds such a row as its
 * conflict, refuses it, and so must this (heap_update cannot update it).
 */
static bool
direct_row_inserted_later(DirectState *ds)
{
	BufferHeapTupleTableSlot *bslot = (BufferHeapTupleTableSlot *) ds->stored;
	HeapTupleHeader header;

	Assert(TTS_IS_BUFFERTUPLE(ds->stored));
	header = bslot->base.tuple->t_data;
	return TransactionIdIsCurrentTransactionId(HeapTupleHeaderGetXmin(header)) &&
		HeapTupleHeaderGetCmin(header) >= ds->estate->es_output_cid;
}

/*
 * Open the table's indexes, for as long as the state lives: for inserts and
 * for updates that are not HOT.
 */
static void
direct_open_indexes(DirectState *ds)
{
	MemoryContext oldcxt;

	if (ds->indexes_open)
		return;
	oldcxt = MemoryContextSwitchTo(ds->estate->es_query_cxt);
	/* with what speculative insertion needs for unique indexes */
	ExecOpenIndices(ds->rri, true);
	MemoryContextSwitchTo(oldcxt);
	ds->indexes_open = true;
}

/*
 * The row an update writes keeps the stored key, as the statement's SET
 * (which names only the other columns) does: a message's key may be equal
 * to it without being the same bytes (numeric 1.0 and 1.00, a
 * case-insensitive collation).  ds->stored holds the version to update.
 */
static void
direct_keep_stored_key(DirectState *ds, UpsertTarget *target)
{
	TupleDesc	tupdesc = RelationGetDescr(ds->rel);
	MemoryContext oldcxt = MemoryContextSwitchTo(GetPerTupleMemoryContext(ds->estate));

	for (int k = 0; k < target->npkey; k++)
	{
		AttrNumber	attnum = target->pkey[k];
		Form_pg_attribute att = TupleDescAttr(tupdesc, attnum - 1);
		bool		isnull;
		Datum		value = slot_getattr(ds->stored, attnum, &isnull);

		ds->proposed->tts_values[attnum - 1] = isnull ? (Datum) 0 :
			datumCopy(value, att->attbyval, att->attlen);
		ds->proposed->tts_isnull[attnum - 1] = isnull;
	}
	MemoryContextSwitchTo(oldcxt);
}

/*
 * The row to be updated was changed by a later command of this
 * transaction: a function the constraints of the row being written called
 * changed it.  UPDATE refuses to go on, and so does this, with its error.
 */
static void direct_row_changed_before_update(void) pg_attribute_noreturn();

static void
direct_row_changed_before_update(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_TRIGGERED_DATA_CHANGE_VIOLATION),
			 errmsg("tuple to be updated was already modified by an operation triggered by the current command"),
			 errhint("Consider using an AFTER trigger instead of a BEFORE trigger to propagate changes to other rows.")));
}

/*
 * Update the row found (older than the message) to the proposed row with
 * the stored key, as UPDATE would; false when a concurrent writer changed
 * or deleted the row first (after waiting for it): nothing was written
 * then, and the caller looks again.
 */
static bool
direct_update(DirectState *ds, UpsertTarget *target)
{
	ItemPointerData tid = ds->stored->tts_tid;
	TM_FailureData tmfd;
	TM_Result	result;
	LockTupleMode lockmode;
#if PG_VERSION_NUM >= 160000
	TU_UpdateIndexes update_indexes;
#else
	bool		update_indexes;
#endif

	/* UPDATE checks the row it writes, whose key is the stored one. */
	direct_keep_stored_key(ds, target);
	if (RelationGetDescr(ds->rel)->constr)
	{
		ExecConstraints(ds->rri, ds->proposed, ds->estate);
		TargetCheckUnchanged(target);
	}

	/*
	 * Mostly the row read is still the newest: update it straight away,
	 * with no separate row lock (and WAL record) before.  If it is not, the
	 * update waits for the writer that changed it and fails.
	 */
	result = table_tuple_update(ds->rel, &tid, ds->proposed,
								ds->estate->es_output_cid, ds->snapshot,
								InvalidSnapshot, true, &tmfd, &lockmode,
								&update_indexes);
	switch (result)
	{
		case TM_Ok:
			break;
		case TM_Updated:
		case TM_Deleted:
			return false;
		case TM_SelfModified:
			direct_row_changed_before_update();
			break;
		case TM_Invisible:
			direct_row_changed_by_nested_call();
			break;
		default:
			elog(ERROR, "unexpected table_tuple_update result %d", (int) result);
	}

	/*
	 * A HOT update (no indexed column changed, room on the page) needs no
	 * index entries: the indexes are opened only for the others.
	 */
#if PG_VERSION_NUM >= 160000
	if (update_indexes != TU_None)
	{
		direct_open_indexes(ds);
		if (ds->rri->ri_NumIndices > 0)
			(void) ExecInsertIndexTuples(ds->rri, ds->proposed, ds->estate, true, false,
										 NULL, NIL, update_indexes == TU_Summarizing);
	}
#else
	if (update_indexes)
	{
		direct_open_indexes(ds);
		if (ds->rri->ri_NumIndices > 0)
			(void) ExecInsertIndexTuples(ds->rri, ds->proposed, ds->estate, true, false,
										 NULL, NIL);
	}
#endif
	return true;
}

/* Report a message that changed nothing. */
static void
direct_reject(UpsertMessage *msg, rowseq stored_version, LoggedEvent *event,
			  bool *stored_isnull, rowseq *stored)
{
	*stored_isnull = false;
	*stored = stored_version;
	event->outcome = stored_version == msg->version ? "duplicate" : "stale";
	event->data = (Datum) 0;
	event->data_isnull = true;
}

/*
 * Report a message that was written: the stored row, as event_log.data, is
 * the proposed one, since no trigger or generated column changed it.  Its
 * key is the stored one on an update (direct_keep_stored_key).
 *
 * Unless a function an index expression or predicate ran while the row was
 * indexed dropped one of its columns (a cascaded DROP DOMAIN is not
 * refused there): the proposed row would then be logged with that column.
 */
static void
direct_report_applied(DirectState *ds, UpsertMessage *msg, const char *outcome,
					  LoggedEvent *event, bool *stored_isnull, rowseq *stored)
{
	UpsertTarget *target = ds->target;
	Datum		stored_key[INDEX_MAX_KEYS];

	TargetCheckUnchanged(target);

	for (int k = 0; k < target->npkey; k++)
		stored_key[k] = ds->proposed->tts_values[target->pkey[k] - 1];
	event->key = MessageStoredKey(target, msg, stored_key);

	if (ds->target->row_json_direct)
		event->data = RowToJsonb(ds->target, ds->proposed);
	else
		event->data = FunctionCall1(&ds->target->to_jsonb,
									ExecFetchSlotHeapTupleDatum(ds->proposed));
	event->data_isnull = false;
	event->outcome = outcome;
	*stored_isnull = false;
	*stored = msg->version;
}

/*
 * Decide the message against the row found, and apply it if newer.  Returns
 * false when a concurrent writer changed or deleted the row meanwhile: the
 * caller then looks again.
 */
static bool
direct_decide_existing(DirectState *ds, UpsertMessage *msg, LoggedEvent *event,
					   bool *stored_isnull, rowseq *stored)
{
	UpsertTarget *target = ds->target;
	bool		locked = false;
	rowseq		version;

	if (direct_row_inserted_later(ds))
		direct_row_changed_by_nested_call();

	/*
	 * Another transaction is replacing or deleting the row (or did, and
	 * aborted), or holds a lock on it: lock the row, which waits for that
	 * transaction as the statement's lock would, and start over if it
	 * changed the row.  Otherwise the row read is the one the message is
	 * decided against, as if this call had locked it before any later
	 * writer.
	 */
	if (direct_row_contended(ds))
	{
		if (!direct_lock(ds, target))
			return false;
		locked = true;
	}

	if (direct_stored_version(ds, target, &version) && version >= msg->version)
	{
		direct_reject(msg, version, event, stored_isnull, stored);
		return true;
	}

	/*
	 * The statement locks the row before it updates it, in the mode of an
	 * UPDATE of every column it sets, and only then checks the row it
	 * writes.  Take that lock first where the update itself would not do
	 * the same: where the lock is stronger than the update's own (another
	 * unique index covers a column it sets), and where a CHECK constraint
	 * calls a function that could tell that its check ran before the lock,
	 * or ran again after a concurrent writer made the update fail.
	 */
	if (!locked &&
		(target->update_lockmode == LockTupleExclusive || target->lock_before_check) &&
		!direct_lock(ds, target))
		return false;

	if (!direct_update(ds, target))
		return false;
	direct_report_applied(ds, msg, "updated", event, stored_isnull, stored);
	return true;
}

/* Has the table a unique or exclusion index that is not an arbiter? */
static bool
direct_other_unique_index(DirectState *ds, UpsertTarget *target)
{
	for (int i = 0; i < ds->rri->ri_NumIndices; i++)
	{
		IndexInfo  *info = ds->rri->ri_IndexRelationInfo[i];

		if ((info->ii_Unique || info->ii_ExclusionOps != NULL) &&
			!list_member_oid(target->key_arbiters,
							 RelationGetRelid(ds->rri->ri_IndexRelationDescs[i])))
			return true;
	}
	return false;
}

/*
 * Did a command that ran while the index entries of the row just inserted
 * were made (a function in an index expression that writes the table,
 * however it is marked) lock, update or delete that row?  Each takes the row out of its
 * speculative state, which PostgreSQL's own confirmation of the insertion
 * does not expect (ON CONFLICT trips an assertion there, and in a build
 * without assertions overwrites the link to the row's new version).  An
 * update or a delete is refused, as UPDATE refuses a row such a command
 * changed; a lock alone has already done what the confirmation does, and
 * true tells the caller to skip it.  Heap tables only, as the direct path.
 */
static bool
direct_inserted_row_locked_since(DirectState *ds, bool conflict)
{
	ItemPointer tid = &ds->proposed->tts_tid;
	Buffer		buffer;
	HeapTupleHeader htup;
	bool		speculative;
	bool		locked_only;

	/* nothing else ran unless the command counter moved on since the insert */
	if (GetCurrentCommandId(false) == ds->estate->es_output_cid)
		return false;

	buffer = ReadBuffer(ds->rel, ItemPointerGetBlockNumber(tid));
	LockBuffer(buffer, BUFFER_LOCK_SHARE);
	htup = (HeapTupleHeader) PageGetItem(BufferGetPage(buffer),
										 PageGetItemId(BufferGetPage(buffer),
													   ItemPointerGetOffsetNumber(tid)));
	speculative = HeapTupleHeaderIsSpeculative(htup);
	locked_only = HEAP_XMAX_IS_LOCKED_ONLY(htup->t_infomask);
	UnlockReleaseBuffer(buffer);

	if (speculative)
		return false;
	if (!locked_only || conflict)
		ereport(ERROR,
				(errcode(ERRCODE_TRIGGERED_DATA_CHANGE_VIOLATION),
				 errmsg("tuple being inserted was modified by an operation triggered by the current command"),
				 errdetail("A function called to make the tuple's index entries changed or locked it."),
				 errhint("Index expressions must not write to the table they index.")));
	return true;
}

/*
 * Insert the proposed row for a key with no visible row, as INSERT ... ON
 * CONFLICT does: insert speculatively and confirm the insertion only if no
 * one inserted the key meanwhile.  Returns false when the key turned out to
 * be taken; nothing was inserted then.
 *
 * The arbiters are the statement's: the primary key and any other unique
 * index over exactly its columns (target.c).  A concurrent insertion of the
 * key conflicts in each, and is a reason to look again, never an error.
 *
 * ON CONFLICT first checks them for the key (waiting for a transaction
 * inserting it), so as not to insert a row it would have to take back.  The
 * call has just looked for the key with a fresh snapshot, and found no row:
 * the first attempt goes straight to the insertion, which a conflict only
 * the check would have seen (an insertion not yet committed) takes back.
 * A later attempt (precheck) checks first, and so waits for that
 * transaction instead of trying again at once.
 *
 * Not so when the table has a unique or exclusion index that is not an
 * arbiter: inserting into it waits for that same transaction and, once it
 * commits, fails on the value its row holds there too, where ON CONFLICT,
 * having waited in the check, would find the row and update it.
 */
static bool
direct_insert(DirectState *ds, UpsertTarget *target, bool precheck)
{
	List	   *arbiter = target->key_arbiters;
	ItemPointerData conflict_tid;
	TransactionId xid;
	uint32		token;
	bool		conflict = false;

	direct_open_indexes(ds);
	if ((precheck || direct_other_unique_index(ds, target)) &&
		!ExecCheckIndexConstraints(ds->rri, ds->proposed, ds->estate,
								   &conflict_tid, arbiter))
		return false;

	/* Others inserting the key wait on this lock for our decision. */
	xid = GetCurrentTransactionId();
	token = SpeculativeInsertionLockAcquire(xid);
	table_tuple_insert_speculative(ds->rel, ds->proposed, ds->estate->es_output_cid,
								   0, NULL, token);
#if PG_VERSION_NUM >= 160000
	(void) ExecInsertIndexTuples(ds->rri, ds->proposed, ds->estate, false, true,
								 &conflict, arbiter, false);
#else
	(void) ExecInsertIndexTuples(ds->rri, ds->proposed, ds->estate, false, true,
								 &conflict, arbiter);
#endif
	if (!direct_inserted_row_locked_since(ds, conflict))
		table_tuple_complete_speculative(ds->rel, ds->proposed, token, !conflict);
	SpeculativeInsertionLockRelease(xid);
	return !conflict;
}

/*
 * Look again, with a snapshot that sees what committed since the last look.
 * The old snapshot stays the active one (direct_begin): unregistering it
 * here does not free it while it is active; direct_end() pops it.
 */
static void
direct_new_snapshot(DirectState *ds)
{
	ExecClearTuple(ds->stored);
	UnregisterSnapshot(ds->snapshot);
	ds->snapshot = RegisterSnapshot(GetLatestSnapshot());
	ds->estate->es_snapshot = ds->snapshot;
}

/*
 * A function a CHECK constraint calls may have changed or deleted the row
 * with the message's key (by a nested versioned_upsert(), say).  The
 * statement looks for its conflict with a snapshot that sees every change of
 * its own transaction; look with one that sees those changes too.  The
 * statement's own snapshot stays the active one.
 */
static void
direct_see_constraint_effects(DirectState *ds)
{
	CommandCounterIncrement();
	direct_new_snapshot(ds);
}

/* Decide the message and apply it: update the row with its key, or insert it. */
static void
direct_decide(DirectState *ds, UpsertMessage *msg, LoggedEvent *event,
			  bool *stored_isnull, rowseq *stored)
{
	UpsertTarget *target = ds->target;

	/* The statement's first checks: read-only, privileges, replica identity */
	SimpleExecStateCheckUpsert(ds->estate, ds->rel);

	/* ON CONFLICT checks the proposed row before it looks for a conflict */
	if (RelationGetDescr(ds->rel)->constr)
	{
		ExecConstraints(ds->rri, ds->proposed, ds->estate);
		if (RelationGetDescr(ds->rel)->constr->num_check > 0)
			direct_see_constraint_effects(ds);
		/* a CHECK's function may have dropped a column, as a domain's may */
		TargetCheckUnchanged(target);
	}

	/*
	 * A concurrent writer may change or delete the row found, or insert the
	 * key not found, before this call is done with it: then look again.
	 */
	for (bool first = true;; first = false)
	{
		CHECK_FOR_INTERRUPTS();
		if (direct_find(ds, target, msg))
		{
			if (direct_decide_existing(ds, msg, event, stored_isnull, stored))
				return;
		}
		else if (direct_insert(ds, target, !first))
		{
			direct_report_applied(ds, msg, "inserted", event, stored_isnull, stored);
			return;
		}
		direct_new_snapshot(ds);
		/* a failed update attempt left the stored key in the proposed row */
		direct_set_message_key(ds, target, msg);
	}
}

/* Decide and apply a message DirectApplies() accepted. */
void
DirectUpsert(DirectState *ds, UpsertMessage *msg, LoggedEvent *event,
			 bool *stored_isnull, rowseq *stored)
{
	direct_begin(ds, ds->target, msg);
	direct_decide(ds, msg, event, stored_isnull, stored);
	direct_end(ds);
}
