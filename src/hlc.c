/*-------------------------------------------------------------------------
 *
 * hlc.c
 *	  The server's hybrid logical clock behind rowseq_now(): one 64-bit
 *	  value in shared memory that every backend advances atomically.
 *
 * A stamp is max(wall clock in rowseq layout, last stamp + 1), so stamps are
 * unique and strictly increasing across all backends even when the wall
 * clock steps back, and never behind the wall clock.  The last stamp is saved
 * when the server stops, and when the postmaster resets shared memory after
 * a backend crashed, and read back at start, so neither goes back either.
 * When the server goes down without its postmaster saving it (the machine
 * fails), the clock resumes from the larger of the wall clock and the last
 * saved value.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <unistd.h>

#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "upsert_order.h"

#define HLC_STATE_FILE	"pg_stat/upsert_order_hlc.stat"

typedef struct HlcState
{
	pg_atomic_uint64 last;		/* the greatest stamp handed out */
} HlcState;

static HlcState *hlc = NULL;

PG_FUNCTION_INFO_V1(rowseq_now);

/* The wall clock in rowseq layout, logical counter zero. */
static rowseq
hlc_wall_clock(void)
{
	TimestampTz now = GetCurrentTimestamp();
	int64		unix_ms = (now + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY) / 1000;

	return (rowseq) (unix_ms << ROWSEQ_LOGICAL_BITS);
}

void
HlcRequestShmem(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(HlcState)));
}

/*
 * Read the stamp saved at the last shutdown; 0 when there is none, or when
 * what is there is not a rowseq: kept, it would make every later stamp fail.
 */
static uint64
hlc_load_state(void)
{
	FILE	   *file = AllocateFile(HLC_STATE_FILE, PG_BINARY_R);
	uint64		saved = 0;

	if (file == NULL)
	{
		if (errno != ENOENT)
			ereport(LOG,
					(errcode_for_file_access(),
					 errmsg("could not open file \"%s\": %m", HLC_STATE_FILE)));
		return 0;
	}
	if (fread(&saved, sizeof(saved), 1, file) != 1 || saved > (uint64) ROWSEQ_MAX)
	{
		ereport(LOG,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("ignoring the saved clock in file \"%s\"", HLC_STATE_FILE),
				 errdetail("The file does not hold one valid rowseq; rowseq_now() starts from the wall clock.")));
		saved = 0;
	}
	FreeFile(file);
	return saved;
}

/*
 * on_shmem_exit callback of the postmaster: save the last stamp so that the
 * next start continues above it.  It runs when the server stops (in any
 * mode) and when shared memory is reset after a backend crashed (code 1):
 * the clock is a single atomic value that a crashing backend cannot leave
 * half written, and without it the clock could restart below stamps
 * already handed out when it runs ahead of the wall clock.
 */
static void
hlc_save_state(int code, Datum arg)
{
	FILE	   *file;
	uint64		last;
	bool		written;
	int			save_errno;

	if (hlc == NULL)
		return;

	last = pg_atomic_read_u64(&hlc->last);
	file = AllocateFile(HLC_STATE_FILE ".tmp", PG_BINARY_W);
	if (file == NULL)
	{
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("could not create file \"%s\": %m", HLC_STATE_FILE ".tmp")));
		return;
	}
	errno = 0;
	written = fwrite(&last, sizeof(last), 1, file) == 1;
	/* a short write that set no errno is taken for a full disk */
	save_errno = errno ? errno : ENOSPC;
	/* closed whatever happened: the postmaster goes on after a crash */
	if (FreeFile(file) != 0)
	{
		written = false;
		save_errno = errno;
	}
	if (!written)
	{
		errno = save_errno;
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("could not write file \"%s\": %m", HLC_STATE_FILE ".tmp")));
		unlink(HLC_STATE_FILE ".tmp");
		return;
	}
	(void) durable_rename(HLC_STATE_FILE ".tmp", HLC_STATE_FILE, LOG);
}

/* Attach to (or, in the postmaster, create) the clock in shared memory. */
void
HlcStartupShmem(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	hlc = ShmemInitStruct("upsert_order hlc", sizeof(HlcState), &found);
	if (!found)
		pg_atomic_init_u64(&hlc->last, hlc_load_state());
	LWLockRelease(AddinShmemInitLock);

	if (!IsUnderPostmaster)
		on_shmem_exit(hlc_save_state, (Datum) 0);
}

/* Hand out the next stamp: greater than every earlier one, never behind the wall clock. */
rowseq
HlcNow(void)
{
	uint64		wall;
	uint64		last;
	uint64		next;

	if (hlc == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("upsert_order must be loaded via shared_preload_libraries to assign server stamps"),
				 errdetail("rowseq_now() keeps its clock in shared memory, which exists only when the library is preloaded."),
				 errhint("Add upsert_order to shared_preload_libraries and restart the server, or send every message with an explicit version.")));

	wall = (uint64) hlc_wall_clock();
	last = pg_atomic_read_u64(&hlc->last);
	do
	{
		next = Max(wall, last + 1);
		if (next > (uint64) ROWSEQ_MAX)
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("rowseq clock exhausted")));
	} while (!pg_atomic_compare_exchange_u64(&hlc->last, &last, next));

	return (rowseq) next;
}

Datum
rowseq_now(PG_FUNCTION_ARGS)
{
	PG_RETURN_ROWSEQ(HlcNow());
}
