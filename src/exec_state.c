/*-------------------------------------------------------------------------
 *
 * exec_state.c
 *	  The executor state for writing rows of one relation without a plan,
 *	  the way logical replication applies rows: what the direct path
 *	  (direct.c) and the inserts into the extension's tables
 *	  (extension_tables.c) both set up, and the privilege check of an
 *	  upsert on it (direct.c, upsert.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/sysattr.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#if PG_VERSION_NUM >= 160000
#include "parser/parse_relation.h"
#endif
#include "utils/rel.h"

#include "upsert_order.h"

/*
 * An EState whose range table holds rel alone, and rel's ResultRelInfo
 * (*rri), registered as opened so that firing rel's triggers finds it
 * instead of opening rel again.  Made in the current memory context; the
 * caller holds the lock on rel.  Undone by SimpleExecStateFree().
 *
 * insertedCols and updatedCols (as in a range table entry: attribute numbers
 * offset by FirstLowInvalidHeapAttributeNumber; NULL for none) name the
 * columns the writer sets, as the statement it stands for would: a failed
 * constraint shows them in its error detail, and an update that writes new
 * index entries tells each index whether its columns changed (a hint that
 * drives the removal of old entries).
 */
EState *
SimpleExecStateCreate(Relation rel, Bitmapset *insertedCols,
					  Bitmapset *updatedCols, ResultRelInfo **rri)
{
	EState	   *estate = CreateExecutorState();
	MemoryContext oldcxt = MemoryContextSwitchTo(estate->es_query_cxt);
	RangeTblEntry *rte = makeNode(RangeTblEntry);

	rte->rtekind = RTE_RELATION;
	rte->relid = RelationGetRelid(rel);
	rte->relkind = rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
#if PG_VERSION_NUM >= 160000
	{
		List	   *perminfos = NIL;
		RTEPermissionInfo *perminfo = addRTEPermissionInfo(&perminfos, rte);

		perminfo->insertedCols = bms_copy(insertedCols);
		perminfo->updatedCols = bms_copy(updatedCols);
		ExecInitRangeTable(estate, list_make1(rte), perminfos);
	}
#else
	rte->insertedCols = bms_copy(insertedCols);
	rte->updatedCols = bms_copy(updatedCols);
	ExecInitRangeTable(estate, list_make1(rte));
#endif
	*rri = makeNode(ResultRelInfo);
	InitResultRelInfo(*rri, rel, 1, NULL, 0);
	estate->es_opened_result_relations = list_make1(*rri);

	MemoryContextSwitchTo(oldcxt);
	return estate;
}

/*
 * Require, in the state's range table entry, the privileges that
 * INSERT ... ON CONFLICT DO UPDATE ... RETURNING t.* needs: INSERT on the
 * columns it inserts and UPDATE on those it sets (the columns given to
 * SimpleExecStateCreate), SELECT on the whole row, which RETURNING t.*
 * reads, and, if row_location, SELECT on tableoid and ctid, which the
 * statement returns too under row level security.  Allocated in the state's
 * memory.
 */
void
SimpleExecStateRequireUpsertPrivileges(EState *estate, bool row_location)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(estate->es_query_cxt);
	RangeTblEntry *rte = exec_rt_fetch(1, estate);
	Bitmapset  *selected = bms_make_singleton(InvalidAttrNumber - FirstLowInvalidHeapAttributeNumber);

	if (row_location)
	{
		selected = bms_add_member(selected, TableOidAttributeNumber - FirstLowInvalidHeapAttributeNumber);
		selected = bms_add_member(selected, SelfItemPointerAttributeNumber - FirstLowInvalidHeapAttributeNumber);
	}

#if PG_VERSION_NUM >= 160000
	{
		RTEPermissionInfo *perm = getRTEPermissionInfo(estate->es_rteperminfos, rte);

		perm->requiredPerms = ACL_INSERT | ACL_UPDATE | ACL_SELECT;
		perm->selectedCols = selected;
	}
#else
	rte->requiredPerms = ACL_INSERT | ACL_UPDATE | ACL_SELECT;
	rte->selectedCols = selected;
#endif
	MemoryContextSwitchTo(oldcxt);
}

/*
 * The checks INSERT ... ON CONFLICT DO UPDATE makes when it starts, before
 * it reads a single row, in its order: a read-only transaction (which may
 * still write temporary tables); the privileges the state's range table
 * requires, for the current user; a replica identity on a published table,
 * which its UPDATE needs whatever the outcome.  Made again for every row of
 * a batch: a function a constraint calls may change the user, and
 * publications may change, between two rows.
 */
void
SimpleExecStateCheckUpsert(EState *estate, Relation rel)
{
	if (rel->rd_rel->relpersistence != RELPERSISTENCE_TEMP)
		PreventCommandIfReadOnly("INSERT");
#if PG_VERSION_NUM >= 160000
	(void) ExecCheckPermissions(estate->es_range_table, estate->es_rteperminfos, true);
#else
	(void) ExecCheckRTPerms(estate->es_range_table, true);
#endif
	CheckCmdReplicaIdentity(rel, CMD_UPDATE);
}

/*
 * Free the state: the result relation's indexes if they were opened, any
 * relation a trigger opened, the tuple slots.  rel itself stays open.
 */
void
SimpleExecStateFree(EState *estate)
{
	ExecCloseResultRelations(estate);
	ExecResetTupleTable(estate->es_tupleTable, false);
	FreeExecutorState(estate);
}
