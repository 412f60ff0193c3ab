/*-------------------------------------------------------------------------
 *
 * upsert_order.h
 *	  Declarations shared by the upsert_order modules: the rowseq layout,
 *	  the server clock, target metadata, the event log writer, the publisher
 *	  worker and the settings.
 *
 *-------------------------------------------------------------------------
 */
#ifndef UPSERT_ORDER_H
#define UPSERT_ORDER_H

#include "postgres.h"

#include "access/attnum.h"
#include "fmgr.h"
#include "executor/spi.h"
#include "nodes/bitmapset.h"
#include "nodes/lockoptions.h"
#include "utils/jsonb.h"
#include "utils/relcache.h"
#include "datatype/timestamp.h"

#define UPSERT_ORDER_SCHEMA "upsert_order"

/*
 * rowseq layout: a hybrid logical clock value.  The upper 48 bits count
 * milliseconds since the Unix epoch, the lower 16 bits are a logical counter.
 * Only non-negative int64 values are valid, so the millisecond part is
 * limited to 47 bits (about 4,400 years after 1970).
 */
#define ROWSEQ_LOGICAL_BITS		16
#define ROWSEQ_LOGICAL_MAX		((1 << ROWSEQ_LOGICAL_BITS) - 1)
#define ROWSEQ_MAX				PG_INT64_MAX
#define ROWSEQ_MS_MAX			(ROWSEQ_MAX >> ROWSEQ_LOGICAL_BITS)

typedef int64 rowseq;

#define DatumGetRowseq(X)		((rowseq) DatumGetInt64(X))
#define RowseqGetDatum(X)		Int64GetDatum(X)
#define PG_GETARG_ROWSEQ(n)		DatumGetRowseq(PG_GETARG_DATUM(n))
#define PG_RETURN_ROWSEQ(x)		return RowseqGetDatum(x)

/* rowseq.c */
extern rowseq RowseqFromText(const char *text, const char *shown);
extern Oid	RowseqTypeOid(void);

/* hlc.c: the server clock behind rowseq_now() */
extern void HlcRequestShmem(void);
extern void HlcStartupShmem(void);
extern rowseq HlcNow(void);

/* How a column's value becomes JSON in event_log.data (row_json.c). */
typedef enum RowJsonKind
{
	ROW_JSON_OTHER,				/* not done by row_json.c: to_jsonb() of the row */
	ROW_JSON_BOOL,
	ROW_JSON_INT2,
	ROW_JSON_INT4,
	ROW_JSON_INT8,
	ROW_JSON_NUMERIC,
	ROW_JSON_FLOAT,				/* float4, float8: through their text */
	ROW_JSON_TEXT,				/* text, varchar, bpchar */
	ROW_JSON_DATETIME,			/* date, timestamp, timestamptz */
	ROW_JSON_STRING				/* the output function's text: uuid, rowseq */
} RowJsonKind;

/* target.c: what versioned_upsert() needs to know about a target table */
typedef struct TargetColumn
{
	AttrNumber	attnum;
	char	   *name;			/* column name, unquoted */
	Oid			typid;
	int32		typmod;
	Oid			basetype;		/* the type, or the base type of its domain */
	uint32		domain_hash;	/* of typid in TYPEOID, for a domain's changes */
	int16		typlen;
	bool		typbyval;
	FmgrInfo	input;			/* the type's input function */
	bool		input_checks;	/* which may compile a domain's constraints */
	Oid			ioparam;
	FmgrInfo	output;			/* the type's output function */
	bool		structured;		/* array or composite: built from JSON arrays and objects */
	RowJsonKind json_kind;
} TargetColumn;

typedef struct UpsertTarget
{
	Oid			relid;
	bool		valid;			/* cleared by invalidation */
	uint64		generation;		/* tells this build from earlier ones */
	char	   *qualname;		/* quoted "schema"."table" */
	char	   *displayname;	/* schema.table for messages */
	MemoryContext cxt;			/* holds this entry and everything it points to */
	int			ncolumns;		/* attributes, dropped ones included */
	int			nlive;			/* live user columns */
	TargetColumn *columns;		/* indexed by attnum - 1 (dropped: attnum 0) */
	int			npkey;
	AttrNumber *pkey;			/* primary key columns, in index order */
	AttrNumber	version_attnum;
	RegProcedure *pkey_eqproc;	/* equality function of each key column */
	Oid		   *pkey_collation; /* and the collation the index compares with */
	Oid			pkey_index;
	List	   *key_arbiters;	/* ON CONFLICT's arbiters on the key's columns:
								 * pkey_index, and any unique index alike */
	bool		direct_ok;		/* no triggers, RLS, partitions, generated columns */
	bool		row_security;	/* RLS enabled: rejections probe the stored row */
	LockTupleMode update_lockmode;	/* row lock of an update of every non-key column */
	bool		lock_before_check;	/* a CHECK constraint calls a function that
									 * is not immutable */
	FmgrInfo	to_jsonb;		/* to_jsonb() of the table's row type */
	bool		row_json_direct;	/* every column's json_kind is known */
	int		   *row_json_order;	/* live column indexes, in jsonb's key order */
	struct UpsertStatement *statements; /* prepared upserts, by column set */
	SPIPlanPtr	visible_plan;	/* row-visibility probe, for row security */
	uint32		namespace_hash; /* of its schema in NAMESPACEOID: renaming it
								 * rebuilds the entry */
} UpsertTarget;

extern UpsertTarget *TargetLookup(Oid relid);
extern void TargetCheckTable(Relation rel);
extern bool TargetQualifiedName(UpsertTarget *target, const char **qualname);
extern AttrNumber TargetColumnByName(UpsertTarget *target, const char *name);
extern void TargetCheckColumns(UpsertTarget *target);
extern void TargetInitCache(void);

/*
 * Error out if a function the call ran changed the target's columns or
 * primary key under it.  Runs once per column of every message, so the
 * usual case, an entry no invalidation reached, is one test inline.
 */
static inline void
TargetCheckUnchanged(UpsertTarget *target)
{
	if (!target->valid)
		TargetCheckColumns(target);
}

/* upsert.c */
extern bool UpsertCallRunning(void);
extern bool UpsertCallNested(void);

/* event_log.c */
typedef struct LoggedEvent
{
	Oid			target;
	Jsonb	   *key;
	rowseq		version;
	const char *outcome;
	Jsonb	   *payload;
	Datum		data;			/* jsonb of the stored row, or 0 */
	bool		data_isnull;
	int64		event_id;		/* taken by EventLogTakeId(), or 0 */
} LoggedEvent;

/* The columns of event_log, in the order of the install script. */
typedef enum EventLogColumn
{
	LOG_EVENT_ID,
	LOG_TARGET,
	LOG_KEY,
	LOG_VERSION,
	LOG_OUTCOME,
	LOG_PAYLOAD,
	LOG_DATA,
	LOG_LOGGED_AT,
	LOG_NCOLUMNS
} EventLogColumn;

extern Oid	EventLogColumns(AttrNumber *attnums);
extern void EventLogTableOids(Oid *log_relid, Oid *seq_relid, Oid *outbox_relid);
extern bool EventLogTablesCurrent(void);
extern Oid	EventLogOwner(void);
extern int64 EventLogTakeId(void);
extern int64 EventLogAppend(const LoggedEvent *event);
extern void EventLogInitCache(void);
extern void EventLogBatchBegin(void);
extern void EventLogBatchEnd(void);
extern void EventLogBatchAbort(void);

/* extension_tables.c: the extension's own tables, written below SQL */
extern Oid	ExtensionTableLookup(const char *relname, Oid *owner);
extern AttrNumber ExtensionColumn(Oid relid, const char *relname, const char *colname,
								  Oid typid);
extern int	OwnerSearchPathBegin(void);

/* What OwnerSectionBegin() saved, for OwnerSectionEnd(). */
typedef struct OwnerSection
{
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
} OwnerSection;

extern void OwnerSectionBegin(Oid owner, OwnerSection *section);
extern void OwnerSectionEnd(OwnerSection *section);

/* Inserts into one of the extension's tables, below SQL. */
typedef struct Appender Appender;

extern Appender *AppenderOpen(Oid relid);
extern Appender *AppenderOpenOneRow(Oid relid);
extern Relation AppenderRelation(const Appender *ap);
extern bool AppenderBusy(const Appender *ap);
extern bool AppenderHasTriggers(const Appender *ap);
extern void AppenderNewRow(Appender *ap);
extern void AppenderSet(Appender *ap, AttrNumber attnum, Datum value);
extern void AppenderSetNull(Appender *ap, AttrNumber attnum);
extern void AppenderInsert(Appender *ap);
extern void AppenderClose(Appender *ap);

/*
 * The publisher: one background worker that notifies every committed applied
 * event, in order, exactly once (see publisher.c).
 */

/*
 * NOTIFY refuses payloads of this many bytes or more: its own limit, which
 * commands/async.h does not export.  8000 with the default block size.
 */
#define PUBLISHER_PAYLOAD_LIMIT		(BLCKSZ - NAMEDATALEN - 128)

/*
 * Sub-IDs of the locks taken on the extension object besides the lock on it
 * (sub-ID 0, which the worker holds through a batch): each names one lock.
 */
#define PURGE_LOCK_SUBID			1	/* event_purge.c: the deleters of events */
#define SETTINGS_LOCK_SUBID			2	/* settings changes against batches */

/* Settings, defined in upsert_order.c */
extern char *publisher_database;
extern char *publisher_channel;
extern int	publisher_naptime;
extern int	publisher_batch_size;
extern int	publisher_delay;
extern int	publisher_event_retention;

/* publisher_payload.c: what a notification says about one event */
typedef struct PublishedEvent
{
	int64		seq;
	int64		event_id;
	const char *table;			/* schema.table, or NULL if it was dropped */
	bool		inserted;		/* else updated */
	Datum		key;			/* jsonb, maybe still toasted */
	const char *version;		/* as text */
	bool		publish_data;	/* else data is left out, whatever its size */
	Datum		data;			/* jsonb, maybe still toasted; if publish_data */
	bool		data_isnull;	/* the row is unknown */
} PublishedEvent;

extern char *PublisherPayload(const PublishedEvent *event, int limit);

/* publisher.c: the worker */
extern void PublisherRegisterWorker(void);
extern PGDLLEXPORT void PublisherMain(Datum main_arg);
extern void PublisherLockSettings(Oid extoid, LOCKMODE mode);

/* event_purge.c: deleting expired events, for purge_events() and the worker */
extern bool EventPurgeLock(bool wait);
extern int64 EventPurgeBatch(TimestampTz cutoff, int64 after_event_id,
							 int64 *last_event_id, bool *reached_cutoff);

/* outbox_horizon.c: where the worker's scan of the outbox may start */
extern bool OutboxHorizonSample(Oid outbox_relid, Oid seqid);
extern void OutboxHorizonCheckWriters(Oid log_relid, TransactionId xmin);
extern int64 OutboxHorizonScanStart(Snapshot snapshot);
extern int64 OutboxHorizonReached(TransactionId xmin, bool full, int64 last_taken);
extern void OutboxHorizonAdvance(int64 reached);

/* publisher_shmem.c: what the worker shares with backends */
extern void PublisherRequestShmem(void);
extern void PublisherStartupShmem(void);
extern void PublisherInitCallbacks(void);
extern bool PublisherServesThisDatabase(void);
extern void PublisherWakeAtCommit(void);
extern uint64 PublisherCommitCount(void);
extern void PublisherPausing(bool pausing);
extern bool PublisherNoteConnecting(bool connecting);
extern void PublisherAttach(void);
extern void PublisherReportSuccess(Oid publication_relid, int64 last_seq);
extern void PublisherReportError(const char *message);

/* publisher_api.c: SQL-callable functions and the checks they share */
extern bool PublisherChannelIsValid(const char *channel, const char **reason);
extern void PublisherSettingsInitCallbacks(void);

/* One parsed message (message.c). */
typedef struct UpsertMessage
{
	Jsonb	   *new_row;
	rowseq		version;
	Datum	   *key_values;		/* typed primary key values, in key order */
	Jsonb	   *key;			/* the same as a JSON object */
	Bitmapset  *others;			/* other columns present, converted here */
	Bitmapset  *structured;		/* those of them that are arrays or composites */
	Datum	   *values;			/* values of the other columns, by attnum - 1 */
	bool	   *nulls;			/* true for every column not among them */
} UpsertMessage;

/* message.c: reading new_row */
extern void MessageParse(UpsertTarget *target, Jsonb *new_row, UpsertMessage *msg);
extern Jsonb *MessageStoredKey(UpsertTarget *target, UpsertMessage *msg, Datum *stored_key);

/*
 * upsert_statement.c: the statement a message is applied with.
 *
 * Parameters of the upsert statement: the message's version, the token of
 * the call, the key values from $3, then the other columns in attribute
 * order.  Every parameter but the token (int8) has its column's type, the
 * version's base type (see UpsertStatementFor()): the statement spells no
 * type name, so it needs no privilege on a type's schema, which INSERT does
 * not need either.
 */
#define PARAM_VERSION	0
#define PARAM_TOKEN		1
#define PARAM_FIRST_KEY	2

/*
 * Columns of what the upsert statement returns: the stored version, the
 * stored row as jsonb, the event_id taken, then the key columns as stored.
 */
#define RETURNED_VERSION	1
#define RETURNED_ROW		2
#define RETURNED_FIRST_KEY	4

extern SPIPlanPtr UpsertStatementFor(UpsertTarget *target, UpsertMessage *msg);
extern void UpsertStatementsFree(UpsertTarget *target);
extern SPIPlanPtr SpiPrepareChecked(const char *sql, int nargs, Oid *argtypes, bool keep);

/* row_json.c: the stored row as jsonb */
struct TupleTableSlot;
extern RowJsonKind RowJsonKindOf(Oid basetype, Oid rowseq_oid);
extern void RowJsonValue(JsonbValue *jb, TargetColumn *col, Datum value);
extern int *RowJsonOrder(UpsertTarget *target);
extern Datum RowToJsonb(UpsertTarget *target, struct TupleTableSlot *slot);

/* exec_state.c: executor state for writing one relation's rows below SQL */
struct EState;
struct ResultRelInfo;
extern struct EState *SimpleExecStateCreate(Relation rel, Bitmapset *insertedCols,
											 Bitmapset *updatedCols,
											 struct ResultRelInfo **rri);
extern void SimpleExecStateRequireUpsertPrivileges(struct EState *estate,
												   bool row_location);
extern void SimpleExecStateCheckUpsert(struct EState *estate, Relation rel);
extern void SimpleExecStateFree(struct EState *estate);

/* direct.c: the path below SQL for full-row messages on plain tables */
typedef struct DirectState DirectState;

extern bool DirectApplies(UpsertTarget *target, UpsertMessage *msg);
extern void DirectInitCache(void);
extern DirectState *DirectOpen(UpsertTarget *target, MemoryContext cxt);
extern bool DirectStateMatches(DirectState *ds, UpsertTarget *target);
extern void DirectClose(DirectState *ds);
extern void DirectUpsert(DirectState *ds, UpsertMessage *msg, LoggedEvent *event,
						 bool *stored_isnull, rowseq *stored);

#endif							/* UPSERT_ORDER_H */
