/*-------------------------------------------------------------------------
 *
 * upsert_statement.c
 *	  The INSERT ... ON CONFLICT DO UPDATE statement that versioned_upsert()
 *	  runs on a target: its text, and the prepared statements each target
 *	  keeps, one per set of columns a message names.
 *
 * The statement names the table as the target's cache last saw it, and
 * its columns by name, all quoted; every value is a parameter.  Its WHERE
 * clause calls _conflict_check() and its RETURNING list _event_id(), which
 * tell upsert.c what happened (see there).  Prepared statements are kept
 * in the target's cache entry (target.c), which frees them with the entry.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "nodes/bitmapset.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "upsert_order.h"

/* A prepared upsert for one set of non-key columns. */
typedef struct UpsertStatement
{
	Bitmapset  *others;			/* other columns it sets, passed as parameters */
	SPIPlanPtr	plan;
	struct UpsertStatement *next;
} UpsertStatement;

/*
 * Upserts kept per target.  Messages may name any subset of the columns, and
 * each subset has its own statement: without a bound, a sender of sparse
 * messages could make a backend keep a plan for every subset of a wide
 * table.  The least recently used one goes first.
 */
#define MAX_STATEMENTS_PER_TARGET	64

/* The SQL text of the upsert for one set of other columns, with this table name. */
static char *
build_upsert_sql(UpsertTarget *target, Bitmapset *others, const char *qualname)
{
	StringInfoData sql;
	StringInfoData keys;
	StringInfoData returned_keys;
	StringInfoData select;
	StringInfoData sets;
	const char *ver = quote_identifier(target->columns[target->version_attnum - 1].name);
	int			param = PARAM_FIRST_KEY + target->npkey;
	int			attnum = -1;

	initStringInfo(&sql);
	initStringInfo(&keys);
	initStringInfo(&returned_keys);
	initStringInfo(&select);
	initStringInfo(&sets);

	for (int i = 0; i < target->npkey; i++)
	{
		const char *name = quote_identifier(target->columns[target->pkey[i] - 1].name);

		appendStringInfo(&keys, "%s%s", i ? ", " : "", name);
		appendStringInfo(&returned_keys, ", upsert_order_target.%s", name);
		appendStringInfo(&select, "$%d, ", PARAM_FIRST_KEY + i + 1);
	}
	appendStringInfo(&sql, "INSERT INTO %s AS upsert_order_target (%s, %s",
					 qualname, keys.data, ver);
	appendStringInfo(&select, "$%d", PARAM_VERSION + 1);
	appendStringInfo(&sets, "%s = EXCLUDED.%s", ver, ver);

	while ((attnum = bms_next_member(others, attnum)) >= 0)
	{
		const char *name = quote_identifier(target->columns[attnum - 1].name);

		appendStringInfo(&sql, ", %s", name);
		appendStringInfo(&select, ", $%d", ++param);
		appendStringInfo(&sets, ", %s = EXCLUDED.%s", name, name);
	}

	/*
	 * The conflict target is the primary key by its columns, not by its
	 * constraint's name: the planner then takes whichever index over them is
	 * valid when it opens it.  Named, the constraint's index is read once,
	 * and a REINDEX CONCURRENTLY that swaps it just after leaves no valid
	 * index of that OID ("there is no unique or exclusion constraint
	 * matching").
	 *
	 * Under row level security, _conflict_check() is also told where the
	 * stored row is (for upsert.c's probe, check_stored_row_visible()).
	 * Named only there: reading a system column takes SELECT on the table,
	 * which a caller holding it on every column one by one does not have,
	 * and the statement itself does not need.
	 */
	appendStringInfo(&sql,
					 ") SELECT %s ON CONFLICT (%s) DO UPDATE SET %s"
					 " WHERE upsert_order._conflict_check(upsert_order_target.%s, EXCLUDED.%s, $%d%s)"
					 " RETURNING upsert_order_target.%s,"
					 " pg_catalog.to_jsonb(upsert_order_target.*),"
					 " upsert_order._event_id($%d)%s",
					 select.data, keys.data, sets.data, ver, ver, PARAM_TOKEN + 1,
					 target->row_security ?
					 ", upsert_order_target.tableoid, upsert_order_target.ctid" : "",
					 ver, PARAM_TOKEN + 1, returned_keys.data);
	return sql.data;
}

/*
 * Prepare a statement, kept for the life of the backend (until the caller
 * frees it) or, if not keep, until SPI_finish().
 */
SPIPlanPtr
SpiPrepareChecked(const char *sql, int nargs, Oid *argtypes, bool keep)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

	if (plan == NULL || (keep && SPI_keepplan(plan) != 0))
		elog(ERROR, "could not prepare statement \"%s\": %s",
			 sql, SPI_result_code_string(SPI_result));
	return plan;
}

/* Free one kept upsert. */
static void
upsert_statement_free(UpsertStatement *stmt)
{
	SPI_freeplan(stmt->plan);
	bms_free(stmt->others);
	pfree(stmt);
}

/*
 * Find the kept upsert for the columns of this message, moving it to the
 * front of the list; NULL if there is none.
 */
static UpsertStatement *
upsert_statement_find(UpsertTarget *target, UpsertMessage *msg)
{
	UpsertStatement **link = &target->statements;

	for (UpsertStatement *stmt = *link; stmt; link = &stmt->next, stmt = *link)
	{
		if (!bms_equal(stmt->others, msg->others))
			continue;
		*link = stmt->next;
		stmt->next = target->statements;
		target->statements = stmt;
		return stmt;
	}
	return NULL;
}

/*
 * Make room to keep one more upsert: keep at most MAX_STATEMENTS_PER_TARGET
 * - 1, the most recently used.  Only the outermost call may free one: a call
 * nested in a trigger may run while an outer call is executing any of them.
 * So a nested call finds room only below the bound, and returns false once
 * the target keeps as many as it may: it then prepares one for itself only,
 * so that calls made from a trigger cannot keep plans without end.
 */
static bool
upsert_statements_make_room(UpsertTarget *target)
{
	UpsertStatement **link = &target->statements;
	int			kept = 0;

	while (*link && ++kept < MAX_STATEMENTS_PER_TARGET)
		link = &(*link)->next;
	if (*link == NULL)
		return true;
	if (UpsertCallNested())
		return false;
	while (*link)
	{
		UpsertStatement *stmt = *link;

		*link = stmt->next;
		upsert_statement_free(stmt);
	}
	return true;
}

/*
 * The prepared upsert for the columns of this message, prepared on first
 * use and kept; prepared for this call only if the table name it would
 * spell changed since the lookup (see TargetQualifiedName()), or if a
 * nested call finds the target keeping as many as it may.  Needs an SPI
 * connection.
 */
SPIPlanPtr
UpsertStatementFor(UpsertTarget *target, UpsertMessage *msg)
{
	const char *qualname;
	bool		keep = TargetQualifiedName(target, &qualname);
	UpsertStatement *stmt = keep ? upsert_statement_find(target, msg) : NULL;
	SPIPlanPtr	plan;
	MemoryContext oldcxt;
	int			nargs = PARAM_FIRST_KEY + target->npkey + bms_num_members(msg->others);
	Oid		   *argtypes;
	int			param = PARAM_FIRST_KEY + target->npkey;
	int			attnum = -1;

	if (stmt)
		return stmt->plan;

	if (keep && !upsert_statements_make_room(target))
		keep = false;

	argtypes = palloc(sizeof(Oid) * nargs);
	/* The base type, so that a domain's constraints are checked on assignment. */
	argtypes[PARAM_VERSION] = getBaseType(target->columns[target->version_attnum - 1].typid);
	argtypes[PARAM_TOKEN] = INT8OID;
	for (int i = 0; i < target->npkey; i++)
		argtypes[PARAM_FIRST_KEY + i] = target->columns[target->pkey[i] - 1].typid;
	while ((attnum = bms_next_member(msg->others, attnum)) >= 0)
		argtypes[param++] = target->columns[attnum - 1].typid;

	/* Prepared before anything goes into the target's memory: it may fail. */
	plan = SpiPrepareChecked(build_upsert_sql(target, msg->others, qualname),
							 nargs, argtypes, keep);
	if (!keep)
		return plan;

	oldcxt = MemoryContextSwitchTo(target->cxt);
	stmt = palloc(sizeof(UpsertStatement));
	stmt->others = bms_copy(msg->others);
	MemoryContextSwitchTo(oldcxt);
	stmt->plan = plan;
	stmt->next = target->statements;
	target->statements = stmt;
	return plan;
}

/*
 * Free the prepared statements of a target that is being discarded, the
 * row-visibility probe's (upsert.c) included.
 */
void
UpsertStatementsFree(UpsertTarget *target)
{
	for (UpsertStatement *stmt = target->statements; stmt; stmt = stmt->next)
		SPI_freeplan(stmt->plan);
	target->statements = NULL;
	if (target->visible_plan)
		SPI_freeplan(target->visible_plan);
	target->visible_plan = NULL;
}
