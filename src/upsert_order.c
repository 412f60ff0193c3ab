/*-------------------------------------------------------------------------
 *
 * upsert_order.c
 *	  Module entry point: registers the shared memory the server clock
 *	  needs and the cache callbacks of the upsert path.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"

#include "upsert_order.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

#if PG_VERSION_NUM >= 150000
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

#if PG_VERSION_NUM >= 150000
static void
upsert_order_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	HlcRequestShmem();
}
#endif

static void
upsert_order_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	HlcStartupShmem();
}

void
_PG_init(void)
{
	TargetInitCache();
	EventLogInitCache();

	if (!process_shared_preload_libraries_in_progress)
		return;

#if PG_VERSION_NUM >= 150000
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = upsert_order_shmem_request;
#else
	HlcRequestShmem();
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = upsert_order_shmem_startup;
}
