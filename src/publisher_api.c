/*-------------------------------------------------------------------------
 *
 * publisher_api.c
 *	  SQL-callable functions around the publisher: configure() sets a
 *	  target's channel, publish_data() whether its notifications carry the
 *	  row, purge_events() deletes old published events.
 *
 * All three write tables that ordinary roles cannot write (nobody but the
 * extension may rewrite its settings or its log).  Like the event log
 * writer, they check the caller's right first, then run their fixed
 * statements as the owner of the table, in a security-restricted operation
 * with search_path reduced to pg_catalog so that no object the caller
 * created can stand in for a built-in one.  EXECUTE on them is revoked from
 * PUBLIC by the install script.
 *
 * A fourth, the sql_drop event trigger's function, deletes the settings of
 * dropped tables the same way; it checks nothing, since whoever could drop
 * a table may forget its setting.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/event_trigger.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "upsert_order.h"

PG_FUNCTION_INFO_V1(configure);
PG_FUNCTION_INFO_V1(publish_data);
PG_FUNCTION_INFO_V1(forget_dropped_targets);
PG_FUNCTION_INFO_V1(purge_events);

/*
 * The outermost (sub)transaction level holding a change of a target's
 * settings that has not been rolled back, or 0 when there is none.
 */
static int	settings_changed_level = 0;

/*
 * Can NOTIFY use this channel?  It refuses empty names and names of
 * NAMEDATALEN bytes or more.  On false, *reason says why.
 */
bool
PublisherChannelIsValid(const char *channel, const char **reason)
{
	if (channel == NULL || channel[0] == '\0')
	{
		*reason = "A channel name must not be empty.";
		return false;
	}
	if (strlen(channel) >= NAMEDATALEN)
	{
		*reason = "A channel name must be shorter than 64 bytes.";
		return false;
	}
	return true;
}

/*
 * Refuse a caller that does not own the table (nor belongs to the owning
 * role).  A table that does not exist passes: the caller reports that.
 */
static void
check_table_owner(Oid relid)
{
	char		relkind = get_rel_relkind(relid);

	if (relkind == '\0')
		return;
#if PG_VERSION_NUM >= 160000
	if (!object_ownercheck(RelationRelationId, relid, GetUserId()))
#else
	if (!pg_class_ownercheck(relid, GetUserId()))
#endif
		aclcheck_error(ACLCHECK_NOT_OWNER, get_relkind_objtype(relkind),
					   get_rel_name(relid));
}

/*
 * Lock the table named by argument 0 of a settings function and check that
 * the caller may set what it sets: only its owner (or a member of the owning
 * role) may, besides holding EXECUTE on the function, and only for a table
 * that versioned_upsert() may write and that goes with an event trigger.
 */
static Oid
settings_target_check(FunctionCallInfo fcinfo, const char *function)
{
	Oid			relid;
	Relation	rel;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("target must not be null")));
	relid = PG_GETARG_OID(0);

	/*
	 * Locked, so that a concurrent DROP either went first (and the table is
	 * gone) or waits for this setting, which its event trigger then deletes.
	 * Ownership is checked before, so that nobody else can wait in the
	 * table's lock queue through these functions, and again once locked.
	 */
	check_table_owner(relid);
	/* named as the caller knows it, not by the INSERT it would run */
	PreventCommandIfReadOnly(function);
	LockRelationOid(relid, AccessShareLock);
	if (get_rel_relkind(relid) == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));

	/*
	 * A setting must name what versioned_upsert() writes, and go when the
	 * table goes: a temporary table is dropped without any event trigger.
	 */
	rel = relation_open(relid, NoLock);
	TargetCheckTable(rel);
	if (rel->rd_rel->relpersistence == RELPERSISTENCE_TEMP)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is a temporary table", RelationGetRelationName(rel)),
				 errdetail("Temporary tables have no settings: their events go out on upsert_order.channel, without their rows.")));
	relation_close(rel, NoLock);
	check_table_owner(relid);
	return relid;
}

/*
 * Check what a statement on target_settings returned.  A DO INSTEAD rule on
 * the table, which its owner may add, replaces the statement: the settings
 * and the delete of a dropped table's settings would not be written.
 */
static void
check_settings_written(int ret, int expected)
{
	if (ret == SPI_OK_REWRITTEN)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("relation \"%s.target_settings\" has rules", UPSERT_ORDER_SCHEMA),
				 errdetail("A rule replaced the extension's statement on it."),
				 errhint("Drop the rules on it with DROP RULE.")));
	if (ret != expected)
		elog(ERROR, "could not write %s.target_settings: %s",
			 UPSERT_ORDER_SCHEMA, SPI_result_code_string(ret));
}

/*
 * Error out because target_settings did not end up as the extension's
 * statement left it: a trigger skipped the row, or a DO INSTEAD rule ran a
 * statement of the same kind elsewhere, which SPI reports as if it were the
 * extension's own.
 */
static void settings_not_written(void) pg_attribute_noreturn();

static void
settings_not_written(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("relation \"%s.target_settings\" did not keep what the extension wrote",
					UPSERT_ORDER_SCHEMA),
			 errdetail("A trigger or rule on it kept the extension's statement from writing or deleting a row."),
			 errhint("Drop the triggers and rules on it.")));
}

/*
 * Write one setting of target to target_settings, as the table's owner:
 * upsert, a statement of two parameters (the target and the value, null
 * if isnull), sets it; then the row goes if every setting is back to its
 * default, so that a target has a row only while it needs one.
 */
static void
settings_write(Oid target, const char *upsert, Oid valuetype, Datum value, bool isnull)
{
	Oid			settings_owner;
	OwnerSection section;
	Oid			argtypes[2] = {REGCLASSOID, valuetype};
	Datum		values[2] = {ObjectIdGetDatum(target), value};
	const char	nulls[2] = {' ', isnull ? 'n' : ' '};
	int			ret;

	(void) ExtensionTableLookup("target_settings", &settings_owner);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	OwnerSectionBegin(settings_owner, &section);

	ret = SPI_execute_with_args(upsert, 2, argtypes, values, nulls, false, 0);
	check_settings_written(ret, SPI_OK_INSERT);
	/* ON CONFLICT DO UPDATE inserts or updates the one row, always */
	if (SPI_processed != 1)
		settings_not_written();
	ret = SPI_execute_with_args("DELETE FROM ONLY upsert_order.target_settings"
								" WHERE target = $1 AND channel IS NULL AND publish_data IS NULL",
								1, argtypes, values, NULL, false, 0);
	check_settings_written(ret, SPI_OK_DELETE);

	OwnerSectionEnd(&section);
	SPI_finish();
	if (settings_changed_level == 0 ||
		GetCurrentTransactionNestLevel() < settings_changed_level)
		settings_changed_level = GetCurrentTransactionNestLevel();
}

/*
 * Transaction callback: a transaction that changed settings waits, as it
 * commits, for the batch the worker may be publishing with the settings
 * before (see PublisherLockSettings()).  It may not be prepared: the lock
 * would then stay with the prepared transaction, and hold up all
 * publishing, until its COMMIT PREPARED.  Changes rolled back to a
 * savepoint do not count (settings_subxact_callback).
 */
static void
settings_xact_callback(XactEvent event, void *arg)
{
	if (settings_changed_level == 0)
		return;
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			{
				Oid			extoid = get_extension_oid("upsert_order", true);

				/* unless it was dropped in this very transaction, with them */
				if (OidIsValid(extoid))
					PublisherLockSettings(extoid, RowExclusiveLock);
			}
			break;
		case XACT_EVENT_PRE_PREPARE:
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot PREPARE a transaction that has called configure() or publish_data()"),
					 errdetail("Its commit waits for the batch of notifications being sent, and a prepared transaction would hold up publishing until it ends.")));
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			settings_changed_level = 0;
			break;
		default:
			break;
	}
}

/*
 * Subtransaction callback: a released subtransaction's changes pass to its
 * parent; a rolled-back one's are gone, with those of any subtransaction it
 * held.  The level is still the ending subtransaction's here.
 */
static void
settings_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						  SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();

	if (settings_changed_level == 0)
		return;
	if (event == SUBXACT_EVENT_COMMIT_SUB && settings_changed_level == level)
		settings_changed_level = level - 1;
	else if (event == SUBXACT_EVENT_ABORT_SUB && settings_changed_level >= level)
		settings_changed_level = 0;
}

void
PublisherSettingsInitCallbacks(void)
{
	RegisterXactCallback(settings_xact_callback, NULL);
	RegisterSubXactCallback(settings_subxact_callback, NULL);
}

/*
 * configure(target regclass, channel text): notify the applied events of
 * target on channel instead of upsert_order.channel; a null channel goes
 * back to upsert_order.channel.
 */
Datum
configure(PG_FUNCTION_ARGS)
{
	Oid			relid = settings_target_check(fcinfo, "configure()");

	if (!PG_ARGISNULL(1))
	{
		char	   *channel = text_to_cstring(PG_GETARG_TEXT_PP(1));
		const char *reason;

		if (!PublisherChannelIsValid(channel, &reason))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid channel name \"%s\"", channel),
					 errdetail("%s", reason)));
	}

	settings_write(relid,
				   "INSERT INTO upsert_order.target_settings (target, channel)"
				   " VALUES ($1, $2)"
				   " ON CONFLICT (target) DO UPDATE SET channel = excluded.channel",
				   TEXTOID, PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1),
				   PG_ARGISNULL(1));
	PG_RETURN_VOID();
}

/*
 * publish_data(target regclass, publish boolean): whether the notifications
 * of target's events carry the row.  Without it they say "data_omitted", as
 * for a row too large, and a listener reads the row by key: NOTIFY has no
 * privileges, so this is how an owner keeps a table's rows from roles that
 * may LISTEN but not SELECT them.  A null goes back to the default, which
 * the worker decides when it publishes: true unless the table has row level
 * security enabled.
 */
Datum
publish_data(PG_FUNCTION_ARGS)
{
	Oid			relid = settings_target_check(fcinfo, "publish_data()");

	settings_write(relid,
				   "INSERT INTO upsert_order.target_settings (target, publish_data)"
				   " VALUES ($1, $2)"
				   " ON CONFLICT (target) DO UPDATE SET publish_data = excluded.publish_data",
				   BOOLOID, PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1),
				   PG_ARGISNULL(1));
	PG_RETURN_VOID();
}

/* the settings row s of a table the command dropped (d) */
#define DROPPED_TARGET \
	"d.classid = 'pg_class'::regclass AND d.objsubid = 0 AND d.objid = s.target::oid"

/* A statement on the dropped tables' settings, prepared. */
static SPIPlanPtr
dropped_settings_prepare(const char *statement)
{
	SPIPlanPtr	plan = SPI_prepare(statement, 0, NULL);

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	return plan;
}

/*
 * The sql_drop event trigger: forget the settings of every table the
 * command dropped, so that a table later given the same OID does not inherit
 * them (and a dump does not carry settings for a table that is gone).
 * Whoever could drop the table may forget its settings; they are deleted as
 * the owner of target_settings, like configure() writes them.
 */
Datum
forget_dropped_targets(PG_FUNCTION_ARGS)
{
	Oid			nspid;
	Oid			settings_owner;
	OwnerSection section;
	SPIPlanPtr	plan;
	int			ret;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_EVENT_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("_forget_dropped_targets() must be called by an event trigger")));

	/* the command may have dropped the extension's own tables */
	nspid = get_namespace_oid(UPSERT_ORDER_SCHEMA, true);
	if (!OidIsValid(nspid) || !OidIsValid(get_relname_relid("target_settings", nspid)))
		PG_RETURN_NULL();
	(void) ExtensionTableLookup("target_settings", &settings_owner);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	OwnerSectionBegin(settings_owner, &section);
	plan = dropped_settings_prepare("DELETE FROM ONLY upsert_order.target_settings s"
									" USING pg_event_trigger_dropped_objects() d"
									" WHERE " DROPPED_TARGET);

	/*
	 * With the latest snapshot, not the transaction's: at REPEATABLE READ
	 * that one may predate a setting written before the DROP took its lock
	 * on the table, and a row it cannot see would outlive the table, for the
	 * next one given its OID.  Every write of a dropped table's settings
	 * has committed by now, since configure() and publish_data() hold a lock
	 * on the table to the end of their transaction.
	 */
	ret = SPI_execute_snapshot(plan, NULL, NULL, GetLatestSnapshot(), InvalidSnapshot,
							   false, true, 0);
	check_settings_written(ret, SPI_OK_DELETE);

	/*
	 * How many rows there were to delete is not known, so look for one
	 * left: settings kept past the drop would apply to the next table given
	 * the same OID.
	 */
	CommandCounterIncrement();
	plan = dropped_settings_prepare("SELECT FROM ONLY upsert_order.target_settings s,"
									" pg_event_trigger_dropped_objects() d"
									" WHERE " DROPPED_TARGET);
	ret = SPI_execute_snapshot(plan, NULL, NULL, GetLatestSnapshot(), InvalidSnapshot,
							   true, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read %s.target_settings: %s",
			 UPSERT_ORDER_SCHEMA, SPI_result_code_string(ret));
	if (SPI_processed > 0)
		settings_not_written();
	OwnerSectionEnd(&section);
	SPI_finish();

	PG_RETURN_NULL();
}

/*
 * purge_events(older_than interval) RETURNS bigint: delete the events logged
 * more than older_than before the start of this transaction that are not
 * waiting to be published (see EventPurgeBatch()), and return how many.
 * It runs in the caller's transaction, in batches that each see the deletions
 * of the one before.
 */
Datum
purge_events(PG_FUNCTION_ARGS)
{
	Interval   *older_than;
	Interval	zero = {0};
	TimestampTz cutoff;
	Oid			log_owner;
	OwnerSection section;
	int64		after = 0;
	int64		purged = 0;
	bool		reached_cutoff = false;
	TimestampTz start = GetCurrentTransactionStartTimestamp();

	/* an error, as for the other functions, rather than a silent no-op */
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("older_than must not be null")));
	older_than = PG_GETARG_INTERVAL_P(0);

	if (DatumGetBool(DirectFunctionCall2(interval_lt,
										 IntervalPGetDatum(older_than),
										 IntervalPGetDatum(&zero))))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("older_than must not be negative")));

	/*
	 * An interval that mixes signs can compare as not negative (months
	 * count 30 days there) and yet, subtracted by the calendar, give a
	 * cutoff after now: '-1 year 360 days' would purge events up to five
	 * days ahead, every published one.
	 */
	cutoff = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval,
													 TimestampTzGetDatum(start),
													 IntervalPGetDatum(older_than)));
	if (cutoff > start)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("older_than must not be negative"),
				 errdetail("Subtracted from the start of the transaction by the calendar, it gives a later time.")));

	log_owner = EventLogOwner();
	/* before the lock, which a standby would refuse with a less clear error */
	PreventCommandIfReadOnly("purge_events()");
	EventPurgeLock(true);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	OwnerSectionBegin(log_owner, &section);
	/* by index only, as in the worker (see override_settings() in publisher.c) */
	(void) set_config_option("enable_seqscan", "off",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);

	while (!reached_cutoff)
	{
		CHECK_FOR_INTERRUPTS();
		purged += EventPurgeBatch(cutoff, after, &after, &reached_cutoff);
	}

	OwnerSectionEnd(&section);
	SPI_finish();

	PG_RETURN_INT64(purged);
}
