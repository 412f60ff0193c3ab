/*-------------------------------------------------------------------------
 *
 * event_purge.c
 *	  Deleting expired events: one batch of the statement that both
 *	  purge_events() and the publisher's retention pass run, and the lock
 *	  that keeps those two apart.
 *
 * An event may go once it is older than the cutoff and no listener can
 * still need it: it is not waiting in the outbox, and it was not published
 * after the cutoff.  The caller runs batches until one reaches the cutoff,
 * each in an SPI connection, as the owner of event_log.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "storage/lmgr.h"
#include "utils/timestamp.h"

#include "upsert_order.h"

/* Events examined per batch, and so deleted per batch at most */
#define EVENT_PURGE_BATCH		1000

/*
 * Delete, among the next $2 events after event_id $1, those logged before $3
 * that are neither waiting in the outbox nor published at or after $3, with
 * their publication rows; return how many, how many events were looked at,
 * the last event_id among them, and how many of them were logged at or
 * after $3.  event_log grows in event_id order and logged_at follows it, so
 * a caller walks from the oldest event and stops at the first batch that
 * reaches the cutoff: each batch reads only the head of the log.
 *
 * A published event stays although logged before $3 when it was published
 * after it: it waited in the outbox, for a prepared transaction or a failing
 * notification, and a listener catching up must find it as long after its
 * notification as any other.  The publication row of the last event
 * published stays when its event goes, with a null event_id: its seq
 * numbers the next, and events_since() shows a listener the jump to it.
 * The first purge that finds a newer row deletes it.
 *
 * Every access goes by index whatever the sizes of the tables: the outbox
 * is read only within the event_ids of the batch, publication by event_id,
 * and deletions find their rows in an array.  An event's publication row is
 * read by a subquery, not a join, so that it is one probe of the index by
 * event_id whatever the statistics say: after a purge and a VACUUM left
 * publication's pages recorded as holding one row, the planner joined it to
 * a burst of new events with a whole scan of the index for every event.
 */
static const char *const purge_sql =
"WITH head AS ("
"    SELECT e.event_id, e.logged_at FROM ONLY upsert_order.event_log e"
"     WHERE e.event_id > $1 ORDER BY e.event_id LIMIT $2"
"), waiting AS ("
"    SELECT o.event_id FROM ONLY upsert_order.outbox o"
"     WHERE o.event_id >= (SELECT min(h.event_id) FROM head h)"
"       AND o.event_id <= (SELECT max(h.event_id) FROM head h)"
"), last_seq AS ("
"    SELECT max(p.seq) AS seq FROM ONLY upsert_order.publication p"
"), expired AS ("
"    SELECT array_agg(h.event_id) AS ids FROM head h"
"     WHERE h.logged_at < $3"
"       AND coalesce((SELECT p.published_at FROM ONLY upsert_order.publication p"
"                      WHERE p.event_id = h.event_id), '-infinity') < $3"
"       AND h.event_id NOT IN (SELECT w.event_id FROM waiting w)"
"), forgotten AS ("
"    DELETE FROM ONLY upsert_order.publication p"
"     WHERE p.event_id = ANY ((SELECT x.ids FROM expired x)::bigint[])"
"       AND p.seq < (SELECT l.seq FROM last_seq l)"
"), kept AS ("
"    UPDATE ONLY upsert_order.publication p SET event_id = NULL"
"     WHERE p.seq = (SELECT l.seq FROM last_seq l)"
"       AND p.event_id = ANY ((SELECT x.ids FROM expired x)::bigint[])"
"), superseded AS ("
"    DELETE FROM ONLY upsert_order.publication p"
"     WHERE p.event_id IS NULL AND p.seq < (SELECT l.seq FROM last_seq l)"
"), purged AS ("
"    DELETE FROM ONLY upsert_order.event_log e"
"     WHERE e.event_id = ANY ((SELECT x.ids FROM expired x)::bigint[])"
"    RETURNING e.event_id"
")"
" SELECT (SELECT count(*) FROM purged),"
"        (SELECT count(*) FROM head h),"
"        (SELECT max(h.event_id) FROM head h),"
"        (SELECT count(*) FROM head h WHERE h.logged_at >= $3)";

static SPIPlanPtr purge_plan = NULL;

/*
 * Lock out the other deleter of expired events: purge_events() and the
 * worker's retention pass delete the same rows, and one waits for the row
 * locks of the other's deletions to the end of its transaction.  A
 * purge_events() left in an open transaction would make every retention
 * batch of the worker wait out its lock timeout, holding all publishing
 * back meanwhile, and then fail.  So both take this lock first, on the extension with a sub-ID of its own
 * (PURGE_LOCK_SUBID), to the end of the transaction: purge_events() waits
 * for the worker's short transaction, and the worker, not waiting, leaves
 * its pass for later.  Returns whether the lock is held.
 */
bool
EventPurgeLock(bool wait)
{
	Oid			extoid = get_extension_oid("upsert_order", false);

	if (wait)
	{
		LockDatabaseObject(ExtensionRelationId, extoid, PURGE_LOCK_SUBID, ExclusiveLock);
		return true;
	}
	return ConditionalLockDatabaseObject(ExtensionRelationId, extoid, PURGE_LOCK_SUBID,
										 ExclusiveLock);
}

/*
 * Delete one batch of expired events after event_id after_event_id (see
 * purge_sql); returns how many.  Sets *last_event_id to the last event_id
 * examined and *reached_cutoff when there is nothing older than cutoff left
 * to examine.  Needs an SPI connection.
 */
int64
EventPurgeBatch(TimestampTz cutoff, int64 after_event_id,
				int64 *last_event_id, bool *reached_cutoff)
{
	Oid			argtypes[3] = {INT8OID, INT4OID, TIMESTAMPTZOID};
	Datum		values[3];
	HeapTuple	tuple;
	TupleDesc	tupdesc;
	bool		isnull;
	int64		purged;
	int64		examined;
	int64		young;
	int			ret;

	if (purge_plan == NULL)
		purge_plan = SpiPrepareChecked(purge_sql, 3, argtypes, true);

	values[0] = Int64GetDatum(after_event_id);
	values[1] = Int32GetDatum(EVENT_PURGE_BATCH);
	values[2] = TimestampTzGetDatum(cutoff);
	ret = SPI_execute_plan(purge_plan, values, NULL, false, 0);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not purge events: %s", SPI_result_code_string(ret));

	tuple = SPI_tuptable->vals[0];
	tupdesc = SPI_tuptable->tupdesc;
	purged = DatumGetInt64(SPI_getbinval(tuple, tupdesc, 1, &isnull));
	examined = DatumGetInt64(SPI_getbinval(tuple, tupdesc, 2, &isnull));
	young = DatumGetInt64(SPI_getbinval(tuple, tupdesc, 4, &isnull));

	/* the end of the log, or an event logged after the cutoff */
	*reached_cutoff = examined < EVENT_PURGE_BATCH || young > 0;
	if (examined > 0)
		*last_event_id = DatumGetInt64(SPI_getbinval(tuple, tupdesc, 3, &isnull));
	else
		*last_event_id = after_event_id;

	/* purge_events() runs every batch in one SPI connection: free as we go */
	SPI_freetuptable(SPI_tuptable);
	return purged;
}
