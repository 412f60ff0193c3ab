/*-------------------------------------------------------------------------
 *
 * outbox_horizon.c
 *	  The publisher's consumed horizon: where its scan of the outbox may
 *	  start.
 *
 * The worker deletes what it publishes, and the index entries of deleted
 * rows stay until VACUUM, which autovacuum runs at most once a minute; a
 * scan from the start of the index would step over all of them at every
 * batch.  So the worker keeps a consumed horizon:
 * an event_id at or below which no row can appear in the outbox any more,
 * and starts there.  The proof: a writer takes its transaction ID before its
 * event_id (event_log.c), so if the sequence's last value is V and the next
 * transaction ID X, read in that order, every event_id up to V belongs to a
 * transaction whose ID is below X.  Once a snapshot's xmin has reached X,
 * all those transactions have ended, so every outbox row up to V is visible
 * or never will be; having published all visible ones up to V, everything up
 * to V is done.  The worker samples (V, X) at each batch and advances the
 * horizon as samples complete.  This holds only while the sequence hands out
 * values one at a time (CACHE 1, its default); otherwise the horizon stays
 * at zero.
 *
 * Any transaction that has a transaction ID holds X back, one that will
 * never write an event included; while it lasts the horizon stays, and the
 * scan steps over every event published since.  So a sample not complete
 * by the next batch also records the transactions holding the lock that
 * writing event_log takes: a writer takes that lock before its event_id
 * (event_log.c again), so every transaction that may still commit an
 * event_id up to V held it when V was read, and holds it still if it has
 * not ended; once all of those recorded have ended, the sample is complete
 * as well.  They are read only then, a batch late: reading them (every
 * backend's fast-path locks) cost a small batch about a tenth of its work,
 * and under a steady load the next batch's snapshot has usually passed X
 * (with 8 writers, nine batches in ten had).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/xlog.h"
#include "catalog/pg_sequence.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/fmgrprotos.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "upsert_order.h"

/*
 * The consumed horizon (see the top of this file), for the outbox table
 * horizon_relid, and the samples not yet complete, oldest first.
 */
#define HORIZON_SAMPLES 64

typedef struct HorizonSample
{
	int64		last_event_id;	/* the sequence's last value, read first */
	TransactionId next_xid;		/* then the next transaction ID */
	uint64		batch;			/* the batch that took the sample */
	bool		writers_read;	/* later, if need be, event_log's writers: */
	int			nwriters;		/* how many, -1 if unknown; */
	VirtualTransactionId *writers;	/* those not seen ended yet */
} HorizonSample;

static int64 consumed_horizon = 0;
static Oid	horizon_relid = InvalidOid;
static HorizonSample samples[HORIZON_SAMPLES];
static int	nsamples = 0;

/* Batches so far, the one in progress included. */
static uint64 batches = 0;

/* The horizon: the worker's scan of the outbox starts above it. */
int64
OutboxHorizon(void)
{
	return consumed_horizon;
}

/* Drop samples[from ..] and what they hold. */
static void
horizon_forget_samples(int from)
{
	for (int i = from; i < nsamples; i++)
		if (samples[i].writers)
			pfree(samples[i].writers);
	nsamples = Min(nsamples, from);
}

/*
 * The transactions (but this one) that hold a lock on event_log (log_relid)
 * that writing it conflicts with: its writers, among others.  Kept in the
 * worker's memory.  Unknown during recovery, where no event is written
 * anyway.
 */
static void
horizon_read_writers(HorizonSample *sample, Oid log_relid)
{
	LOCKTAG		tag;
	VirtualTransactionId *found;
	VirtualTransactionId *writers;
	int			nwriters;

	if (RecoveryInProgress())
	{
		sample->writers_read = true;
		return;					/* nwriters stays -1 */
	}
	SET_LOCKTAG_RELATION(tag, MyDatabaseId, log_relid);
	/* palloc'd, outside recovery (during it, a static array) */
	found = GetLockConflicts(&tag, ShareLock, &nwriters);
	writers = MemoryContextAlloc(TopMemoryContext,
								 sizeof(VirtualTransactionId) * Max(nwriters, 1));
	memcpy(writers, found, sizeof(VirtualTransactionId) * nwriters);
	pfree(found);

	/* only now: an error above leaves the sample unread, to read again */
	sample->writers = writers;
	sample->nwriters = nwriters;
	sample->writers_read = true;
}

/*
 * Forget, in the pending samples, the writers that have ended: a sample
 * with none left is complete.  The writers of a sample that an earlier
 * batch took, and that the snapshot of xmin does not complete, are read
 * first.  Called before the batch reads the outbox, whose snapshot then
 * sees their commits.  A writer still running was running, holding the
 * lock, when every later sample was taken, and is in them too (unless the
 * subtransaction that took the lock was rolled back): the first sample left
 * with writers ends the checks.  So does a second sample to read: reading
 * one per batch keeps up with the batches, which take one each.
 */
void
OutboxHorizonCheckWriters(Oid log_relid, TransactionId xmin)
{
	bool		read = false;

	for (int i = 0; i < nsamples; i++)
	{
		HorizonSample *sample = &samples[i];
		int			keep = 0;

		if (TransactionIdPrecedesOrEquals(sample->next_xid, xmin))
			continue;			/* complete */
		if (!sample->writers_read)
		{
			/* taken by this batch, or a second one: the next batch reads it */
			if (sample->batch == batches || read)
				break;
			horizon_read_writers(sample, log_relid);
			read = true;
		}
		if (sample->nwriters < 0)
			continue;			/* unknown */
		for (int j = 0; j < sample->nwriters; j++)
			if (!VirtualXactLock(sample->writers[j], false))
				sample->writers[keep++] = sample->writers[j];
		sample->nwriters = keep;
		if (keep > 0)
			break;
	}
}

/*
 * Record a (last event_id, next transaction ID) sample for the outbox
 * outbox_relid, from event_log's sequence seqid, starting afresh when the
 * extension was created again or the sequence went back (setval): values
 * handed out again may belong to transactions that began after a pending
 * sample was taken, which that sample's completion says nothing about.  A
 * sequence moved back and then past the newest sample between two batches
 * goes unseen; moving it back breaks the order of event_ids anyway, and the
 * README says not to.  Returns false when the sequence hands out more than
 * one value at a time, in which case no horizon is kept.  Called once by
 * every batch, first.
 */
bool
OutboxHorizonSample(Oid outbox_relid, Oid seqid)
{
	HeapTuple	tuple;
	int64		cache;
	Datum		last;
	HorizonSample sample;
	int64		highest_seen;
	LOCAL_FCINFO(fcinfo, 1);

	batches++;
	tuple = SearchSysCache1(SEQRELID, ObjectIdGetDatum(seqid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for sequence %u", seqid);
	cache = ((Form_pg_sequence) GETSTRUCT(tuple))->seqcache;
	ReleaseSysCache(tuple);

	/*
	 * The order matters: the sequence first, then the transaction ID.  The
	 * last value is null until nextval() was first called.
	 */
	InitFunctionCallInfoData(*fcinfo, NULL, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = ObjectIdGetDatum(seqid);
	fcinfo->args[0].isnull = false;
	last = pg_sequence_last_value(fcinfo);
	sample.last_event_id = fcinfo->isnull ? 0 : DatumGetInt64(last);
	sample.next_xid = ReadNextTransactionId();

	/*
	 * The highest last value seen: the newest sample's, or the horizon when
	 * no sample is pending (every sample kept is at or above the horizon).
	 */
	highest_seen = nsamples > 0 ? samples[nsamples - 1].last_event_id : consumed_horizon;
	if (outbox_relid != horizon_relid || cache != 1 ||
		sample.last_event_id < highest_seen)
	{
		consumed_horizon = 0;
		horizon_forget_samples(0);
		horizon_relid = outbox_relid;
	}
	if (cache != 1)
		return false;

	if (nsamples > 0 && samples[nsamples - 1].last_event_id >= sample.last_event_id)
		return true;			/* nothing new was handed out */
	if (nsamples == HORIZON_SAMPLES)
		horizon_forget_samples(nsamples - 1);	/* replace the newest */
	sample.batch = batches;
	sample.writers_read = false;
	sample.nwriters = -1;
	sample.writers = NULL;
	samples[nsamples++] = sample;
	return true;
}

/*
 * The horizon reached once this batch commits: the last event_id of the
 * newest sample completed in the snapshot of xmin or by its writers' ends,
 * or, when the batch was full, only up to the last event it took
 * (last_taken).
 */
int64
OutboxHorizonReached(TransactionId xmin, bool full, int64 last_taken)
{
	int64		reached = consumed_horizon;

	for (int i = 0; i < nsamples; i++)
	{
		int64		upto;

		if (!TransactionIdPrecedesOrEquals(samples[i].next_xid, xmin) &&
			samples[i].nwriters != 0)
			break;
		upto = full ? Min(samples[i].last_event_id, last_taken) : samples[i].last_event_id;
		reached = Max(reached, upto);
	}
	return reached;
}

/* The batch committed: move the horizon, forget the samples behind it. */
void
OutboxHorizonAdvance(int64 reached)
{
	int			keep = 0;

	consumed_horizon = Max(consumed_horizon, reached);
	for (int i = 0; i < nsamples; i++)
	{
		if (samples[i].last_event_id > consumed_horizon)
			samples[keep++] = samples[i];
		else if (samples[i].writers)
			pfree(samples[i].writers);
	}
	nsamples = keep;
}
