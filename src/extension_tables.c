/*-------------------------------------------------------------------------
 *
 * extension_tables.c
 *	  The extension's own tables, for the code that writes them below SQL:
 *	  finding them, acting as their owner, and inserting their rows.
 *
 * event_log, its sequence, the outbox, publication and target_settings are
 * found by name in the extension's schema, and must be the ones CREATE
 * EXTENSION made (ExtensionTableLookup), with the column types the code
 * reads and writes (ExtensionColumn).  What runs on them runs as the
 * table's owner, in a security-restricted operation, the way PostgreSQL
 * runs foreign-key checks as the owner of the referenced table.  An
 * OwnerSection does that and also reduces search_path to pg_catalog; the
 * event log's writer, on every message's path, switches the user alone,
 * and an insert sets search_path only when it can run code.  Rows are
 * inserted through the executor's simple insert path, the one logical
 * replication applies a row with (Appender): no statement, no plan, and
 * still the table's indexes, constraints, triggers and the defaults of any
 * column its owner added.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/pg_attribute.h"
#include "catalog/pg_class.h"
#include "catalog/pg_namespace.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parse_coerce.h"
#include "rewrite/rewriteHandler.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "upsert_order.h"

/*
 * One of the extension's tables, open for inserts: the relation, its indexes
 * and the executor state ExecSimpleRelationInsert() needs.  Setting them up
 * costs a good part of an insert, so a caller that writes many rows keeps
 * one open (AppenderOpen): a batch of messages keeps event_log's and the
 * outbox's (event_log.c), the publisher publication's for a batch of
 * notifications.  Otherwise it lasts one row (AppenderOpenOneRow).
 */
struct Appender
{
	Relation	rel;
	EState	   *estate;
	ResultRelInfo *rri;
	TupleTableSlot *slot;
	bool		stays_open;		/* closed by AppenderClose(), not after an insert */
	bool		busy;			/* an insert through it is running */
	bool		runs_code;		/* an insert runs code the owner attached */
	bool	   *given;			/* the columns the row being built sets */

	/*
	 * The defaults of the columns a row leaves out, which only the owner can
	 * have added, prepared when first needed (appender_defaults_fill).
	 */
	bool	   *default_ready;
	ExprState **defaults;		/* NULL: the column has none */
};

/*
 * Find one of the extension's tables by name; returns its OID and sets
 * *owner.  A missing table means the extension was tampered with.  So does
 * a table of that name that the extension did not create: whoever made it
 * could have given it triggers, which would run where the extension writes
 * it, in the worker as a superuser.
 */
Oid
ExtensionTableLookup(const char *relname, Oid *owner)
{
	Oid			nspid = get_namespace_oid(UPSERT_ORDER_SCHEMA, false);
	Oid			relid = get_relname_relid(relname, nspid);
	Oid			extoid = get_extension_oid("upsert_order", true);
	HeapTuple	tuple;
	char		persistence;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"%s.%s\" does not exist", UPSERT_ORDER_SCHEMA, relname),
				 errhint("Recreate the extension with DROP EXTENSION and CREATE EXTENSION upsert_order.")));
	/* the extension itself may be gone, under a call that takes no lock */
	if (!OidIsValid(extoid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("extension \"upsert_order\" does not exist"),
				 errhint("Create it with CREATE EXTENSION upsert_order.")));
	if (getExtensionOfObject(RelationRelationId, relid) != extoid)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("relation \"%s.%s\" is not a member of extension \"upsert_order\"",
						UPSERT_ORDER_SCHEMA, relname),
				 errdetail("The extension writes only the tables that CREATE EXTENSION created."),
				 errhint("Recreate the extension with DROP EXTENSION and CREATE EXTENSION upsert_order.")));
	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	*owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	persistence = ((Form_pg_class) GETSTRUCT(tuple))->relpersistence;
	ReleaseSysCache(tuple);

	/*
	 * A crash empties an unlogged table or sequence: events, their queue and
	 * the record of what was notified would go, and seqs and event_ids be
	 * handed out again.
	 */
	if (persistence != RELPERSISTENCE_PERMANENT)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("relation \"%s.%s\" is not a permanent relation", UPSERT_ORDER_SCHEMA, relname),
				 errdetail("A crash would empty it, and with it what the extension must keep."),
				 errhint("Make it logged again with ALTER TABLE or ALTER SEQUENCE ... SET LOGGED.")));
	return relid;
}

/*
 * _check_install_schema(), which the install script calls (and drops)
 * before it creates anything: refuse a schema that a role other than a
 * superuser owns.  CREATE EXTENSION installs into an existing schema of the
 * control file's name, whoever owns it, and that owner could rename it and
 * put tables and functions of its own in the place of the extension's.
 * In C rather than a DO block, so that installing needs no PL/pgSQL.
 */
PG_FUNCTION_INFO_V1(check_install_schema);

Datum
check_install_schema(PG_FUNCTION_ARGS)
{
	Oid			nspid = get_namespace_oid(UPSERT_ORDER_SCHEMA, false);
	HeapTuple	tuple;
	Oid			owner;

	tuple = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nspid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for schema %u", nspid);
	owner = ((Form_pg_namespace) GETSTRUCT(tuple))->nspowner;
	ReleaseSysCache(tuple);
	if (!superuser_arg(owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("schema \"%s\" is owned by role \"%s\", which is not a superuser",
						UPSERT_ORDER_SCHEMA, GetUserNameFromId(owner, false)),
				 errdetail("Its owner could replace the extension's tables and functions with objects of their own."),
				 errhint("Drop the schema, or make a superuser its owner, before CREATE EXTENSION upsert_order.")));
	PG_RETURN_VOID();
}

/*
 * The attribute number of a column of one of the extension's tables, which
 * must still have the type the extension reads and writes it as: the datums
 * go in and out below SQL, with no conversion that would catch a column its
 * owner altered to another type.
 */
AttrNumber
ExtensionColumn(Oid relid, const char *relname, const char *colname, Oid typid)
{
	HeapTuple	tuple = SearchSysCacheAttName(relid, colname);
	AttrNumber	attnum;
	Oid			atttypid;

	if (!HeapTupleIsValid(tuple))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of relation \"%s.%s\" does not exist",
						colname, UPSERT_ORDER_SCHEMA, relname),
				 errhint("Recreate the extension with DROP EXTENSION and CREATE EXTENSION upsert_order.")));
	attnum = ((Form_pg_attribute) GETSTRUCT(tuple))->attnum;
	atttypid = ((Form_pg_attribute) GETSTRUCT(tuple))->atttypid;
	ReleaseSysCache(tuple);
	if (atttypid != typid)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("column \"%s\" of relation \"%s.%s\" is of type %s, not %s",
						colname, UPSERT_ORDER_SCHEMA, relname,
						format_type_be(atttypid), format_type_be(typid)),
				 errdetail("The extension reads and writes the column as the type CREATE EXTENSION gave it."),
				 errhint("Alter the column back to type %s.", format_type_be(typid))));
	return attnum;
}

/*
 * Reduce search_path to pg_catalog (pg_temp last) until AtEOXact_GUC(true,
 * level) with the level returned.  For what runs as the owner of the
 * extension's tables: it must not find functions or operators a caller
 * placed on the caller's search_path.  An error needs no cleanup: aborting
 * the (sub)transaction restores the setting.
 */
int
OwnerSearchPathBegin(void)
{
	int			level = NewGUCNestLevel();

	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return level;
}

/*
 * Run what follows as owner (of one of the extension's tables), in a
 * restricted context, with OwnerSearchPathBegin()'s search_path.  An error
 * needs no cleanup: aborting the (sub)transaction restores both the user
 * and the setting.
 */
void
OwnerSectionBegin(Oid owner, OwnerSection *section)
{
	GetUserIdAndSecContext(&section->save_userid, &section->save_sec_context);
	SetUserIdAndSecContext(owner,
						   section->save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION | SECURITY_NOFORCE_RLS);
	section->save_nestlevel = OwnerSearchPathBegin();

	/*
	 * The statements run here must see every row of the extension's tables:
	 * a purge that saw only some of the outbox would delete events still
	 * waiting.  The owner's own tables show them all, row level security
	 * forced or not (as for foreign key checks); a table of another owner
	 * whose policies apply makes the statement fail instead.
	 */
	(void) set_config_option("row_security", "off",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

void
OwnerSectionEnd(OwnerSection *section)
{
	AtEOXact_GUC(true, section->save_nestlevel);
	SetUserIdAndSecContext(section->save_userid, section->save_sec_context);
}

/*
 * Does an index expression or predicate run code: anything but columns,
 * constants, and NULL, boolean and AND/OR/NOT tests on them?  A predicate
 * such as publication's "event_id IS NULL" does not: evaluating it cannot
 * look a name up.  Any other node may call a function, some without saying
 * which (GREATEST calls the type's comparison function, for one).
 */
static bool
calls_code_walker(Node *node, void *context)
{
	if (node == NULL)
		return false;
	switch (nodeTag(node))
	{
		case T_List:
		case T_Var:
		case T_Const:
		case T_NullTest:
		case T_BooleanTest:
		case T_BoolExpr:
		case T_RelabelType:
			return expression_tree_walker(node, calls_code_walker, context);
		default:
			return true;
	}
}

/*
 * Does inserting into the table run code that can look names up?  The
 * extension attaches none; its owner may have added a trigger, a CHECK
 * constraint, a generated column or an index on an expression, with a
 * predicate, or for an exclusion constraint, that runs code.
 */
static bool
appender_runs_code(Appender *ap)
{
	TupleConstr *constr = RelationGetDescr(ap->rel)->constr;

	if (ap->rri->ri_TrigDesc != NULL)
		return true;
	if (constr && (constr->num_check > 0 || constr->has_generated_stored))
		return true;
	for (int i = 0; i < ap->rri->ri_NumIndices; i++)
	{
		IndexInfo  *info = ap->rri->ri_IndexRelationInfo[i];

		if (calls_code_walker((Node *) info->ii_Expressions, NULL) ||
			calls_code_walker((Node *) info->ii_Predicate, NULL) ||
			info->ii_ExclusionOps != NULL)
			return true;
	}
	return false;
}

/* Open one of the extension's tables for inserts, in the current memory. */
static Appender *
appender_open(Oid relid, bool stays_open)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	Appender   *ap = palloc0(sizeof(Appender));

	ap->rel = table_open(relid, RowExclusiveLock);
	ap->estate = SimpleExecStateCreate(ap->rel, NULL, NULL, &ap->rri);
	MemoryContextSwitchTo(ap->estate->es_query_cxt);
	ExecOpenIndices(ap->rri, false);
	ap->slot = ExecInitExtraTupleSlot(ap->estate, RelationGetDescr(ap->rel),
									  &TTSOpsVirtual);
	ap->runs_code = appender_runs_code(ap);
	ap->given = palloc0(sizeof(bool) * RelationGetDescr(ap->rel)->natts);
	ap->stays_open = stays_open;
	MemoryContextSwitchTo(oldcxt);
	return ap;
}

/*
 * Open one of the extension's tables for inserts of many rows: the
 * appender stays open after each insert, until AppenderClose().
 */
Appender *
AppenderOpen(Oid relid)
{
	return appender_open(relid, true);
}

/* Open one of the extension's tables for one row: AppenderInsert() closes it. */
Appender *
AppenderOpenOneRow(Oid relid)
{
	return appender_open(relid, false);
}

void
AppenderClose(Appender *ap)
{
	SimpleExecStateFree(ap->estate);
	table_close(ap->rel, NoLock);
	pfree(ap);
}

/* The table the appender writes, locked and open until it is closed. */
Relation
AppenderRelation(const Appender *ap)
{
	return ap->rel;
}

/*
 * Is an insert through the appender running?  What it runs (a default, a
 * constraint, a trigger) may log a message of its own meanwhile.
 */
bool
AppenderBusy(const Appender *ap)
{
	return ap->busy;
}

/* Has the table triggers, of any kind?  Only its owner can have added them. */
bool
AppenderHasTriggers(const Appender *ap)
{
	return ap->rri->ri_TrigDesc != NULL;
}

/*
 * Start the row an appender inserts next: the caller sets every column of
 * the extension's (AppenderSet, AppenderSetNull); any other gets its
 * default when the row is inserted.  The row has the width of the table as
 * opened, that is as locked: after any change to it.
 */
void
AppenderNewRow(Appender *ap)
{
	TupleDesc	tupdesc = RelationGetDescr(ap->rel);

	ExecClearTuple(ap->slot);
	memset(ap->slot->tts_isnull, true, sizeof(bool) * tupdesc->natts);
	memset(ap->given, false, sizeof(bool) * tupdesc->natts);
}

/* Set column attnum of the row being built. */
void
AppenderSet(Appender *ap, AttrNumber attnum, Datum value)
{
	Assert(attnum > 0 && attnum <= RelationGetDescr(ap->rel)->natts);
	ap->slot->tts_values[attnum - 1] = value;
	ap->slot->tts_isnull[attnum - 1] = false;
	ap->given[attnum - 1] = true;
}

/* Set column attnum of the row being built to NULL, whatever its default. */
void
AppenderSetNull(Appender *ap, AttrNumber attnum)
{
	Assert(attnum > 0 && attnum <= RelationGetDescr(ap->rel)->natts);
	ap->slot->tts_isnull[attnum - 1] = true;
	ap->given[attnum - 1] = true;
}

/*
 * Does the row leave out column i (0-based), which an INSERT would fill?
 * Only a column the owner added can be left out: the extension sets every
 * column of its own.  A generated column is computed by the insert itself.
 */
static bool
appender_leaves_out_column(Appender *ap, int i)
{
	Form_pg_attribute att = TupleDescAttr(RelationGetDescr(ap->rel), i);

	return !ap->given[i] && !att->attisdropped && !att->attgenerated;
}

/* Does the row leave out any column (appender_leaves_out_column)? */
static bool
appender_leaves_out(Appender *ap)
{
	for (int i = 0; i < RelationGetDescr(ap->rel)->natts; i++)
		if (appender_leaves_out_column(ap, i))
			return true;
	return false;
}

/*
 * What an INSERT naming only the other columns puts in column attnum: its
 * default (its own, an identity's next value, or its domain's), or else a
 * NULL that a domain checks; NULL if it puts a plain NULL.
 */
static Expr *
column_insert_value(Relation rel, AttrNumber attnum)
{
	Form_pg_attribute att = TupleDescAttr(RelationGetDescr(rel), attnum - 1);
	Node	   *expr = build_column_default(rel, attnum);
	Node	   *null_value;

	if (expr != NULL)
		return expression_planner((Expr *) expr);
	null_value = (Node *) makeConst(att->atttypid, -1, att->attcollation, att->attlen,
									(Datum) 0, true, att->attbyval);
	expr = coerce_to_domain(null_value, InvalidOid, -1, att->atttypid,
							COERCION_IMPLICIT, COERCE_IMPLICIT_CAST, -1, false);
	return expr != null_value ? expression_planner((Expr *) expr) : NULL;
}

/*
 * Give the columns the row leaves out what an INSERT naming only the
 * extension's columns would give them (column_insert_value), prepared once
 * per column for the appender's life.  Called as the owner, with the
 * owner's search_path (planning may inline a function, or run one), and
 * while the appender is busy (a function may log a message of its own).
 * Evaluated in per-row memory.
 */
static void
appender_defaults_fill(Appender *ap)
{
	TupleDesc	tupdesc = RelationGetDescr(ap->rel);
	ExprContext *econtext = GetPerTupleExprContext(ap->estate);
	MemoryContext oldcxt = MemoryContextSwitchTo(ap->estate->es_query_cxt);

	if (ap->defaults == NULL)
	{
		ap->default_ready = palloc0(sizeof(bool) * tupdesc->natts);
		ap->defaults = palloc0(sizeof(ExprState *) * tupdesc->natts);
	}
	for (int i = 0; i < tupdesc->natts; i++)
	{
		Expr	   *expr;

		if (!appender_leaves_out_column(ap, i) || ap->default_ready[i])
			continue;
		expr = column_insert_value(ap->rel, i + 1);
		if (expr != NULL)
			ap->defaults[i] = ExecInitExpr(expr, NULL);
		ap->default_ready[i] = true;
	}

	MemoryContextSwitchTo(econtext->ecxt_per_tuple_memory);
	for (int i = 0; i < tupdesc->natts; i++)
		if (!ap->given[i] && ap->defaults[i] != NULL)
			ap->slot->tts_values[i] = ExecEvalExpr(ap->defaults[i], econtext,
												   &ap->slot->tts_isnull[i]);
	MemoryContextSwitchTo(oldcxt);
}

/*
 * After an insert through ExecSimpleRelationInsert(), which says nothing of
 * what BEFORE ROW triggers did: refuse a row one of them skipped, or one in
 * which it changed a value the extension set (given in set_values and
 * set_isnull), NULL included.  The caller reports the event_id it wrote,
 * and the queue and the publisher go by it: the row must be stored as it
 * was written.
 */
static void
appender_check_stored(Appender *ap, const Datum *set_values, const bool *set_isnull)
{
	TupleDesc	tupdesc = RelationGetDescr(ap->rel);

	if (!ItemPointerIsValid(&ap->slot->tts_tid))
		ereport(ERROR,
				(errcode(ERRCODE_TRIGGERED_ACTION_EXCEPTION),
				 errmsg("a BEFORE trigger on \"%s.%s\" skipped a row the extension wrote",
						UPSERT_ORDER_SCHEMA, RelationGetRelationName(ap->rel)),
				 errdetail("The extension's tables keep every row it writes.")));
	slot_getallattrs(ap->slot);
	for (int i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, i);

		/* a column the owner added is the owner's to set */
		if (!ap->given[i])
			continue;
		if (set_isnull[i] ? !ap->slot->tts_isnull[i] :
			(ap->slot->tts_isnull[i] ||
			 !datum_image_eq(set_values[i], ap->slot->tts_values[i], att->attbyval, att->attlen)))
			ereport(ERROR,
					(errcode(ERRCODE_TRIGGERED_ACTION_EXCEPTION),
					 errmsg("a BEFORE trigger on \"%s.%s\" changed column \"%s\" of a row the extension wrote",
							UPSERT_ORDER_SCHEMA, RelationGetRelationName(ap->rel),
							NameStr(att->attname)),
					 errdetail("The extension's tables keep every row as it writes it.")));
	}
}

/*
 * Insert the row built, with its indexes and constraints, as logical
 * replication applies a row.
 */
void
AppenderInsert(Appender *ap)
{
	bool		before_row = ap->rri->ri_TrigDesc != NULL &&
		ap->rri->ri_TrigDesc->trig_insert_before_row;
	Datum	   *set_values = NULL;
	bool	   *set_isnull = NULL;
	bool		fills = appender_leaves_out(ap);
	bool		runs_code = ap->runs_code || fills;
	int			save_nestlevel = 0;

	ap->estate->es_output_cid = GetCurrentCommandId(true);

	/*
	 * The caller made the owner of the table the current user (or, in the
	 * publisher, is a superuser already when the owner is one), so code the
	 * owner attached runs as the owner: it gets search_path reduced to
	 * pg_catalog here.  Skipped when nothing can look a name up: setting
	 * search_path would cost a good part of a call.
	 */
	if (runs_code)
		save_nestlevel = OwnerSearchPathBegin();
	if (ap->rri->ri_TrigDesc)
		AfterTriggerBeginQuery();

	ExecStoreVirtualTuple(ap->slot);
	if (before_row)
	{
		int			natts = RelationGetDescr(ap->rel)->natts;

		/*
		 * The values the caller set, not the defaults (a trigger may change
		 * those); the values themselves are the caller's, and outlive the
		 * slot's.
		 */
		set_values = palloc(sizeof(Datum) * natts);
		set_isnull = palloc(sizeof(bool) * natts);
		memcpy(set_values, ap->slot->tts_values, sizeof(Datum) * natts);
		memcpy(set_isnull, ap->slot->tts_isnull, sizeof(bool) * natts);
		ItemPointerSetInvalid(&ap->slot->tts_tid);
	}

	/*
	 * Busy from the defaults on: one may log a message of its own.  An error
	 * leaves it busy; the batch then ends, and forgets it.
	 */
	ap->busy = true;
	if (fills)
		appender_defaults_fill(ap);
	ExecSimpleRelationInsert(ap->rri, ap->estate, ap->slot);
	ap->busy = false;
	if (before_row)
	{
		appender_check_stored(ap, set_values, set_isnull);
		pfree(set_values);
		pfree(set_isnull);
	}

	if (ap->rri->ri_TrigDesc)
		AfterTriggerEndQuery(ap->estate);
	if (runs_code)
		AtEOXact_GUC(true, save_nestlevel);
	ExecClearTuple(ap->slot);
	ResetPerTupleExprContext(ap->estate);
	if (!ap->stays_open)
		AppenderClose(ap);
}
