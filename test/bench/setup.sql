-- test/bench/setup.sql: the tables and functions the benchmark compares.
--
-- Every variant writes to its own target table of the same shape
--   (id int PRIMARY KEY, ver <version> NOT NULL, val bigint, note text)
-- and to its own log table, a copy of upsert_order.event_log (event_id from
-- a sequence, target, key, version, outcome, payload, data, logged_at).
-- The extension's target uses upsert_order.rowseq for the version, the
-- hand-written variants bigint (same size, same comparison cost).
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS upsert_order;
DROP SCHEMA IF EXISTS bench CASCADE;
CREATE SCHEMA bench;

-- versioned_upsert() and versioned_upsert_batch() (log: upsert_order.event_log)
CREATE TABLE bench.t_ext (id int PRIMARY KEY, ver upsert_order.rowseq NOT NULL, val bigint, note text);

-- The same, with a row trigger calling pg_notify (scenario 6).
CREATE TABLE bench.t_notify (LIKE bench.t_ext INCLUDING ALL);
CREATE FUNCTION bench.notify_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_notify('bench_notify',
		jsonb_build_object('table', TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME,
						   'op', lower(TG_OP), 'key', jsonb_build_object('id', NEW.id),
						   'version', NEW.ver::bigint::text, 'data', to_jsonb(NEW))::text);
	RETURN NULL;
END $$;
CREATE TRIGGER notify_row AFTER INSERT OR UPDATE ON bench.t_notify
	FOR EACH ROW EXECUTE FUNCTION bench.notify_row();

-- Hand-written variants: single SQL statement, PL/pgSQL function, floor.
CREATE TABLE bench.t_sql (id int PRIMARY KEY, ver bigint NOT NULL, val bigint, note text);
CREATE TABLE bench.t_plpgsql (LIKE bench.t_sql INCLUDING ALL);
CREATE TABLE bench.t_floor (LIKE bench.t_sql INCLUDING ALL);	-- never written; names the target

-- Their log tables are copies of upsert_order.event_log (columns, defaults,
-- constraints, indexes: whatever event_log has, they have), each with its
-- own event_id sequence, and bigint versions like their targets.
DO $$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['log_sql', 'log_plpgsql', 'log_floor'] LOOP
		EXECUTE format('CREATE TABLE bench.%I (LIKE upsert_order.event_log INCLUDING ALL)', t);
		EXECUTE format('CREATE SEQUENCE bench.%I OWNED BY bench.%I.event_id', t || '_event_id_seq', t);
		EXECUTE format('ALTER TABLE bench.%I ALTER event_id SET DEFAULT nextval(%L)',
					   t, 'bench.' || t || '_event_id_seq');
		EXECUTE format('ALTER TABLE bench.%I ALTER version TYPE bigint', t);
	END LOOP;
END $$;

CREATE TYPE bench.result AS (applied boolean, outcome text, version bigint, stored_version bigint, event_id bigint);

-- What a user would write as a PL/pgSQL function for this table: same
-- input as versioned_upsert() (the message as jsonb), same outcomes, same
-- log row, same result columns.
CREATE FUNCTION bench.plpgsql_upsert(new_row jsonb) RETURNS bench.result
LANGUAGE plpgsql AS $$
DECLARE
	r		bench.t_plpgsql;
	ins		boolean;
	stored	bigint;
	stored_row jsonb;
	oc		text;
	eid		bigint;
BEGIN
	r := jsonb_populate_record(NULL::bench.t_plpgsql, new_row);
	INSERT INTO bench.t_plpgsql AS t (id, ver, val, note)
	VALUES (r.id, r.ver, r.val, r.note)
	ON CONFLICT (id) DO UPDATE
		SET ver = EXCLUDED.ver, val = EXCLUDED.val, note = EXCLUDED.note
		WHERE t.ver < EXCLUDED.ver
	RETURNING t.xmax = 0, t.ver, to_jsonb(t) INTO ins, stored, stored_row;
	IF FOUND THEN
		oc := CASE WHEN ins THEN 'inserted' ELSE 'updated' END;
	ELSE
		SELECT t.ver INTO stored FROM bench.t_plpgsql t WHERE t.id = r.id;
		oc := CASE WHEN stored = r.ver THEN 'duplicate' ELSE 'stale' END;
	END IF;
	INSERT INTO bench.log_plpgsql (target, key, version, outcome, payload, data)
	VALUES ('bench.t_plpgsql'::regclass, jsonb_build_object('id', r.id), r.ver, oc, new_row, stored_row)
	RETURNING event_id INTO eid;
	RETURN ROW(oc IN ('inserted', 'updated'), oc, r.ver, stored, eid)::bench.result;
END $$;

-- Empty a variant's target (and its log, unless NULL) and load the 100,000
-- ids at one version.
CREATE FUNCTION bench.reset(target regclass, log regclass, preload_version bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	IF log IS NULL THEN
		EXECUTE format('TRUNCATE %s', target);
	ELSE
		EXECUTE format('TRUNCATE %s, %s', target, log);
	END IF;
	EXECUTE format('INSERT INTO %s (id, ver, val, note) SELECT g, $1, 0, %L || g FROM generate_series(1, 100000) g',
				   target, 'note ') USING preload_version;
END $$;
