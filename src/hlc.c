/*-------------------------------------------------------------------------
 *
 * hlc.c
 *	  The server's hybrid logical clock behind rowseq_now(): one 64-bit
 *	  value in shared memory that every backend advances atomically.
 *
 * A stamp is max(wall clock in rowseq layout, last stamp + 1), so stamps are
 * unique and strictly increasing across all backends even when the wall
 * clock steps back, and never behind the wall clock.
 *
 * A stamp in the current millisecond of the wall clock needs nothing saved
 * to stay unique across a restart: a restart takes longer than that, and
 * the clock resumes from the wall clock.  A stamp whose millisecond is ahead
 * of the wall clock (the wall clock was set back, or more than 65,536 stamps
 * were taken in one millisecond) would be handed out again after a crash
 * that saved nothing.  So before the clock runs ahead past the bound saved in
 * the state file, the backend taking the stamp saves a new bound, a second
 * above it, durably; the next start, however the server went down,
 * continues above that bound.  The postmaster also saves the last stamp
 * when the server stops and when it resets shared memory after a backend
 * crashed, so that a restart after those continues right above it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <unistd.h>

#include "miscadmin.h"
#include "port/atomics.h"
#include "port/pg_crc32c.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "upsert_order.h"

#define HLC_STATE_FILE		"pg_stat/upsert_order_hlc.stat"
#define HLC_STATE_TEMP_FILE	HLC_STATE_FILE ".tmp"
#define HLC_STATE_MAGIC		0x55484c31	/* "UHL1": changes with the layout */
#define HLC_LOCK_TRANCHE	"upsert_order clock"

/* How far above a stamp ahead of the wall clock the saved bound goes: 1 s. */
#define HLC_SAVE_AHEAD		((uint64) 1000 << ROWSEQ_LOGICAL_BITS)

/* The state file: a bound on every stamp handed out, checksummed. */
typedef struct HlcSavedClock
{
	uint32		magic;			/* HLC_STATE_MAGIC */
	pg_crc32c	crc;			/* of bound */
	uint64		bound;
} HlcSavedClock;

typedef struct HlcState
{
	pg_atomic_uint64 last;		/* the greatest stamp handed out */
	pg_atomic_uint64 saved;		/* the bound in the state file */
	LWLock	   *save_lock;		/* taken to write the state file */
} HlcState;

static HlcState *hlc = NULL;

PG_FUNCTION_INFO_V1(rowseq_now);

/* The wall clock in rowseq layout, logical counter zero. */
static rowseq
hlc_wall_clock(void)
{
	TimestampTz now = GetCurrentTimestamp();
	int64		unix_ms = (now + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY) / 1000;

	/* a system clock before 1970 has no rowseq: count up from zero */
	if (unix_ms < 0)
		unix_ms = 0;
	return (rowseq) (unix_ms << ROWSEQ_LOGICAL_BITS);
}

void
HlcRequestShmem(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(HlcState)));
	RequestNamedLWLockTranche(HLC_LOCK_TRANCHE, 1);
}

static pg_crc32c
hlc_state_crc(const HlcSavedClock *saved)
{
	pg_crc32c	crc;

	INIT_CRC32C(crc);
	COMP_CRC32C(crc, &saved->bound, sizeof(saved->bound));
	FIN_CRC32C(crc);
	return crc;
}

/*
 * Read the bound in the state file; 0 when there is none, or when what is
 * there is not one whole, valid bound: a torn or foreign file could hold
 * any value, and the largest rowseq would make every later stamp fail.
 */
static uint64
hlc_load_state(void)
{
	HlcSavedClock saved;
	int			fd = OpenTransientFile(HLC_STATE_FILE, O_RDONLY | PG_BINARY);
	ssize_t		nread;

	if (fd < 0)
	{
		if (errno != ENOENT)
			ereport(LOG,
					(errcode_for_file_access(),
					 errmsg("could not open file \"%s\": %m", HLC_STATE_FILE)));
		return 0;
	}
	nread = read(fd, &saved, sizeof(saved));
	CloseTransientFile(fd);
	if (nread != sizeof(saved) || saved.magic != HLC_STATE_MAGIC ||
		!EQ_CRC32C(saved.crc, hlc_state_crc(&saved)) ||
		saved.bound >= (uint64) ROWSEQ_MAX)
	{
		ereport(LOG,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("ignoring the saved clock in file \"%s\"", HLC_STATE_FILE),
				 errdetail("The file does not hold a valid saved clock; rowseq_now() starts from the wall clock.")));
		return 0;
	}
	return saved.bound;
}

/*
 * Write bound to the state file through a new file renamed over the old one,
 * durably, so that a crash leaves one or the other whole.  Reports a failure
 * at elevel; returns whether the file holds bound now.
 */
static bool
hlc_write_state(uint64 bound, int elevel)
{
	HlcSavedClock saved;
	int			fd;
	ssize_t		written;
	int			save_errno;

	saved.magic = HLC_STATE_MAGIC;
	saved.bound = bound;
	saved.crc = hlc_state_crc(&saved);

	fd = OpenTransientFile(HLC_STATE_TEMP_FILE, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY);
	if (fd < 0)
	{
		ereport(elevel,
				(errcode_for_file_access(),
				 errmsg("could not create file \"%s\": %m", HLC_STATE_TEMP_FILE)));
		return false;
	}
	errno = 0;
	written = write(fd, &saved, sizeof(saved));
	/* a short write that set no errno is taken for a full disk */
	save_errno = errno ? errno : ENOSPC;
	if (CloseTransientFile(fd) != 0 && written == sizeof(saved))
	{
		written = -1;
		save_errno = errno;
	}
	if (written != sizeof(saved))
	{
		unlink(HLC_STATE_TEMP_FILE);
		errno = save_errno;
		ereport(elevel,
				(errcode_for_file_access(),
				 errmsg("could not write file \"%s\": %m", HLC_STATE_TEMP_FILE)));
		return false;
	}
	/* fsyncs the file before the rename and the directory after it */
	return durable_rename(HLC_STATE_TEMP_FILE, HLC_STATE_FILE, elevel) == 0;
}

/*
 * on_shmem_exit callback of the postmaster: save the last stamp so that the
 * next start continues right above it.  It runs when the server stops (in
 * any mode) and when shared memory is reset after a backend crashed (code
 * 1): the clock is a single atomic value that a crashing backend cannot
 * leave half written.  If the save fails, the file keeps the bound saved
 * last, which is above every stamp that ran ahead of the wall clock.
 */
static void
hlc_save_state(int code, Datum arg)
{
	if (hlc == NULL)
		return;
	(void) hlc_write_state(pg_atomic_read_u64(&hlc->last), LOG);
}

/* No stamp is left to hand out. */
static void hlc_exhausted(void) pg_attribute_noreturn();

static void
hlc_exhausted(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_SEQUENCE_GENERATOR_LIMIT_EXCEEDED),
			 errmsg("rowseq clock exhausted"),
			 errdetail("The clock has reached the largest rowseq, %lld.",
					   (long long) PG_INT64_MAX)));
}

/*
 * Save a bound above stamp, which is ahead of the wall clock, before it is
 * handed out.  Fails with an error when the file cannot be written: handing
 * the stamp out unsaved could hand it out twice.
 */
static void
hlc_save_bound(uint64 stamp)
{
	/* the largest rowseq is no valid bound (hlc_load_state) */
	if (stamp >= (uint64) ROWSEQ_MAX)
		hlc_exhausted();

	LWLockAcquire(hlc->save_lock, LW_EXCLUSIVE);
	if (stamp > pg_atomic_read_u64(&hlc->saved))
	{
		uint64		bound = stamp + Min(HLC_SAVE_AHEAD, (uint64) ROWSEQ_MAX - 1 - stamp);

		(void) hlc_write_state(bound, ERROR);
		pg_atomic_write_u64(&hlc->saved, bound);
	}
	LWLockRelease(hlc->save_lock);
}

/* Attach to (or, in the postmaster, create) the clock in shared memory. */
void
HlcStartupShmem(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	hlc = ShmemInitStruct("upsert_order hlc", sizeof(HlcState), &found);
	if (!found)
	{
		uint64		saved = hlc_load_state();

		pg_atomic_init_u64(&hlc->last, saved);
		pg_atomic_init_u64(&hlc->saved, saved);
		/* looked up once: a child started by exec cannot look up by name */
		hlc->save_lock = &GetNamedLWLockTranche(HLC_LOCK_TRANCHE)->lock;
	}
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
				 errdetail("The clock of rowseq_now() is kept in shared memory, which exists only when the library is preloaded."),
				 errhint("Add upsert_order to shared_preload_libraries and restart the server, or send every message with an explicit version.")));

	wall = (uint64) hlc_wall_clock();
	last = pg_atomic_read_u64(&hlc->last);
	do
	{
		next = Max(wall, last + 1);
		if (next > (uint64) ROWSEQ_MAX)
			hlc_exhausted();

		/*
		 * Ahead of the wall clock's millisecond and past the saved bound: a
		 * crash could lose it.  The bound only grows, so it still covers
		 * next when the exchange below succeeds.
		 */
		if ((next >> ROWSEQ_LOGICAL_BITS) > (wall >> ROWSEQ_LOGICAL_BITS) &&
			next > pg_atomic_read_u64(&hlc->saved))
			hlc_save_bound(next);
	} while (!pg_atomic_compare_exchange_u64(&hlc->last, &last, next));

	return (rowseq) next;
}

Datum
rowseq_now(PG_FUNCTION_ARGS)
{
	PG_RETURN_ROWSEQ(HlcNow());
}
