/*-------------------------------------------------------------------------
 *
 * upsert_order.c
 *	  Module entry point: defines the settings, registers the shared memory
 *	  of the server clock and of the publisher, the cache and transaction
 *	  callbacks (and the utility hook that sees COMMIT PREPARED), and the
 *	  publisher worker.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "utils/guc.h"

#include "upsert_order.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* Settings; see define_reload_settings() and define_postmaster_settings(). */
char	   *publisher_database = NULL;
char	   *publisher_channel = NULL;
int			publisher_naptime = 1000;
int			publisher_batch_size = 1000;
int			publisher_delay = 0;
int			publisher_event_retention = 0;

#if PG_VERSION_NUM >= 150000
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
request_shmem(void)
{
	HlcRequestShmem();
	PublisherRequestShmem();
}

#if PG_VERSION_NUM >= 150000
static void
upsert_order_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	request_shmem();
}
#endif

static void
upsert_order_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	HlcStartupShmem();
	PublisherStartupShmem();
}

/* GUC check hook: a channel NOTIFY accepts. */
static bool
check_channel(char **newval, void **extra, GucSource source)
{
	const char *reason;

	if (PublisherChannelIsValid(*newval, &reason))
		return true;
	GUC_check_errdetail("%s", reason);
	return false;
}

/* Settings the worker rereads on SIGHUP. */
static void
define_reload_settings(void)
{
	DefineCustomStringVariable("upsert_order.channel",
							   "Channel the publisher notifies, unless the target has its own.",
							   "Per-target channels are set with upsert_order.configure().",
							   &publisher_channel,
							   "upsert_order",
							   PGC_SIGHUP,
							   0,
							   check_channel, NULL, NULL);

	DefineCustomIntVariable("upsert_order.publish_naptime",
							"Longest time the publisher sleeps when there is nothing to publish.",
							"Commits of applied events wake it at once; this bounds the wait otherwise, "
							"and is also the pause before retrying after an error.",
							&publisher_naptime,
							1000, 10, 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("upsert_order.publish_batch_size",
							"Most events the publisher notifies in one transaction.",
							NULL,
							&publisher_batch_size,
							1000, 1, 100000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("upsert_order.publish_delay",
							"Shortest time between the starts of two publishing batches while events keep coming.",
							"Events committed meanwhile wait for the next batch: fewer, larger batches "
							"cost the publisher less per event, and add up to this much latency.  "
							"Zero starts the next batch at once.",
							&publisher_delay,
							0, 0, 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("upsert_order.event_retention",
							"Age after which the publisher deletes published events from the event log.",
							"Zero keeps every event.",
							&publisher_event_retention,
							0, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);
}

/* Settings that need a restart. */
static void
define_postmaster_settings(void)
{
	DefineCustomStringVariable("upsert_order.database",
							   "Database whose applied events the publisher notifies.",
							   NULL,
							   &publisher_database,
							   "postgres",
							   PGC_POSTMASTER,
							   0,
							   NULL, NULL, NULL);
}

/* Report settings named upsert_order.* that this module does not define. */
static void
reserve_prefix(void)
{
#if PG_VERSION_NUM >= 150000
	MarkGUCPrefixReserved("upsert_order");
#else
	EmitWarningsOnPlaceholders("upsert_order");
#endif
}

void
_PG_init(void)
{
	TargetInitCache();
	DirectInitCache();
	EventLogInitCache();
	PublisherInitCallbacks();
	PublisherSettingsInitCallbacks();

	define_reload_settings();

	/*
	 * Loaded late, the module cannot define its restart-only setting (the
	 * server refuses), so it does not reserve the prefix either: a value set
	 * for it in postgresql.conf would be reported as misspelt, in every
	 * session.
	 */
	if (!process_shared_preload_libraries_in_progress)
		return;

	define_postmaster_settings();
	reserve_prefix();

#if PG_VERSION_NUM >= 150000
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = upsert_order_shmem_request;
#else
	request_shmem();
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = upsert_order_shmem_startup;

	/* pg_upgrade's servers must not publish: the cluster is not live yet */
	if (!IsBinaryUpgrade)
		PublisherRegisterWorker();
}
