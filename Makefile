# upsert_order: PGXS build.
#
# `make && sudo make install` builds and installs the extension; test/run-tests
# runs every suite (`make installcheck`) on throwaway instances that preload it.

MODULE_big = upsert_order
OBJS = \
	src/upsert_order.o \
	src/rowseq.o \
	src/hlc.o \
	src/target.o \
	src/upsert.o \
	src/upsert_statement.o \
	src/message.o \
	src/direct.o \
	src/exec_state.o \
	src/row_json.o \
	src/event_log.o \
	src/extension_tables.o \
	src/publisher.o \
	src/event_purge.o \
	src/outbox_horizon.o \
	src/publisher_payload.o \
	src/publisher_shmem.o \
	src/publisher_api.o

EXTENSION = upsert_order
DATA = sql/upsert_order--1.0.sql
PGFILEDESC = "upsert_order - versioned upserts with an append-only event log"

# pg_regress suites (sql/ + expected/), each on a temporary instance started
# with the library in shared_preload_libraries.
REGRESS = rowseq outcomes bad_input identifiers triggers_constraints partitions privileges rls publish batch direct_path
REGRESS_OPTS = --temp-config=$(srcdir)/test/upsert_order.conf --temp-instance=$(CURDIR)/tmp_check_regress

# Isolation specs live in test/specs with their expected output in test/expected.
ISOLATION = concurrent_same_key concurrent_new_key concurrent_batch repeatable_read concurrent_temp_table \
	concurrent_writer event_log_altered configure_locked_table configure_dropped_table renamed_under_call \
	settings_dropped_repeatable_read check_after_row_lock batch_function_replaced
# The specs run in PGXS's isolation_regression (PGXS appends its own --dbname
# after these options), which the publisher does not serve: they test the
# writers alone.  The publisher's races are the TAP tests' (test/t/01*, 02*).
ISOLATION_OPTS = --inputdir=$(srcdir)/test --outputdir=$(CURDIR)/output_iso \
	--temp-config=$(srcdir)/test/upsert_order.conf --temp-instance=$(CURDIR)/tmp_check_iso

# TAP tests (PostgreSQL::Test::Cluster) live in test/t.
TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl

EXTRA_CLEAN = tmp_check_regress tmp_check_iso output_iso

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# Every source file includes the one shared header; PGXS does not track
# header dependencies, so name it here for incremental builds.
$(OBJS): $(srcdir)/src/upsert_order.h

# Warnings are errors when asked for (CI sets WERROR=1).
ifdef WERROR
override CFLAGS += -Werror
endif

# `make bench`: pgbench scenarios comparing versioned_upsert with hand-written
# SQL on a throwaway cluster (see test/bench/run for settings and variables,
# e.g. BENCH_SECONDS=2 BENCH_ROUNDS=1 make bench for a quick run).
.PHONY: bench
bench:
	PG_CONFIG=$(PG_CONFIG) $(srcdir)/test/bench/run
