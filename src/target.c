/*-------------------------------------------------------------------------
 *
 * target.c
 *	  What versioned_upsert() needs to know about a target table: its
 *	  primary key, its version column and its columns by name, checked once
 *	  and cached per backend until the relcache says the table changed.
 *
 * Entries are rebuilt lazily after an invalidation: of the table or of its
 * primary key index (renaming the index renames the constraint the upsert
 * names), of the schema whose name its statements spell, of a domain one
 * of its columns uses (its default), or of any cast (how to_jsonb()
 * converts a column).  The prepared statements hanging off an entry may
 * still be running in an outer call when a nested call (from a trigger,
 * say) sees the invalidation, so the old statements are only freed once no
 * call is running.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/stratnum.h"
#include "catalog/catalog.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_index.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "optimizer/optimizer.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/syscache.h"

#include "upsert_order.h"

typedef struct TargetCacheEntry
{
	Oid			relid;			/* hash key */
	UpsertTarget *target;		/* NULL until built */
} TargetCacheEntry;

static HTAB *target_cache = NULL;

/* Targets built so far in this backend. */
static uint64 target_generations = 0;

/* Invalidated entries, freed once no call is running. */
static List *retired_targets = NIL;

/*
 * Invalidations that reached an entry being built, or every entry.  A build
 * reads the catalogs over several steps, and opening the primary key can
 * run callbacks midway, when the entry being built cannot be marked yet: a
 * build that saw the count move is kept for its call, but marked stale at
 * once.
 */
static uint64 build_invalidations = 0;

/*
 * The primary key index of the entry being built, once the build has found
 * it: an invalidation of the index (REINDEX CONCURRENTLY swapping it for a
 * new one, committed by a session whose lock does not conflict with the
 * call's) must reach that entry too.
 */
static Oid	building_pkey_index = InvalidOid;

/* Entries marked stale since the last sweep (target_sweep). */
static int	stale_entries = 0;

static void
target_mark_stale(UpsertTarget *target)
{
	if (target->valid)
		stale_entries++;
	target->valid = false;
}

/* Mark stale the entries whose primary key is this index. */
static void
target_invalidate_index(Oid indexid)
{
	HASH_SEQ_STATUS status;
	TargetCacheEntry *entry;

	if (indexid == building_pkey_index)
		build_invalidations++;
	hash_seq_init(&status, target_cache);
	while ((entry = hash_seq_search(&status)) != NULL)
		if (entry->target && entry->target->pkey_index == indexid)
			target_mark_stale(entry->target);
}

/*
 * Mark the cached metadata of one table (or of all) as stale.  relid may
 * also be a primary key's index, or the table of an entry still being
 * built, which only counts the invalidation (build_invalidations).
 */
static void
target_invalidate(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	TargetCacheEntry *entry;

	if (target_cache == NULL)
		return;

	if (OidIsValid(relid))
	{
		entry = hash_search(target_cache, &relid, HASH_FIND, NULL);
		if (entry && entry->target)
			target_mark_stale(entry->target);
		else if (entry)
			build_invalidations++;
		else
			target_invalidate_index(relid);
		return;
	}

	build_invalidations++;
	hash_seq_init(&status, target_cache);
	while ((entry = hash_seq_search(&status)) != NULL)
		if (entry->target)
			target_mark_stale(entry->target);
}

/* Does an invalidation of this hash value (0: all) of NAMESPACEOID reach it? */
static bool
target_uses_namespace(UpsertTarget *target, uint32 hashvalue)
{
	return hashvalue == 0 || target->namespace_hash == hashvalue;
}

/* Does an invalidation of this hash value (0: all) of TYPEOID reach it? */
static bool
target_uses_domain(UpsertTarget *target, uint32 hashvalue)
{
	for (int i = 0; i < target->ncolumns; i++)
	{
		TargetColumn *col = &target->columns[i];

		if (col->attnum != InvalidAttrNumber && col->typid != col->basetype &&
			(hashvalue == 0 || col->domain_hash == hashvalue))
			return true;
	}
	return false;
}

/*
 * Mark stale the entries that a syscache invalidation reaches, and, if
 * reaches_builds, any entry being built, which may not have recorded what
 * it uses yet.
 */
static void
target_invalidate_using(bool (*uses) (UpsertTarget *, uint32), uint32 hashvalue,
						bool reaches_builds)
{
	HASH_SEQ_STATUS status;
	TargetCacheEntry *entry;

	if (target_cache == NULL)
		return;
	if (reaches_builds)
		build_invalidations++;
	hash_seq_init(&status, target_cache);
	while ((entry = hash_seq_search(&status)) != NULL)
		if (entry->target && uses(entry->target, hashvalue))
			target_mark_stale(entry->target);
}

/*
 * A schema changed: mark stale the entries of the tables in it, whose
 * statements spell its name.  Renaming a schema invalidates no relcache
 * entry of its tables, while the plan cache parses the statements' text
 * again.
 */
static void
target_invalidate_names(Datum arg, int cacheid, uint32 hashvalue)
{
	target_invalidate_using(target_uses_namespace, hashvalue, true);
}

/*
 * A type changed: mark stale the entries with a column of a domain it may
 * be.  ALTER DOMAIN ... SET DEFAULT invalidates neither the table's relcache
 * entry nor the plan cache's statements, whose rewritten INSERT holds the
 * default it found when it was prepared.  (A domain over a domain copied
 * its default when it was created.)  An entry being built is not reached:
 * it keeps nothing a domain's change alters (the statements that read the
 * default are prepared once it is in the cache), and every table or type
 * created anywhere sends this invalidation.
 */
static void
target_invalidate_domains(Datum arg, int cacheid, uint32 hashvalue)
{
	target_invalidate_using(target_uses_domain, hashvalue, false);
}

/*
 * A cast was created or dropped: how to_jsonb() converts a column may have
 * changed (it calls a cast to json for types outside the core, rowseq among
 * them), and with it what row_json.c decided for every table.
 */
static void
target_invalidate_casts(Datum arg, int cacheid, uint32 hashvalue)
{
	target_invalidate(arg, InvalidOid);
}

void
TargetInitCache(void)
{
	CacheRegisterRelcacheCallback(target_invalidate, (Datum) 0);
	CacheRegisterSyscacheCallback(CASTSOURCETARGET, target_invalidate_casts, (Datum) 0);
	CacheRegisterSyscacheCallback(NAMESPACEOID, target_invalidate_names, (Datum) 0);
	CacheRegisterSyscacheCallback(TYPEOID, target_invalidate_domains, (Datum) 0);
}

/* Set an entry's target aside until no call can be using it (target_free_retired). */
static void
target_retire(UpsertTarget *target)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(CacheMemoryContext);

	retired_targets = lappend(retired_targets, target);
	MemoryContextSwitchTo(oldcxt);
}

/*
 * Take every invalidated entry out of the cache, whether or not its table
 * is still there: a dropped table's entry would otherwise stay for the
 * session.  Entries are retired, not freed (see target_free_retired).
 * Looks only when an entry was marked stale since the last sweep.
 */
static void
target_sweep(void)
{
	HASH_SEQ_STATUS status;
	TargetCacheEntry *entry;

	if (target_cache == NULL || stale_entries == 0)
		return;
	stale_entries = 0;

	hash_seq_init(&status, target_cache);
	while ((entry = hash_seq_search(&status)) != NULL)
	{
		if (entry->target && entry->target->valid)
			continue;
		if (entry->target)
			target_retire(entry->target);
		/* removing the entry just returned is allowed during a scan */
		hash_search(target_cache, &entry->relid, HASH_REMOVE, NULL);
	}
}

/*
 * Free what invalidated entries left behind.  Only safe when no
 * versioned_upsert() call is running, since an outer call may still be
 * executing one of their statements.
 */
static void
target_free_retired(void)
{
	ListCell   *lc;

	if (UpsertCallRunning() || retired_targets == NIL)
		return;

	foreach(lc, retired_targets)
	{
		UpsertTarget *target = lfirst(lc);

		UpsertStatementsFree(target);
		MemoryContextDelete(target->cxt);
	}
	list_free(retired_targets);
	retired_targets = NIL;
}

/*
 * Error out unless rel is an ordinary or partitioned table that is neither a
 * system catalog nor in the extension's schema: the tables versioned_upsert()
 * may write, and so the only ones the settings functions accept.
 */
void
TargetCheckTable(Relation rel)
{
	const char *name = RelationGetRelationName(rel);

	if (rel->rd_rel->relkind != RELKIND_RELATION &&
		rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", name),
				 errdetail("Only ordinary and partitioned tables can be written by versioned_upsert(), or have settings.")));

	if (IsSystemRelation(rel))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied: \"%s\" is a system catalog", name)));

	if (get_namespace_oid(UPSERT_ORDER_SCHEMA, true) == RelationGetNamespace(rel))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("table \"%s\" is in the schema of the upsert_order extension", name),
				 errdetail("Tables in the extension's schema, its own among them, are not targets for versioned_upsert(), and have no settings.")));
}

/* Error out unless the relation is a table versioned_upsert() may write. */
static void
target_check_kind(Relation rel)
{
	TargetCheckTable(rel);

	if (RELATION_IS_OTHER_TEMP(rel))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot access temporary tables of other sessions")));

	/* the statement refuses it; the direct path must not take it either */
	if (RelationIsUsedAsCatalogTable(rel))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("table \"%s\" is used as a catalog table", RelationGetRelationName(rel)),
				 errdetail("INSERT ... ON CONFLICT, which versioned_upsert() runs, is not supported on a table with user_catalog_table set.")));
}

/*
 * Can the column's input function compile a domain's constraints?  A
 * domain's does, and so do a range's and a multirange's, whose element type
 * may be a domain (or a range of one): they read their element through its
 * own input function.  Arrays and composites are read otherwise.
 */
static bool
input_may_check_domain(TargetColumn *col)
{
	if (col->typid != col->basetype || type_is_range(col->basetype))
		return true;
#if PG_VERSION_NUM >= 140000
	if (type_is_multirange(col->basetype))
		return true;
#endif
	return false;
}

/*
 * How a column reads a JSON value.  Scalars (domains over them included) go
 * through the type's input function, as jsonb_populate_record() does for
 * them; arrays and composites through jsonb_populate_record() itself, which
 * builds them from JSON arrays and objects (see message.c).
 */
static void
target_read_input(TargetColumn *col, Oid rowseq_oid)
{
	Oid			infunc;
	Oid			outfunc;
	bool		isvarlena;

	col->basetype = getBaseType(col->typid);
	col->domain_hash = GetSysCacheHashValue1(TYPEOID, ObjectIdGetDatum(col->typid));
	col->structured = type_is_array(col->basetype) || type_is_rowtype(col->basetype);
	getTypeInputInfo(col->typid, &infunc, &col->ioparam);
	fmgr_info_cxt(infunc, &col->input, CurrentMemoryContext);
	col->input_checks = input_may_check_domain(col);
	getTypeOutputInfo(col->typid, &outfunc, &isvarlena);
	fmgr_info_cxt(outfunc, &col->output, CurrentMemoryContext);
	col->json_kind = RowJsonKindOf(col->basetype, rowseq_oid);
}

/* Record the live columns and find the single rowseq column. */
static void
target_read_columns(UpsertTarget *target, Relation rel)
{
	TupleDesc	tupdesc = RelationGetDescr(rel);
	Oid			rowseq_oid = RowseqTypeOid();
	StringInfoData found;
	int			nversion = 0;

	initStringInfo(&found);
	target->ncolumns = tupdesc->natts;
	target->columns = palloc0(sizeof(TargetColumn) * tupdesc->natts);

	for (int i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, i);
		TargetColumn *col = &target->columns[i];

		if (att->attisdropped)
			continue;
		target->nlive++;

		col->attnum = att->attnum;
		col->name = pstrdup(NameStr(att->attname));
		col->typid = att->atttypid;
		col->typmod = att->atttypmod;
		col->typlen = att->attlen;
		col->typbyval = att->attbyval;
		target_read_input(col, rowseq_oid);

		if (col->basetype == rowseq_oid)
		{
			appendStringInfo(&found, "%s\"%s\"", nversion ? ", " : "", col->name);
			target->version_attnum = att->attnum;
			nversion++;
		}
	}

	if (nversion == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
				 errmsg("table \"%s\" has no column of type upsert_order.rowseq",
						target->displayname),
				 errdetail("Versions are compared in the table's one rowseq column."),
				 errhint("Add a column such as \"version upsert_order.rowseq NOT NULL\".")));
	if (nversion > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
				 errmsg("table \"%s\" has more than one column of type upsert_order.rowseq",
						target->displayname),
				 errdetail("Columns %s all have type rowseq; versioned_upsert() needs exactly one version column.",
						   found.data)));
}

/*
 * Does the table have a deferrable primary key?  The relcache only reports
 * immediate ones as the primary key.
 */
static bool
target_has_deferrable_primary_key(Relation rel)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	bool		found = false;

	foreach(lc, indexes)
	{
		HeapTuple	tuple = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(lfirst_oid(lc)));

		if (!HeapTupleIsValid(tuple))
			continue;
		found |= ((Form_pg_index) GETSTRUCT(tuple))->indisprimary;
		ReleaseSysCache(tuple);
	}
	list_free(indexes);
	return found;
}

/* Record the primary key columns and how to read their values from JSON. */
static void
target_read_primary_key(UpsertTarget *target, Relation rel)
{
	Oid			pkoid = RelationGetPrimaryKeyIndex(rel);
	Relation	index;

	if (!OidIsValid(pkoid) && target_has_deferrable_primary_key(rel))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
				 errmsg("primary key of table \"%s\" is deferrable", target->displayname),
				 errdetail("INSERT ... ON CONFLICT, which versioned_upsert() runs, cannot use a deferrable constraint to find the row."),
				 errhint("Make the primary key NOT DEFERRABLE.")));
	if (!OidIsValid(pkoid))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
				 errmsg("table \"%s\" has no primary key", target->displayname),
				 errdetail("Rows are identified by their primary key."),
				 errhint("Add a primary key to the table.")));

	/*
	 * Before opening it, which may take in the invalidation of a REINDEX
	 * CONCURRENTLY that swapped it: the entry is then used for this call
	 * (the old index is kept up to date until the call's transaction ends)
	 * and built again for the next.
	 */
	building_pkey_index = pkoid;
	target->pkey_index = pkoid;
	index = index_open(pkoid, AccessShareLock);
	target->npkey = index->rd_index->indnkeyatts;
	target->pkey = palloc(sizeof(AttrNumber) * target->npkey);
	target->pkey_eqproc = palloc(sizeof(RegProcedure) * target->npkey);
	target->pkey_collation = palloc(sizeof(Oid) * target->npkey);

	for (int i = 0; i < target->npkey; i++)
	{
		AttrNumber	attnum = index->rd_index->indkey.values[i];
		TargetColumn *col = &target->columns[attnum - 1];
		Oid			eqop;

		if (attnum == target->version_attnum)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
					 errmsg("version column \"%s\" of table \"%s\" is part of the primary key",
							col->name, target->displayname),
					 errdetail("Every version of a row would then be a different row.")));

		target->pkey[i] = attnum;

		/* The equality operator of the key's opfamily, for index scans. */
		eqop = get_opfamily_member(index->rd_opfamily[i],
								   index->rd_opcintype[i],
								   index->rd_opcintype[i],
								   BTEqualStrategyNumber);
		if (!OidIsValid(eqop))
			elog(ERROR, "missing equality operator for primary key column \"%s\"",
				 col->name);
		target->pkey_eqproc[i] = get_opcode(eqop);
		target->pkey_collation[i] = index->rd_indcollation[i];
	}
	index_close(index, AccessShareLock);
}

/*
 * The row lock an UPDATE of every column but the primary key takes: the
 * strongest when another column is part of a key a foreign key could
 * reference (a unique index), the weaker one otherwise.
 */
static LockTupleMode
target_update_lockmode(UpsertTarget *target, Relation rel)
{
	Bitmapset  *keys = RelationGetIndexAttrBitmap(rel, INDEX_ATTR_BITMAP_KEY);
	int			member = -1;

	while ((member = bms_next_member(keys, member)) >= 0)
	{
		AttrNumber	attnum = member + FirstLowInvalidHeapAttributeNumber;
		bool		is_pkey = false;

		for (int k = 0; k < target->npkey; k++)
			is_pkey |= (target->pkey[k] == attnum);
		if (!is_pkey)
			return LockTupleExclusive;
	}
	return LockTupleNoKeyExclusive;
}

/*
 * Does a CHECK constraint of the table call a function that is not
 * immutable?  Such a function may read or write what the row lock puts in
 * order.  The statement locks the row it found before it checks the row its
 * update writes, so the check runs once, on the row that is written; the
 * direct path then takes the row lock first too (direct.c).  With immutable
 * functions only, nobody can tell when the check runs.
 */
static bool
target_checks_call_mutable(Relation rel)
{
	TupleConstr *constr = RelationGetDescr(rel)->constr;

	for (int i = 0; constr != NULL && i < constr->num_check; i++)
	{
		if (contain_mutable_functions(stringToNode(constr->check[i].ccbin)))
			return true;
	}
	return false;
}

/*
 * Is indexoid an arbiter of ON CONFLICT on the primary key's columns, as the
 * planner infers arbiters: a valid unique index, not partial, whose key
 * columns are exactly the primary key's (no other column, no expression)?
 * If so, read the collation and operator family of each key column, stored
 * at the position of that column in the primary key.
 */
static bool
target_index_on_key(UpsertTarget *target, Oid indexoid,
					Oid *collations, Oid *opfamilies)
{
	HeapTuple	tuple = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(indexoid));
	Form_pg_index index;
	bool		matches;
	bool		seen[INDEX_MAX_KEYS] = {0};

	if (!HeapTupleIsValid(tuple))
		return false;
	index = (Form_pg_index) GETSTRUCT(tuple);
	matches = index->indisunique && index->indisvalid &&
		index->indnkeyatts == target->npkey &&
		heap_attisnull(tuple, Anum_pg_index_indpred, NULL);
	if (matches)
	{
		bool		isnull;
		oidvector  *indcollation;
		oidvector  *indclass;

		indcollation = (oidvector *)
			DatumGetPointer(SysCacheGetAttr(INDEXRELID, tuple,
											Anum_pg_index_indcollation, &isnull));
		Assert(!isnull);
		indclass = (oidvector *)
			DatumGetPointer(SysCacheGetAttr(INDEXRELID, tuple,
											Anum_pg_index_indclass, &isnull));
		Assert(!isnull);

		for (int i = 0; i < target->npkey && matches; i++)
		{
			int			k = 0;

			while (k < target->npkey && target->pkey[k] != index->indkey.values[i])
				k++;
			matches = k < target->npkey && !seen[k];
			if (matches)
			{
				seen[k] = true;
				collations[k] = indcollation->values[i];
				opfamilies[k] = get_opclass_family(indclass->values[i]);
			}
		}
	}
	ReleaseSysCache(tuple);
	return matches;
}

/*
 * Read the arbiters of the statement's ON CONFLICT on the key's columns
 * (target_index_on_key) into target->key_arbiters: the primary key, and any
 * other unique index over the same columns.  The direct path inserts a new
 * key into each as an arbiter, as the statement does, so that a concurrent
 * insertion of the same key is a conflict to look again after, not a
 * unique_violation.
 *
 * False when the direct path cannot stand in for the statement: an arbiter
 * whose collation or operator class may take keys for equal that the
 * primary key tells apart (a nondeterministic collation, say), where the
 * statement would find and update another row than the direct path's
 * lookup.  (A deferrable arbiter, which both refuse once they get to it,
 * comes with its constraint's trigger, and so never to the direct path.)
 */
static bool
target_read_key_arbiters(UpsertTarget *target, Relation rel)
{
	Oid			key_collations[INDEX_MAX_KEYS];
	Oid			key_opfamilies[INDEX_MAX_KEYS];
	List	   *indexes;
	ListCell   *lc;
	bool		direct_ok = true;

	target->key_arbiters = list_make1_oid(target->pkey_index);
	if (!target_index_on_key(target, target->pkey_index,
							 key_collations, key_opfamilies))
		return false;			/* gone meanwhile: let the statement decide */

	indexes = RelationGetIndexList(rel);
	foreach(lc, indexes)
	{
		Oid			collations[INDEX_MAX_KEYS];
		Oid			opfamilies[INDEX_MAX_KEYS];

		if (lfirst_oid(lc) == target->pkey_index ||
			!target_index_on_key(target, lfirst_oid(lc), collations, opfamilies))
			continue;
		direct_ok = memcmp(collations, key_collations, sizeof(Oid) * target->npkey) == 0 &&
			memcmp(opfamilies, key_opfamilies, sizeof(Oid) * target->npkey) == 0;
		if (!direct_ok)
			break;
		target->key_arbiters = lappend_oid(target->key_arbiters, lfirst_oid(lc));
	}
	list_free(indexes);
	return direct_ok;
}

/*
 * May versioned_upsert() take the direct path (direct.c) on this table?  Only
 * where nothing but the row itself could tell the difference from the SQL
 * statement: no triggers (foreign keys are triggers too), no rules, no row
 * level security, no partitioning, no generated columns, no identity
 * columns GENERATED ALWAYS, no domain as the version column's type, no
 * other unique index on the key's columns that compares them otherwise
 * than the primary key (target_read_key_arbiters); and a heap table, whose
 * row headers the direct path reads.  direct.c's header refers here.
 */
static void
target_read_direct(UpsertTarget *target, Relation rel)
{
	TupleDesc	tupdesc = RelationGetDescr(rel);
	FuncExpr   *call;

	target->direct_ok = rel->rd_rel->relkind == RELKIND_RELATION &&
		rel->rd_rel->relam == HEAP_TABLE_AM_OID &&
		!rel->rd_rel->relispartition &&
		rel->trigdesc == NULL &&
		rel->rd_rules == NULL &&	/* the statement refuses INSERT and UPDATE rules */
		!rel->rd_rel->relrowsecurity &&
		!(tupdesc->constr && tupdesc->constr->has_generated_stored);
	for (int i = 0; i < tupdesc->natts; i++)
	{
		/* the statement refuses a value for such a column, on insert and update */
		if (TupleDescAttr(tupdesc, i)->attidentity == ATTRIBUTE_IDENTITY_ALWAYS)
			target->direct_ok = false;
	}
	/* the statement checks a domain's constraints on the version it stores */
	if (target->columns[target->version_attnum - 1].typid !=
		target->columns[target->version_attnum - 1].basetype)
		target->direct_ok = false;
	if (target->direct_ok && !target_read_key_arbiters(target, rel))
		target->direct_ok = false;
	if (!target->direct_ok)
		return;

	/* to_jsonb() resolves its argument type from the call expression */
	call = makeFuncExpr(F_TO_JSONB, JSONBOID,
						list_make1(makeNullConst(rel->rd_rel->reltype, -1, InvalidOid)),
						InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
	fmgr_info_cxt(F_TO_JSONB, &target->to_jsonb, CurrentMemoryContext);
	fmgr_info_set_expr((Node *) call, &target->to_jsonb);

	target->update_lockmode = target_update_lockmode(target, rel);
	target->lock_before_check = target_checks_call_mutable(rel);

	target->row_json_direct = true;
	for (int i = 0; i < target->ncolumns; i++)
		if (target->columns[i].attnum != InvalidAttrNumber &&
			target->columns[i].json_kind == ROW_JSON_OTHER)
			target->row_json_direct = false;
	if (target->row_json_direct)
		target->row_json_order = RowJsonOrder(target);
}

/* Build the metadata of a target table, checking everything once. */
static UpsertTarget *
target_build(Oid relid)
{
	Relation	rel = relation_open(relid, NoLock);
	UpsertTarget *target = palloc0(sizeof(UpsertTarget));
	const char *nspname = get_namespace_name(RelationGetNamespace(rel));

	target->relid = relid;
	target->generation = ++target_generations;
	target->qualname = quote_qualified_identifier(nspname, RelationGetRelationName(rel));
	target->displayname = psprintf("%s.%s", nspname, RelationGetRelationName(rel));
	target->namespace_hash = GetSysCacheHashValue1(NAMESPACEOID,
												   ObjectIdGetDatum(RelationGetNamespace(rel)));

	target_check_kind(rel);
	target_read_columns(target, rel);
	target_read_primary_key(target, rel);
	target_read_direct(target, rel);
	target->row_security = rel->rd_rel->relrowsecurity;

	relation_close(rel, NoLock);
	target->valid = true;
	return target;
}

/*
 * Lock the table as the statement would, and check what naming it in the
 * statement would need: that it exists, and USAGE on its schema.  A caller
 * holding only the OID needs that too, on every call (a cached statement or
 * the direct path never names the table again).
 */
static void
target_lock(Oid relid)
{
	Oid			nspid;
	AclResult	aclresult;

	LockRelationOid(relid, RowExclusiveLock);

	/*
	 * Taking the lock processed pending invalidations, but holding it
	 * already (from an earlier call in this transaction, or an earlier
	 * element of a batch) processed none.  Renaming the primary key index
	 * or the schema conflicts with no lock of ours, so either may have
	 * committed since, and a statement parsed now would see the new name
	 * while the cached entry still spells the old one.
	 */
	AcceptInvalidationMessages();
	nspid = get_rel_namespace(relid);
	if (!OidIsValid(nspid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));

#if PG_VERSION_NUM >= 160000
	aclresult = object_aclcheck(NamespaceRelationId, nspid, GetUserId(), ACL_USAGE);
#else
	aclresult = pg_namespace_aclcheck(nspid, GetUserId(), ACL_USAGE);
#endif
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_SCHEMA, get_namespace_name(nspid));
}

/*
 * Build the metadata of a target in a fresh context, which becomes the
 * cache entry's only once the build succeeded: an error leaves no half-built
 * entry behind, and removes the entry the caller made for it.
 */
static UpsertTarget *
target_build_entry(Oid relid)
{
	MemoryContext cxt = AllocSetContextCreate(CacheMemoryContext,
											  "upsert_order target",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext oldcxt = MemoryContextSwitchTo(cxt);
	UpsertTarget *target;
	uint64		invalidations_before = build_invalidations;

	PG_TRY();
	{
		target = target_build(relid);
	}
	PG_CATCH();
	{
		building_pkey_index = InvalidOid;
		MemoryContextSwitchTo(oldcxt);
		MemoryContextDelete(cxt);
		hash_search(target_cache, &relid, HASH_REMOVE, NULL);
		PG_RE_THROW();
	}
	PG_END_TRY();
	building_pkey_index = InvalidOid;
	MemoryContextSwitchTo(oldcxt);

	MemoryContextSetIdentifier(cxt, target->displayname);
	target->cxt = cxt;
	if (build_invalidations != invalidations_before)
		target_mark_stale(target);
	return target;
}

/*
 * The metadata of a target, locking the table first.
 *
 * The lock comes before the cache check because acquiring it processes
 * pending invalidations: once we hold it, a cached entry that still says
 * valid describes the table as it is, and the table cannot be renamed or
 * dropped under the statements we run against it.
 */
UpsertTarget *
TargetLookup(Oid relid)
{
	TargetCacheEntry *entry;
	bool		found;

	target_lock(relid);
	target_sweep();
	target_free_retired();

	if (target_cache == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(TargetCacheEntry);
		ctl.hcxt = CacheMemoryContext;
		target_cache = hash_create("upsert_order targets", 64, &ctl,
								   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}

	entry = hash_search(target_cache, &relid, HASH_ENTER, &found);
	if (!found)
		entry->target = NULL;
	if (entry->target)
	{
		/* the sweep took every stale entry out, and nothing since read a catalog */
		Assert(entry->target->valid);
		return entry->target;
	}

	entry->target = target_build_entry(relid);
	return entry->target;
}

/*
 * The quoted name of the table, for a statement about to be prepared: the
 * entry's, and true, while the entry holds once pending invalidations are
 * processed.  Otherwise the name as it is now, and false: a statement
 * spelled with it is for this call only, and the next lookup rebuilds the
 * entry.
 *
 * Since the lookup, the call ran the columns' input functions (a domain's
 * CHECK may call anything) and maybe triggers, which may have waited, or
 * read other tables and so seen invalidations, while a rename of the schema
 * committed: no lock of the call's conflicts with it.  The columns cannot
 * have changed: in another session that takes a lock that conflicts with
 * the call's, and in this one TargetCheckUnchanged() refused it.  A rename
 * that commits between this and the parsing of the statement can still
 * make it fail: a window of microseconds, which no lock the call could
 * take would close without serializing the writers.
 */
bool
TargetQualifiedName(UpsertTarget *target, const char **qualname)
{
	AcceptInvalidationMessages();
	if (target->valid)
	{
		*qualname = target->qualname;
		return true;
	}
	*qualname = quote_qualified_identifier(get_namespace_name(get_rel_namespace(target->relid)),
										   get_rel_name(target->relid));
	return false;
}

/*
 * Error out if the table lost or renamed a column, or lost its primary key,
 * since the entry was built.  For a call that has run a function since its
 * lookup: converting the message runs the columns' input functions, and a
 * domain's CHECK may call anything, as may the table's CHECK constraints,
 * which the direct path checks before it writes.  ALTER TABLE and DROP
 * TABLE refuse a table this session has open, and other sessions wait for
 * the call's lock; but RENAME COLUMN is not refused, and DROP ... CASCADE of
 * a domain or an operator class that the table uses, run here, drops the
 * column or the index anyway.  Values converted for the old columns would
 * then be written, and logged, as if the table still had them.
 *
 * Called through TargetCheckUnchanged() (upsert_order.h), only for an entry
 * an invalidation reached: it may have been a change that leaves the
 * columns as they were (a rename, a REINDEX CONCURRENTLY, a cast created
 * anywhere), which does not stop the call.
 */
void
TargetCheckColumns(UpsertTarget *target)
{
	Relation	rel;
	bool		same;

	rel = RelationIdGetRelation(target->relid);
	if (!RelationIsValid(rel))
		elog(ERROR, "could not open relation with OID %u", target->relid);
	same = RelationGetNumberOfAttributes(rel) == target->ncolumns &&
		OidIsValid(RelationGetPrimaryKeyIndex(rel));
	for (int i = 0; same && i < target->ncolumns; i++)
	{
		Form_pg_attribute att = TupleDescAttr(RelationGetDescr(rel), i);
		TargetColumn *col = &target->columns[i];

		if (att->attisdropped)
			same = (col->attnum == InvalidAttrNumber);
		else
			same = col->attnum == att->attnum && col->typid == att->atttypid &&
				col->typmod == att->atttypmod &&
				strcmp(col->name, NameStr(att->attname)) == 0;
	}
	RelationClose(rel);

	if (!same)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("table \"%s\" was changed while a message for it was being applied",
						target->displayname),
				 errdetail("A function that the call ran, such as one in a domain's or the table's CHECK constraint or in an index expression, dropped or renamed a column of the table, or dropped its primary key.")));
}

/* The attribute number of a live user column, or InvalidAttrNumber. */
AttrNumber
TargetColumnByName(UpsertTarget *target, const char *name)
{
	for (int i = 0; i < target->ncolumns; i++)
	{
		TargetColumn *col = &target->columns[i];

		if (col->attnum != InvalidAttrNumber && strcmp(col->name, name) == 0)
			return col->attnum;
	}
	return InvalidAttrNumber;
}
