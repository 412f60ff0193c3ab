/*-------------------------------------------------------------------------
 *
 * upsert.c
 *	  versioned_upsert() and versioned_upsert_batch(): insert or update one
 *	  row only when the incoming version is newer than the stored one,
 *	  report what happened, and log the message in event_log in the same
 *	  transaction.
 *
 * The write is one INSERT ... ON CONFLICT DO UPDATE ... WHERE statement run
 * through SPI as the calling user, so privileges, row level security,
 * triggers, defaults, constraints and partition routing are exactly those of
 * that statement.  The statement's WHERE clause calls _conflict_check(),
 * which notes the stored version it is shown: that is how the call tells an
 * insert from an update, and a duplicate from a stale message, atomically
 * and without reading the row a second time.
 *
 * Every value is converted first (message.c) and passed as a parameter of
 * its column's type.  Statements are prepared once per target and set of
 * columns and kept until the table changes (upsert_statement.c).
 *
 * Where nothing but the row itself could tell the difference (a full-row
 * message for a plain table), the same decision is made below SQL by the
 * direct path (direct.c), without SPI or the executor's plan machinery.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/sysattr.h"
#include "access/table.h"
#include "catalog/partition.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/bitmapset.h"
#include "storage/itemptr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/tuplestore.h"

#include "upsert_order.h"

/*
 * What _conflict_check() saw during the statement that is running.  The
 * statement passes it the call's token, a random number nothing else in
 * the session knows: a trigger of the target that calls _conflict_check()
 * during the statement cannot pass for it, and so cannot change the
 * outcome the call reports and logs.
 */
typedef struct ConflictNote
{
	uint64		token;			/* of the running statement; 0 when none */
	bool		seen;
	bool		stored_isnull;
	rowseq		stored;
	bool		incoming_isnull;
	rowseq		incoming;
	Oid			stored_table;	/* where the stored row is (a partition, maybe) */
	ItemPointerData stored_tid; /* and its version shown, locked */
	int64		event_id;		/* taken by _event_id(), or 0 */
} ConflictNote;

static ConflictNote conflict_note;

/*
 * The calls running in this backend, innermost first: a call nested in
 * another (from a trigger, a constraint or an index expression) runs while
 * the outer one is not done.  An outer call is "writing" from the moment it
 * starts to apply its message (its conversion done) until its event takes
 * its event_id, or until its statement finds that the message changes
 * nothing (the direct path runs no function of the user's once it has
 * decided, so it needs no such early end).  A nested call that applies a
 * message to the same key in that window is refused: once the outer row is
 * written (from an index expression, say), the nested event would take an
 * event_id below the outer one while its version is stored above it, and
 * so break the order of the log; before that (from a CHECK or a BEFORE
 * trigger), the outer call would fail on the row the nested call changed
 * anyway (21000 or 27000), with a less telling error.  "The same key" is
 * the same row: keys equal as the primary key compares them, on the same
 * table, or on a partitioned table and one of its partitions.  A BEFORE
 * trigger that skips the outer row leaves the call writing to the end of
 * its statement, so a nested call from an AFTER STATEMENT trigger is
 * refused there too, although the outer call wrote nothing.
 */
typedef struct RunningCall
{
	Oid			relid;
	Datum	   *key_values;		/* the message's key, once parsed */
	bool		writing;
	struct RunningCall *outer;
} RunningCall;

static RunningCall *running_call = NULL;

PG_FUNCTION_INFO_V1(versioned_upsert);
PG_FUNCTION_INFO_V1(versioned_upsert_batch);
PG_FUNCTION_INFO_V1(conflict_check);
PG_FUNCTION_INFO_V1(event_id_for_statement);

/* Is a versioned_upsert() call running in this backend? */
bool
UpsertCallRunning(void)
{
	return running_call != NULL;
}

/* Is the running call nested in another (from a trigger, say)? */
bool
UpsertCallNested(void)
{
	return running_call != NULL && running_call->outer != NULL;
}

/*
 * Is relid a partition, at any depth, of other?  Only then is pg_inherits
 * scanned: when relid is a partition and other a partitioned table.
 */
static bool
is_partition_of(Oid relid, Oid other)
{
	return get_rel_relispartition(relid) &&
		get_rel_relkind(other) == RELKIND_PARTITIONED_TABLE &&
		list_member_oid(get_partition_ancestors(relid), other);
}

/*
 * Can a row of one table be a row of the other: are they the same table,
 * or is one a partition (at any depth) of the other?  Both are targets, so
 * both have a primary key, and a partition's is its parent's: the key
 * columns have the same types and collations, in the same order.
 */
static bool
same_rows(Oid relid, Oid other)
{
	if (relid == other)
		return true;
	return is_partition_of(relid, other) || is_partition_of(other, relid);
}

/* Are two keys of a target's rows equal, as its primary key compares them? */
static bool
same_key(UpsertTarget *target, Datum *key_values, Datum *other)
{
	for (int k = 0; k < target->npkey; k++)
		if (!DatumGetBool(OidFunctionCall2Coll(target->pkey_eqproc[k],
											   target->pkey_collation[k],
											   key_values[k], other[k])))
			return false;
	return true;
}

/*
 * Refuse a message applied to a row that an enclosing call is writing.
 * Only a nested call gets here; same_rows() then costs a syscache lookup or
 * two for each enclosing call that is writing.
 */
static void
check_enclosing_writers(UpsertTarget *target, UpsertMessage *msg)
{
	for (RunningCall *call = running_call->outer; call; call = call->outer)
	{
		if (call->writing && same_rows(target->relid, call->relid) &&
			same_key(target, msg->key_values, call->key_values))
			ereport(ERROR,
					(errcode(ERRCODE_TRIGGERED_DATA_CHANGE_VIOLATION),
					 errmsg("cannot apply a message to a row while an enclosing call applies one to it"),
					 errdetail("A function that an enclosing versioned_upsert() ran while it applied a message to the row with key %s (a function of a CHECK constraint, a trigger or an index expression) applied another message to that row. Its event could be logged before the enclosing call's, out of version order.",
							   JsonbToCString(NULL, &msg->key->root, VARSIZE(msg->key))),
					 errhint("Functions that run while a row is written must not write that row.")));
	}
}

/* A fresh token for one statement: random, never 0. */
static uint64
conflict_token(void)
{
	static pg_prng_state prng;
	static bool seeded = false;
	uint64		token;

	if (!seeded)
	{
		if (!pg_prng_strong_seed(&prng))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate random numbers")));
		seeded = true;
	}
	do
		token = pg_prng_uint64(&prng);
	while (token == 0);
	return token;
}

/* Is argument argno the running statement's token? */
static bool
has_running_token(FunctionCallInfo fcinfo, int argno)
{
	return conflict_note.token != 0 && !PG_ARGISNULL(argno) &&
		(uint64) PG_GETARG_INT64(argno) == conflict_note.token;
}

/*
 * _conflict_check(stored, incoming, token, stored_table, stored_tid): the
 * WHERE clause of ON CONFLICT DO UPDATE.  It runs once the conflicting row
 * is locked, on its newest version, so what it notes is the stored version
 * the outcome is decided against, and where that row version is.  A NULL
 * stored version counts as older than any version.  Only a call with the
 * running statement's token notes anything.
 */
Datum
conflict_check(PG_FUNCTION_ARGS)
{
	bool		stored_isnull = PG_ARGISNULL(0);
	rowseq		stored = stored_isnull ? 0 : PG_GETARG_ROWSEQ(0);
	bool		incoming_isnull = PG_ARGISNULL(1);
	rowseq		incoming = incoming_isnull ? 0 : PG_GETARG_ROWSEQ(1);
	bool		ours = has_running_token(fcinfo, 2);
	bool		result;

	if (ours)
	{
		conflict_note.seen = true;
		conflict_note.stored_isnull = stored_isnull;
		conflict_note.stored = stored;
		conflict_note.incoming_isnull = incoming_isnull;
		conflict_note.incoming = incoming;
		conflict_note.stored_table = PG_ARGISNULL(3) ? InvalidOid : PG_GETARG_OID(3);
		if (PG_ARGISNULL(4))
			ItemPointerSetInvalid(&conflict_note.stored_tid);
		else
			conflict_note.stored_tid = *(ItemPointer) PG_GETARG_POINTER(4);
	}

	result = stored_isnull || (!incoming_isnull && stored < incoming);
	if (!result && ours)
		running_call->writing = false;
	PG_RETURN_BOOL(result);
}

/*
 * _event_id(token): in the statement's RETURNING list, which the executor
 * evaluates as soon as the row is written, before the statement's AFTER
 * triggers run.  The call's event takes its event_id there, so that a
 * versioned_upsert() those triggers make, on the same key perhaps, logs
 * after it: a newer version then never precedes an older one in event_id
 * order.  Row locks order the event_ids of concurrent calls as before: the
 * row is locked when this runs.
 */
Datum
event_id_for_statement(PG_FUNCTION_ARGS)
{
	if (!has_running_token(fcinfo, 0) || conflict_note.event_id != 0)
		PG_RETURN_NULL();
	conflict_note.event_id = EventLogTakeId();
	running_call->writing = false;
	PG_RETURN_INT64(conflict_note.event_id);
}

/*
 * Under row level security, a message that changed nothing must not reveal
 * the version of a row the caller may not see: refuse it instead.  The probe
 * reads the row version the statement locked and compared, by its table and
 * TID, not by key: a policy's conditions must be checked before a key
 * comparison that is not leakproof (numeric, for one), which then cannot
 * use the index, and a probe by key would read the whole table.
 */
static void
check_stored_row_visible(UpsertTarget *target, UpsertMessage *msg,
						 const ConflictNote *note)
{
	Datum		args[2];
	int			ret;
	const char *qualname;
	bool		keep;
	SPIPlanPtr	plan;

	if (!target->row_security ||
		check_enable_rls(target->relid, InvalidOid, true) != RLS_ENABLED)
		return;

	if (!OidIsValid(note->stored_table) || !ItemPointerIsValid(&note->stored_tid))
		elog(ERROR, "the upsert statement did not note where the stored row is");

	/* After the upsert's triggers: the name may have changed meanwhile. */
	keep = TargetQualifiedName(target, &qualname);
	plan = keep ? target->visible_plan : NULL;
	if (plan == NULL)
	{
		Oid			argtypes[2] = {OIDOID, TIDOID};
		char	   *sql = psprintf("SELECT 1 FROM %s"
								   " WHERE tableoid OPERATOR(pg_catalog.=) $1"
								   " AND ctid OPERATOR(pg_catalog.=) $2",
								   qualname);

		plan = SpiPrepareChecked(sql, 2, argtypes, keep);
		if (keep)
			target->visible_plan = plan;
	}

	/* Not read-only: the probe needs a snapshot that sees the row just locked. */
	args[0] = ObjectIdGetDatum(note->stored_table);
	args[1] = PointerGetDatum(&note->stored_tid);
	ret = SPI_execute_plan(plan, args, NULL, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(ret));
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("row with key %s in table \"%s\" is hidden by row-level security",
						JsonbToCString(NULL, &msg->key->root, 0), target->displayname),
				 errdetail("The message was not applied, and its outcome would reveal the version of a row that policies hide from the current user.")));
}

/* What a batch keeps from one row to the next. */
typedef struct BatchState
{
	MemoryContext cxt;			/* lives as long as the batch */
	DirectState *direct;		/* the direct path, once a row took it */
} BatchState;

/*
 * The direct path: with the batch's state, opened by the first row that
 * takes it, or with a state of its own for a single call.
 */
static void
apply_direct(UpsertTarget *target, UpsertMessage *msg, LoggedEvent *event,
			 bool *stored_isnull, rowseq *stored, BatchState *batch)
{
	DirectState *ds;

	if (batch == NULL)
	{
		ds = DirectOpen(target, CurrentMemoryContext);
		DirectUpsert(ds, msg, event, stored_isnull, stored);
		DirectClose(ds);
		return;
	}

	/* The table changed since the state was opened: open it afresh. */
	if (batch->direct && !DirectStateMatches(batch->direct, target))
	{
		DirectClose(batch->direct);
		batch->direct = NULL;
	}
	if (batch->direct == NULL)
		batch->direct = DirectOpen(target, batch->cxt);
	DirectUpsert(batch->direct, msg, event, stored_isnull, stored);
}

/*
 * The outcome of a statement that wrote nothing, from what _conflict_check()
 * saw of the stored row, if it saw one.
 */
static void
outcome_not_written(const ConflictNote *note, LoggedEvent *event,
					bool *stored_isnull, rowseq *stored)
{
	/* a conflict that lost, or a BEFORE trigger said no */
	if (!note->seen)
	{
		*stored_isnull = true;
		event->outcome = "skipped";
		return;
	}

	*stored_isnull = note->stored_isnull;
	*stored = note->stored;
	if (note->stored_isnull || note->incoming_isnull)
		event->outcome = "skipped";
	else if (note->stored == note->incoming)
		event->outcome = "duplicate";
	else if (note->stored > note->incoming)
		event->outcome = "stale";
	else
		event->outcome = "skipped";
}

/*
 * Run the upsert statement, in an SPI connection the caller opened, and
 * decide the outcome from what it returned and saw.  What it returned
 * (event->data, event->key) lives in the connection's memory, so the caller
 * finishes the connection only once the event is logged.
 */
static void
apply_statement(UpsertTarget *target, UpsertMessage *msg, LoggedEvent *event,
				bool *stored_isnull, rowseq *stored)
{
	SPIPlanPtr	plan;
	int			nargs = PARAM_FIRST_KEY + target->npkey + bms_num_members(msg->others);
	Datum	   *values = palloc(sizeof(Datum) * nargs);
	char	   *nulls = palloc(nargs);
	int			param = PARAM_FIRST_KEY + target->npkey;
	int			attnum = -1;
	ConflictNote note;
	int			ret;

	plan = UpsertStatementFor(target, msg);
	memset(nulls, ' ', nargs);
	values[PARAM_VERSION] = RowseqGetDatum(msg->version);
	memcpy(&values[PARAM_FIRST_KEY], msg->key_values, sizeof(Datum) * target->npkey);
	while ((attnum = bms_next_member(msg->others, attnum)) >= 0)
	{
		values[param] = msg->values[attnum - 1];
		nulls[param] = msg->nulls[attnum - 1] ? 'n' : ' ';
		param++;
	}

	memset(&conflict_note, 0, sizeof(conflict_note));
	conflict_note.token = conflict_token();
	values[PARAM_TOKEN] = Int64GetDatum((int64) conflict_note.token);
	ret = SPI_execute_plan(plan, values, nulls, false, 0);
	running_call->writing = false;
	note = conflict_note;

	if (ret != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(ret));

	event->data_isnull = true;
	event->data = (Datum) 0;
	if (SPI_processed == 1)
	{
		HeapTuple	row = SPI_tuptable->vals[0];
		TupleDesc	rowdesc = SPI_tuptable->tupdesc;
		Datum		stored_key[INDEX_MAX_KEYS];
		bool		isnull;

		*stored = DatumGetRowseq(SPI_getbinval(row, rowdesc, RETURNED_VERSION, stored_isnull));
		event->data = SPI_getbinval(row, rowdesc, RETURNED_ROW, &isnull);
		event->data_isnull = isnull;
		for (int i = 0; i < target->npkey; i++)
			stored_key[i] = SPI_getbinval(row, rowdesc, RETURNED_FIRST_KEY + i, &isnull);
		event->key = MessageStoredKey(target, msg, stored_key);
		event->event_id = note.event_id;
		event->outcome = note.seen ? "updated" : "inserted";
		return;
	}

	outcome_not_written(&note, event, stored_isnull, stored);
	if (note.seen)
		check_stored_row_visible(target, msg, &note);
}

/* What one message did: the fields of upsert_result. */
typedef struct UpsertOutcome
{
	const char *outcome;
	rowseq		version;
	bool		stored_isnull;
	rowseq		stored;
	int64		event_id;
} UpsertOutcome;

/*
 * Apply one message to a target and log it.  The table is locked and its
 * metadata checked (from the cache) for every message, so a batch sees a
 * table that changed between two of its rows as a single call would.
 */
static void
upsert_one(Oid relid, Jsonb *new_row, UpsertOutcome *result, BatchState *batch)
{
	UpsertTarget *target = TargetLookup(relid);
	Relation	rel;
	UpsertMessage msg;
	LoggedEvent event;
	ConflictNote outer_note = conflict_note;
	RunningCall call = {relid, NULL, false, running_call};
	bool		spi_connected = false;

	/*
	 * The table stays open until the call ends, as a statement's target
	 * does: a function that converting the message runs (a domain's CHECK
	 * may call anything) cannot ALTER, DROP or TRUNCATE it under the call,
	 * whose metadata would no longer describe it; that DDL fails with
	 * 55006, as it does in the middle of an INSERT.  (A cascaded drop of a
	 * column is not stopped that way; TargetCheckUnchanged() catches it.)
	 * After an error the abort releases it.
	 */
	rel = table_open(relid, NoLock);	/* TargetLookup() locked it */

	/*
	 * The call counts as running from here: parsing runs the columns' input
	 * functions (a domain's CHECK may call anything, versioned_upsert()
	 * included), and a nested call must not free this call's target.
	 */
	running_call = &call;
	PG_TRY();
	{
		MessageParse(target, new_row, &msg);
		call.key_values = msg.key_values;

		event.event_id = 0;
		event.key = NULL;

		result->stored_isnull = false;
		result->stored = 0;
		call.writing = true;
		if (DirectApplies(target, &msg))
		{
			/* a full-row message for a plain table: decided below SQL */
			apply_direct(target, &msg, &event, &result->stored_isnull, &result->stored,
						 batch);
		}
		else
		{
			if (SPI_connect() != SPI_OK_CONNECT)
				elog(ERROR, "SPI_connect failed");
			spi_connected = true;
			apply_statement(target, &msg, &event, &result->stored_isnull, &result->stored);
		}

		/* an applied message: the only outcome that logs the stored row */
		if (call.outer != NULL && !event.data_isnull)
			check_enclosing_writers(target, &msg);

		event.target = relid;
		if (event.key == NULL)
			event.key = msg.key;
		event.version = msg.version;
		event.payload = msg.new_row;
		call.writing = false;
		result->event_id = EventLogAppend(&event);
	}
	PG_FINALLY();
	{
		/* A call nested in a trigger must leave an outer call's state as it was. */
		running_call = call.outer;
		conflict_note = outer_note;
	}
	PG_END_TRY();

	if (spi_connected)
		SPI_finish();
	table_close(rel, NoLock);

	result->outcome = event.outcome;
	result->version = msg.version;
}

/* How many columns upsert_result has (see the install script). */
#define RESULT_NCOLUMNS 5

/*
 * The upsert_result of one outcome, for a descriptor that result_desc_check()
 * accepted, with its dropped attributes (null) if it has any.
 */
static HeapTuple
outcome_tuple(const UpsertOutcome *result, TupleDesc tupdesc)
{
	bool		applied = strcmp(result->outcome, "inserted") == 0 ||
		strcmp(result->outcome, "updated") == 0;
	Datum		live_values[RESULT_NCOLUMNS];
	bool		live_nulls[RESULT_NCOLUMNS] = {false};
	Datum		values_buf[RESULT_NCOLUMNS];
	bool		nulls_buf[RESULT_NCOLUMNS];
	Datum	   *values = values_buf;
	bool	   *nulls = nulls_buf;
	int			live = 0;

	if (tupdesc->natts > RESULT_NCOLUMNS)
	{
		values = palloc(sizeof(Datum) * tupdesc->natts);
		nulls = palloc(sizeof(bool) * tupdesc->natts);
	}

	live_values[0] = BoolGetDatum(applied);
	live_values[1] = CStringGetTextDatum(result->outcome);
	live_values[2] = RowseqGetDatum(result->version);
	live_values[3] = RowseqGetDatum(result->stored);
	live_nulls[3] = result->stored_isnull;
	live_values[4] = Int64GetDatum(result->event_id);

	for (int i = 0; i < tupdesc->natts; i++)
	{
		nulls[i] = true;
		if (TupleDescAttr(tupdesc, i)->attisdropped)
			continue;
		values[i] = live_values[live];
		nulls[i] = live_nulls[live];
		live++;
	}
	return heap_form_tuple(tupdesc, values, nulls);
}

/*
 * Refuse an upsert_result its owner altered: outcome_tuple() fills its
 * columns with datums of the types the install script gave them, and a
 * tuple formed with another descriptor would read them as something else.
 * Dropped attributes, which ADD and DROP ATTRIBUTE leave behind, are
 * skipped.  The version columns are checked by their form (rowseq's,
 * int8's), which is all forming a tuple relies on, so that no lookup of
 * rowseq's OID is made per call.
 */
static void
result_desc_check(TupleDesc tupdesc)
{
	static const Oid expected[RESULT_NCOLUMNS] = {BOOLOID, TEXTOID, InvalidOid, InvalidOid, INT8OID};
	int			live = 0;
	bool		matches = true;

	for (int i = 0; matches && i < tupdesc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, i);

		if (att->attisdropped)
			continue;
		if (live == RESULT_NCOLUMNS)
			matches = false;
		else if (OidIsValid(expected[live]))
			matches = att->atttypid == expected[live];
		else
			matches = att->attlen == sizeof(int64) && att->attbyval == FLOAT8PASSBYVAL;
		live++;
	}
	if (!matches || live != RESULT_NCOLUMNS)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("type \"%s.upsert_result\" does not have the columns CREATE EXTENSION gave it",
						UPSERT_ORDER_SCHEMA),
				 errdetail("Its columns are applied boolean, outcome text, version rowseq, stored_version rowseq and event_id bigint."),
				 errhint("Alter the type back to those columns.")));
}

/* Refuse a NULL argument by name. */
static void
check_not_null(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name)));
}

/*
 * versioned_upsert(target regclass, new_row jsonb) RETURNS upsert_result
 */
Datum
versioned_upsert(PG_FUNCTION_ARGS)
{
	UpsertOutcome result;
	TupleDesc	tupdesc;

	check_not_null(fcinfo, 0, "target");
	check_not_null(fcinfo, 1, "new_row");

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	result_desc_check(tupdesc);

	upsert_one(PG_GETARG_OID(0), PG_GETARG_JSONB_P(1), &result, NULL);
	PG_RETURN_DATUM(HeapTupleGetDatum(outcome_tuple(&result, BlessTupleDesc(tupdesc))));
}

/* Error context of a batch: which element was being applied. */
static void
batch_error_context(void *arg)
{
	errcontext("element %lld of the batch", (long long) *(int64 *) arg);
}

/* Apply one element of a batch and add its result to the result set. */
static void
batch_apply_element(Oid relid, JsonbValue *v, int64 index, MemoryContext rowcxt,
					BatchState *batch, ReturnSetInfo *rsinfo)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(rowcxt);
	UpsertOutcome result;

	if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("element %lld of rows is not a JSON object", (long long) index),
				 errdetail("Every element of rows must be an object of column names and values.")));
	/*
	 * A single call is a statement of its own, whose snapshot sees what the
	 * calls before it wrote (and at READ COMMITTED what others committed
	 * since).  Each element after the first gets such a snapshot too, so that
	 * what runs as its values are converted (a domain's CHECK calling a
	 * STABLE function) reads the tables as the single call would, not as
	 * they were when the batch began.  An error pops it with the abort.
	 */
	if (index > 1)
	{
		PushCopiedSnapshot(GetTransactionSnapshot());
		UpdateActiveSnapshotCommandId();
	}
	upsert_one(relid, JsonbValueToJsonb(v), &result, batch);
	if (index > 1)
		PopActiveSnapshot();
	tuplestore_puttuple(rsinfo->setResult, outcome_tuple(&result, rsinfo->setDesc));
	MemoryContextSwitchTo(oldcxt);
	MemoryContextReset(rowcxt);
}

/*
 * An empty batch writes nothing, but is refused where the statement of any
 * message would be, before it reads a row: the table is locked and checked
 * as a target, the transaction must not be read-only (unless the table is
 * temporary: no event is logged), the caller needs the privileges every
 * message needs (INSERT on the key and the version, UPDATE on the version,
 * SELECT on the whole row), a published table needs a replica identity, and
 * with row_security off a caller whom the table's policies apply to is
 * refused, as the statement refuses it.
 */
static void
check_empty_batch(Oid relid)
{
	UpsertTarget *target = TargetLookup(relid);
	Relation	rel = table_open(relid, NoLock);	/* TargetLookup() locked it */
	Bitmapset  *version = bms_make_singleton(target->version_attnum - FirstLowInvalidHeapAttributeNumber);
	Bitmapset  *written = bms_copy(version);
	ResultRelInfo *rri;
	EState	   *estate;

	for (int i = 0; i < target->npkey; i++)
		written = bms_add_member(written, target->pkey[i] - FirstLowInvalidHeapAttributeNumber);
	/* the statement's planning refuses row_security = off first */
	(void) check_enable_rls(relid, InvalidOid, false);
	estate = SimpleExecStateCreate(rel, written, version, &rri);
	SimpleExecStateRequireUpsertPrivileges(estate, target->row_security);
	SimpleExecStateCheckUpsert(estate, rel);
	SimpleExecStateFree(estate);
	table_close(rel, NoLock);
}

/*
 * versioned_upsert_batch(target regclass, rows jsonb) RETURNS SETOF upsert_result
 *
 * Each element is applied exactly as a versioned_upsert() call would be, in
 * array order, and the results come back in that order.  An error in any
 * element aborts the whole statement, as for any SQL statement.
 */
Datum
versioned_upsert_batch(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			relid;
	Jsonb	   *rows;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	MemoryContext rowcxt;
	BatchState	batch = {CurrentMemoryContext, NULL};
	int64		index = 0;
	ErrorContextCallback errcallback;

	check_not_null(fcinfo, 0, "target");
	check_not_null(fcinfo, 1, "rows");
	relid = PG_GETARG_OID(0);
	rows = PG_GETARG_JSONB_P(1);

	if (!JB_ROOT_IS_ARRAY(rows) || JB_ROOT_IS_SCALAR(rows))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("rows must be a JSON array"),
				 errdetail("The rows of a batch are given as an array of row objects.")));

	if (JB_ROOT_COUNT(rows) == 0)
		check_empty_batch(relid);

	InitMaterializedSRF(fcinfo, 0);
	result_desc_check(rsinfo->setDesc);

	/* Each element's work is freed before the next; only results are kept. */
	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "upsert_order batch row",
								   ALLOCSET_DEFAULT_SIZES);

	errcallback.callback = batch_error_context;
	errcallback.arg = &index;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;

	/*
	 * What the rows share stays open from the first row to the last: the
	 * event log's tables, and the direct path's state.  After an error none
	 * of it needs closing: the abort releases it.
	 */
	EventLogBatchBegin();
	PG_TRY();
	{
		it = JsonbIteratorInit(&rows->root);
		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok != WJB_ELEM)
				continue;
			index++;
			batch_apply_element(relid, &v, index, rowcxt, &batch, rsinfo);
		}
	}
	PG_CATCH();
	{
		EventLogBatchAbort();
		PG_RE_THROW();
	}
	PG_END_TRY();
	EventLogBatchEnd();
	if (batch.direct)
		DirectClose(batch.direct);

	error_context_stack = errcallback.previous;
	MemoryContextDelete(rowcxt);
	return (Datum) 0;
}
