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
 * A writer that stays open with an event holds the horizon until it ends,
 * however long.  So while the horizon is held, the scan resumes higher where
 * it can: at the last event_id V of a sample covered by a committed batch.
 * Covering takes the transaction IDs of the sample's writers, read after V
 * (a writer takes its ID before its event_id, so any with an event up to V
 * has one), and keeps those still running for the batch's snapshot; the
 * batch must have published all it saw up to V.  Then an event up to V not
 * published belongs to one of those kept: any other writer had ended for
 * that snapshot, its event visible to it.  A later batch whose snapshot
 * still sees all of those kept running sees none of their events, so
 * nothing up to V is left for it: it resumes at V.  It covers the newest
 * samples again, keeping fewer writers as they end, so the point it resumes
 * at moves up.  Running means running for the snapshot: a transaction's
 * commit is visible before it releases its locks.  While the horizon is
 * held, every batch reads the writers of the sample it takes.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/twophase.h"
#include "access/xlog.h"
#include "catalog/pg_sequence.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "storage/proc.h"
#if PG_VERSION_NUM >= 170000
#include "storage/procarray.h"
#else
#include "storage/sinvaladt.h"
#endif
#include "utils/fmgrprotos.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "upsert_order.h"

/*
 * The consumed horizon (see the top of this file), for the outbox table
 * horizon_relid, and the samples not yet complete, oldest first.
 */
#define HORIZON_SAMPLES 64

/* The newest samples, where a scan may resume above the horizon. */
#define RESUME_SAMPLES 8

typedef struct HorizonSample
{
	int64		last_event_id;	/* the sequence's last value, read first */
	TransactionId next_xid;		/* then the next transaction ID */
	uint64		batch;			/* the batch that took the sample */
	bool		writers_read;	/* later, if need be, event_log's writers: */
	int			nwriters;		/* how many, -1 if unknown; */
	VirtualTransactionId *writers;	/* those not seen ended yet */
	/* for resuming above the horizon (see the top of this file) */
	bool		resumable;		/* read, and every writer's ID known */
	int			nxids;			/* the writers' top transaction IDs kept */
	TransactionId *xids;		/* (those running come first after a check) */
	int			nrunning;		/* how many of them the last check found running */
	uint64		checked;		/* the batch that last checked them */
	bool		covered;		/* a committed batch covered the sample */
} HorizonSample;

static int64 consumed_horizon = 0;
static Oid	horizon_relid = InvalidOid;
static HorizonSample samples[HORIZON_SAMPLES];
static int	nsamples = 0;

/* Batches so far, the one in progress included. */
static uint64 batches = 0;

/* Up to which event_id the batch in progress published all it saw. */
static int64 batch_covered = 0;

/* Free what sample holds. */
static void
horizon_free_sample(HorizonSample *sample)
{
	if (sample->writers)
		pfree(sample->writers);
	if (sample->xids)
		pfree(sample->xids);
}

/* Drop samples[from ..] and what they hold. */
static void
horizon_forget_samples(int from)
{
	for (int i = from; i < nsamples; i++)
		horizon_free_sample(&samples[i]);
	nsamples = Min(nsamples, from);
}

/*
 * Drop samples[which], keeping the order of the others.  A loop rather than
 * memmove(): built with _FORTIFY_SOURCE, memmove() becomes glibc's
 * __memmove_chk, whose code on x86-64 is also __memcpy_chk's, and valgrind
 * reports this correct overlapping move as a memcpy overlap.  There are at
 * most HORIZON_SAMPLES samples.
 */
static void
horizon_forget_sample(int which)
{
	horizon_free_sample(&samples[which]);
	for (int i = which; i < nsamples - 1; i++)
		samples[i] = samples[i + 1];
	nsamples--;
}

/*
 * The process that a virtual transaction ID names, or NULL.  PostgreSQL 17
 * numbers processes by ProcNumber where 15 and 16 have a BackendId.
 */
static PGPROC *
horizon_vxid_proc(VirtualTransactionId vxid)
{
#if PG_VERSION_NUM >= 170000
	return ProcNumberGetProc(vxid.procNumber);
#else
	return BackendIdGetProc(vxid.backendId);
#endif
}

/* Does proc still run that transaction?  Read under ProcArrayLock. */
static bool
horizon_proc_runs_vxid(const PGPROC *proc, VirtualTransactionId vxid)
{
#if PG_VERSION_NUM >= 170000
	return proc->vxid.procNumber == vxid.procNumber &&
		proc->vxid.lxid == vxid.localTransactionId;
#else
	return proc->backendId == vxid.backendId &&
		proc->lxid == vxid.localTransactionId;
#endif
}

/*
 * The top transaction IDs of the writers, in xids (*nxids of them), leaving
 * out those that have none yet, and so no event_id up to the sample's, and
 * those that have ended.  A prepared transaction keeps the virtual ID its
 * backend gave it, and is found by it; one recovered at a start or a
 * promotion has its transaction ID for a virtual ID.  False when a virtual
 * ID names more than one prepared transaction: the sample is then not
 * resumed at.
 */
static bool
horizon_writer_xids(const VirtualTransactionId *writers, int nwriters,
					TransactionId *xids, int *nxids)
{
	*nxids = 0;
	for (int i = 0; i < nwriters; i++)
	{
		PGPROC	   *proc;
		TransactionId xid = InvalidTransactionId;
		bool		same = false;

		if (VirtualTransactionIdIsRecoveredPreparedXact(writers[i]))
		{
			/*
			 * Prepared before the server started or was promoted: its
			 * virtual ID carries its transaction ID, as VirtualXactLock()
			 * reads it.  Whether it has ended since, the snapshots judge.
			 */
			xids[(*nxids)++] = (TransactionId) writers[i].localTransactionId;
			continue;
		}
		proc = horizon_vxid_proc(writers[i]);
		if (proc != NULL)
		{
			/*
			 * Both under ProcArrayLock, which a transaction's end (commit,
			 * abort or PREPARE) holds while it clears them.  Without it, a
			 * PREPARE could show the ID cleared and the transaction still the
			 * same, as if it had no ID.  One with the same transaction and no
			 * ID has taken no event_id.
			 */
			LWLockAcquire(ProcArrayLock, LW_SHARED);
			xid = proc->xid;
			same = horizon_proc_runs_vxid(proc, writers[i]);
			LWLockRelease(ProcArrayLock);
		}
		if (!same)
		{
			/* no longer its backend's: ended, or prepared */
			bool		more = false;

			xid = TwoPhaseGetXidByVirtualXID(writers[i], &more);
			if (more)
				return false;
		}
		if (TransactionIdIsValid(xid))
			xids[(*nxids)++] = xid;
	}
	return true;
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
	TransactionId *found_xids;
	TransactionId *xids;
	int			nxids;
	bool		resumable;

	if (RecoveryInProgress())
	{
		sample->writers_read = true;
		return;					/* nwriters stays -1 */
	}
	SET_LOCKTAG_RELATION(tag, MyDatabaseId, log_relid);
	/* palloc'd, outside recovery (during it, a static array) */
	found = GetLockConflicts(&tag, ShareLock, &nwriters);
	found_xids = palloc(sizeof(TransactionId) * Max(nwriters, 1));
	resumable = horizon_writer_xids(found, nwriters, found_xids, &nxids);

	/* only now: an error above leaves the sample unread, to read again */
	writers = MemoryContextAlloc(TopMemoryContext,
								 sizeof(VirtualTransactionId) * Max(nwriters, 1));
	memcpy(writers, found, sizeof(VirtualTransactionId) * nwriters);
	xids = MemoryContextAlloc(TopMemoryContext, sizeof(TransactionId) * Max(nxids, 1));
	memcpy(xids, found_xids, sizeof(TransactionId) * nxids);
	pfree(found);
	pfree(found_xids);
	sample->writers = writers;
	sample->nwriters = nwriters;
	sample->writers_read = true;
	sample->xids = xids;
	sample->nxids = nxids;
	sample->resumable = resumable;
}

/* Forget the writers of sample that have ended; returns how many are left. */
static int
horizon_forget_ended(HorizonSample *sample)
{
	int			keep = 0;

	if (sample->nwriters < 0)
		return -1;				/* unknown */
	for (int j = 0; j < sample->nwriters; j++)
		if (!VirtualXactLock(sample->writers[j], false))
			sample->writers[keep++] = sample->writers[j];
	sample->nwriters = keep;
	return keep;
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
		if (horizon_forget_ended(sample) > 0)
		{
			/* held: read the sample this batch took, to resume at later */
			HorizonSample *newest = &samples[nsamples - 1];

			if (!newest->writers_read && newest->batch == batches)
				horizon_read_writers(newest, log_relid);
			break;
		}
	}
}

/*
 * Put first in sample->xids those running for snapshot, and count them in
 * sample->nrunning, for this batch to cover the sample with.
 */
static void
horizon_check_running(HorizonSample *sample, Snapshot snapshot)
{
	int			running = 0;

	for (int j = 0; j < sample->nxids; j++)
	{
		if (XidInMVCCSnapshot(sample->xids[j], snapshot))
		{
			TransactionId xid = sample->xids[j];

			sample->xids[j] = sample->xids[running];
			sample->xids[running++] = xid;
		}
	}
	sample->nrunning = running;
	sample->checked = batches;
}

/*
 * Where the batch's scan of the outbox starts, given its snapshot: above the
 * horizon, or above the newest covered sample whose writers all still run
 * for that snapshot (see the top of this file).  Checks the newest samples
 * for the batch to cover them.
 */
int64
OutboxHorizonScanStart(Snapshot snapshot)
{
	int64		start = consumed_horizon;
	bool		resumed = false;

	for (int i = nsamples - 1; i >= Max(nsamples - RESUME_SAMPLES, 0); i--)
	{
		HorizonSample *sample = &samples[i];

		if (!sample->resumable)
			continue;
		horizon_check_running(sample, snapshot);
		if (!resumed && sample->covered && sample->nrunning == sample->nxids)
		{
			start = Max(start, sample->last_event_id);
			resumed = true;
		}
	}
	return start;
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
	HorizonSample sample = {0};
	int64		highest_seen;
	LOCAL_FCINFO(fcinfo, 1);

	batches++;
	batch_covered = 0;

	/*
	 * The OID was looked up before this transaction, without a lock.  A
	 * DROP EXTENSION waits for the batch (extension_ready()), but the
	 * sequence alone can be dropped by hand once taken out of the extension:
	 * lock it first (which also reads the invalidations since), so that such
	 * a drop is seen here, and none can happen until the batch ends.
	 */
	LockRelationOid(seqid, AccessShareLock);
	tuple = SearchSysCache1(SEQRELID, ObjectIdGetDatum(seqid));
	if (!HeapTupleIsValid(tuple))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"%s.event_log_event_id_seq\" does not exist", UPSERT_ORDER_SCHEMA)));
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
	/*
	 * Full: drop the second oldest.  The oldest is the one the horizon waits
	 * for, and the newest are where scans resume; the horizon only advances
	 * in coarser steps once the oldest completes.
	 */
	if (nsamples == HORIZON_SAMPLES)
		horizon_forget_sample(1);
	sample.batch = batches;
	sample.nwriters = -1;		/* not read yet; the rest stays zero */
	samples[nsamples++] = sample;
	return true;
}

/*
 * The horizon reached once this batch commits: the last event_id of the
 * newest sample completed in the snapshot of xmin or by its writers' ends,
 * or, when the batch was full, only up to the last event it took
 * (last_taken).  Also notes how far the batch published all it saw, for
 * OutboxHorizonAdvance() to cover the samples with once it committed.
 */
int64
OutboxHorizonReached(TransactionId xmin, bool full, int64 last_taken)
{
	int64		reached = consumed_horizon;

	batch_covered = full ? last_taken : PG_INT64_MAX;

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

/*
 * The batch committed: move the horizon, forget the samples behind it, and
 * cover those it checked, up to where it published all it saw, with the
 * writers running for its snapshot.
 */
void
OutboxHorizonAdvance(int64 reached)
{
	int			keep = 0;

	consumed_horizon = Max(consumed_horizon, reached);
	for (int i = 0; i < nsamples; i++)
	{
		HorizonSample *sample = &samples[i];

		if (sample->last_event_id <= consumed_horizon)
		{
			horizon_free_sample(sample);
			continue;
		}
		if (sample->checked == batches && sample->last_event_id <= batch_covered)
		{
			sample->nxids = sample->nrunning;
			sample->covered = true;
		}
		samples[keep++] = *sample;
	}
	nsamples = keep;
}
