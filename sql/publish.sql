-- The publisher: every committed applied event is notified exactly once, in
-- seq order, once its transaction has committed; nothing else is.  A dblink
-- session listens, so that what it receives can be shown without the
-- sender's process ID.  test/upsert_order.conf points the worker at this
-- database.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS upsert_order CASCADE;
DROP SCHEMA IF EXISTS publish CASCADE;
DROP ROLE IF EXISTS publish_stranger;
CREATE EXTENSION upsert_order;
CREATE EXTENSION IF NOT EXISTS dblink;
RESET client_min_messages;
CREATE SCHEMA publish;
GRANT USAGE ON SCHEMA publish TO PUBLIC;
SET search_path = publish, upsert_order, public;
\set SHOW_CONTEXT never

-- Wait for the worker (it starts once the database exists).
CREATE FUNCTION wait_for_worker() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN 1..600 LOOP
		IF (SELECT worker_pid IS NOT NULL FROM upsert_order.publisher_status) THEN
			RETURN true;
		END IF;
		PERFORM pg_sleep(0.1);
	END LOOP;
	RETURN false;
END $$;

-- Wait until seq n is notified: the worker committed it and signalled the
-- listeners.
CREATE FUNCTION wait_notified(n bigint) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN 1..3000 LOOP
		IF (SELECT last_seq >= n FROM upsert_order.publisher_status) THEN
			RETURN true;
		END IF;
		PERFORM pg_sleep(0.01);
	END LOOP;
	RETURN false;
END $$;

-- Wait until the worker reports an error (one like pattern).
CREATE FUNCTION wait_for_error(pattern text DEFAULT '%') RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	msg text;
BEGIN
	FOR i IN 1..3000 LOOP
		SELECT last_error INTO msg FROM upsert_order.publisher_status;
		IF msg LIKE pattern THEN
			RETURN msg;
		END IF;
		PERFORM pg_sleep(0.01);
	END LOOP;
	RETURN NULL;
END $$;

-- Everything the listener received since the last call, in order of
-- arrival; kept in "received" to compare with events_since() at the end.
-- The round trip first makes the listener's connection hand over what the
-- server already sent it.
CREATE TABLE received (n serial PRIMARY KEY, channel text, payload text);
CREATE FUNCTION receive() RETURNS SETOF received LANGUAGE sql AS $$
	SELECT * FROM dblink('listener', 'SELECT 1') AS t(one int);
	INSERT INTO received (channel, payload)
		SELECT notify_name, extra FROM dblink_get_notify('listener')
		RETURNING *;
$$;

SELECT wait_for_worker();
SHOW upsert_order.channel;
SHOW upsert_order.database;

-- Settings: reload-only ones cannot be SET, and a misspelt one is refused.
SET upsert_order.channel = 'elsewhere';
SET upsert_order.chanel = 'elsewhere';
-- The channel setting refuses what NOTIFY would, and a refused value is
-- not written; one byte shorter is written, and reset.
ALTER SYSTEM SET upsert_order.channel = '';
ALTER SYSTEM SET upsert_order.channel = 'c123456789012345678901234567890123456789012345678901234567890123';
SELECT count(*) FROM pg_file_settings WHERE name = 'upsert_order.channel';
ALTER SYSTEM SET upsert_order.channel = 'c12345678901234567890123456789012345678901234567890123456789012';
SELECT length(setting) FROM pg_file_settings WHERE name = 'upsert_order.channel';
ALTER SYSTEM RESET upsert_order.channel;
SELECT count(*) FROM pg_file_settings WHERE name = 'upsert_order.channel';

-- A trigger and a default shape the stored row; "data" is the stored row.
CREATE TABLE item (
	id		int PRIMARY KEY,
	ver		rowseq NOT NULL,
	name	text,
	note	text DEFAULT 'from default'
);
CREATE FUNCTION shout() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	NEW.name := upper(NEW.name);
	RETURN NEW;
END $$;
CREATE TRIGGER shout BEFORE INSERT OR UPDATE ON item FOR EACH ROW EXECUTE FUNCTION shout();

SELECT dblink_connect('listener', 'dbname=' || current_database());
SELECT dblink_connect('other', 'dbname=' || current_database());
SELECT dblink_exec('listener', 'LISTEN upsert_order');

-- Nothing before COMMIT: while this transaction is open, another session's
-- event is published (seq 1), and ours is not.
BEGIN;
SELECT outcome, event_id FROM versioned_upsert('item', '{"id": 1, "ver": 10, "name": "first"}');
SELECT * FROM dblink('other', $$SELECT outcome FROM upsert_order.versioned_upsert('publish.item', '{"id": 2, "ver": 10, "name": "other"}')$$)
  AS t(outcome text);
SELECT wait_notified(1);
SELECT channel, payload FROM receive();
SELECT count(*) AS published_so_far FROM publication;
COMMIT;
-- Exactly one after: seq 2, although its event_id is the smaller.
SELECT wait_notified(2);
SELECT channel, payload FROM receive();

-- None for a rolled-back transaction or subtransaction, nor for stale and
-- duplicate messages (which are logged all the same).  The next
-- notification is the one of the applied event that follows them.
BEGIN;
SELECT outcome FROM versioned_upsert('item', '{"id": 3, "ver": 10, "name": "rolled back"}');
ROLLBACK;
BEGIN;
SAVEPOINT s;
SELECT outcome FROM versioned_upsert('item', '{"id": 3, "ver": 10, "name": "rolled back too"}');
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT outcome FROM versioned_upsert('item', '{"id": 1, "ver": 5, "name": "late"}');
SELECT outcome FROM versioned_upsert('item', '{"id": 1, "ver": 10, "name": "again"}');
SELECT outcome FROM versioned_upsert('item', '{"id": 1, "ver": 11, "name": "second"}');
SELECT wait_notified(3);
SELECT channel, payload FROM receive();
SELECT outcome, count(*) FROM event_log GROUP BY outcome ORDER BY outcome;

-- Payload shape.
SELECT key, jsonb_typeof(payload::jsonb -> key) AS type
  FROM received, jsonb_object_keys(payload::jsonb) AS key
 WHERE n = (SELECT max(n) FROM received)
 ORDER BY key;

-- Several events in one transaction: consecutive seqs, in event order.
BEGIN;
SELECT outcome FROM versioned_upsert('item', '{"id": 4, "ver": 10, "name": "a"}');
SELECT outcome FROM versioned_upsert('item', '{"id": 5, "ver": 10, "name": "b"}');
SELECT outcome FROM versioned_upsert('item', '{"id": 4, "ver": 12, "name": "c"}');
COMMIT;
SELECT wait_notified(6);
SELECT payload::jsonb -> 'seq' AS seq, payload::jsonb -> 'key' AS key, payload::jsonb -> 'op' AS op,
       payload::jsonb -> 'version' AS version
  FROM receive() ORDER BY n;

-- The 8000-byte limit of NOTIFY: a payload of 7999 bytes keeps "data", one
-- byte more drops it and sets "data_omitted".  The probe measures the
-- payload of a one-character name; the seq and event_id of the next events
-- are one more, which may take one more digit.
SELECT outcome, event_id AS probe_event FROM versioned_upsert('item', '{"id": 6, "ver": 20, "name": "x"}') \gset
SELECT wait_notified(7);
SELECT octet_length(payload) - 1 AS fixed_part FROM receive() \gset
SELECT :fixed_part - length('7') - length(:'probe_event') + length('8') + length((:probe_event + 1)::text) AS fixed_8,
       :fixed_part - length('7') - length(:'probe_event') + length('9') + length((:probe_event + 2)::text) AS fixed_9 \gset
SELECT outcome FROM versioned_upsert('item', jsonb_build_object('id', 6, 'ver', 21, 'name', repeat('x', 7999 - :fixed_8)));
SELECT outcome FROM versioned_upsert('item', jsonb_build_object('id', 6, 'ver', 22, 'name', repeat('x', 8000 - :fixed_9)));
SELECT wait_notified(9);
SELECT payload::jsonb -> 'seq' AS seq, octet_length(payload) AS bytes,
       payload::jsonb ? 'data' AS has_data, payload::jsonb -> 'data_omitted' AS data_omitted,
       payload::jsonb -> 'key' AS key
  FROM receive() ORDER BY n;
-- A row much larger than the limit, for good measure.
SELECT outcome FROM versioned_upsert('item', jsonb_build_object('id', 7, 'ver', 10, 'name', repeat('y', 100000)));
SELECT wait_notified(10);
SELECT channel, payload FROM receive();

-- A channel per target.
CREATE TABLE gadget (sku text PRIMARY KEY, ver rowseq NOT NULL, price numeric);
SELECT configure('gadget', 'gadget_events');
SELECT * FROM target_settings;
SELECT dblink_exec('listener', 'LISTEN gadget_events');
SELECT outcome FROM versioned_upsert('gadget', '{"sku": "g-1", "ver": 1, "price": 9.50}');
-- (The name is written back by jsonb's rules: the payload is stored as it
-- was sent, and events_since() must give the same text at the end.)
SELECT outcome FROM versioned_upsert('item', '{"id": 8, "ver": 1, "name": "default channel \"\\\t\u0001"}');
SELECT wait_notified(12);
SELECT channel, payload FROM receive() ORDER BY n;
-- Back to upsert_order.channel.
SELECT configure('gadget', NULL);
SELECT outcome FROM versioned_upsert('gadget', '{"sku": "g-1", "ver": 2, "price": 9.75}');
SELECT wait_notified(13);
SELECT channel, payload::jsonb -> 'seq' AS seq FROM receive() ORDER BY n;
-- Names NOTIFY would refuse.
SELECT configure('gadget', '');
SELECT configure('gadget', repeat('c', 64));
SELECT configure(NULL, 'x');
-- Only tables have channels of their own: not views, indexes or sequences,
-- nor system catalogs or the extension's own tables, which are never targets.
CREATE VIEW gadget_view AS SELECT * FROM gadget;
SELECT configure('gadget_view', 'x');
SELECT configure('gadget_pkey', 'x');
SELECT configure('pg_catalog.pg_class', 'x');
SELECT configure('upsert_order.event_log', 'x');
DROP VIEW gadget_view;
-- nor temporary tables, which go at the end of the session without a trace
CREATE TEMP TABLE gadget_temp (sku text PRIMARY KEY, ver rowseq NOT NULL);
SELECT configure('gadget_temp', 'x');
DROP TABLE gadget_temp;
-- Settings are written, so not in a read-only transaction (nor on a standby).
BEGIN READ ONLY;
SELECT configure('gadget', 'x');
ROLLBACK;
BEGIN READ ONLY;
SELECT publish_data('gadget', false);
ROLLBACK;
-- events_since() returns what was notified after a seq, byte for byte.
SELECT seq, channel, payload::jsonb -> 'key' AS key FROM events_since(10) ORDER BY seq;
SELECT count(*) AS after_last FROM events_since(13);
SELECT seq FROM events_since(10, 2);
-- ... whatever operators and types the caller's search_path puts first.
CREATE SCHEMA shadow;
CREATE FUNCTION shadow.gt(bigint, bigint) RETURNS boolean LANGUAGE plpgsql
	AS $$ BEGIN RAISE EXCEPTION 'shadow operator called'; END $$;
CREATE OPERATOR shadow.> (FUNCTION = shadow.gt, LEFTARG = bigint, RIGHTARG = bigint);
CREATE FUNCTION shadow.refuse(pg_catalog.jsonb) RETURNS boolean LANGUAGE plpgsql
	AS $$ BEGIN RAISE EXCEPTION 'shadow type used'; END $$;
CREATE DOMAIN shadow.jsonb AS pg_catalog.jsonb CHECK (shadow.refuse(VALUE));
BEGIN;
SET LOCAL search_path = shadow, pg_catalog;
SELECT count(*) AS after_10 FROM upsert_order.events_since(10);
SELECT seq, payload OPERATOR(pg_catalog.->>) 'op' AS op FROM upsert_order.events_since(10, 1);
COMMIT;
DROP SCHEMA shadow CASCADE;
SELECT count(*) AS notified, count(e.seq) AS in_events_since,
       count(*) FILTER (WHERE r.channel = e.channel AND r.payload = e.payload::text) AS identical
  FROM received r LEFT JOIN events_since(NULL, NULL) e ON e.seq = (r.payload::jsonb ->> 'seq')::bigint;
SELECT count(*) AS published_not_notified
  FROM events_since(0, NULL) e
 WHERE NOT EXISTS (SELECT 1 FROM received r WHERE r.payload = e.payload::text);

-- Only the owner of the target, and only once granted EXECUTE.
CREATE ROLE publish_stranger;
SET ROLE publish_stranger;
SELECT configure('gadget', 'mine');
RESET ROLE;
GRANT EXECUTE ON FUNCTION configure(regclass, text) TO publish_stranger;
SET ROLE publish_stranger;
SELECT configure('gadget', 'mine');
SELECT * FROM events_since(0);
SELECT purge_events('1 day');
SELECT * FROM publisher_status;
RESET ROLE;
GRANT pg_monitor TO publish_stranger;
SET ROLE publish_stranger;
SELECT worker_pid IS NOT NULL AS running, last_seq, events_waiting, last_error FROM publisher_status;
RESET ROLE;

-- A notification that fails (the superuser wrote a channel name NOTIFY
-- refuses straight into target_settings): the worker reports the error and
-- retries; nothing is published in the meantime, events stay in order
-- behind the failing one, and nothing is lost or renumbered once fixed.
INSERT INTO target_settings VALUES ('gadget', repeat('z', 70));
SELECT outcome FROM versioned_upsert('gadget', '{"sku": "g-2", "ver": 1, "price": 1}');
SELECT outcome FROM versioned_upsert('item', '{"id": 9, "ver": 1, "name": "behind"}');
SELECT wait_for_error();
SELECT worker_pid IS NOT NULL AS running, last_seq, events_waiting, oldest_waiting_age > '0'::interval AS waiting_for_a_while
  FROM publisher_status;
-- purge_events() never removes a waiting event.
SELECT purge_events('0 s') > 0 AS purged_some;
SELECT e.event_id IS NOT NULL AS still_logged
  FROM outbox o LEFT JOIN event_log e USING (event_id) ORDER BY o.event_id;
UPDATE target_settings SET channel = 'gadget_events' WHERE target = 'gadget'::regclass;
SELECT wait_notified(15);
SELECT channel, payload::jsonb -> 'seq' AS seq, payload::jsonb -> 'key' AS key FROM receive() ORDER BY n;
SELECT last_seq, events_waiting, last_error FROM publisher_status;

-- purge_events() deleted every published event, the last one too, but not
-- the last one's publication row, which numbers what comes next: its
-- event_id is null now.  Everything before it went with its events.
SELECT seq, event_id IS NULL AS event_purged FROM publication ORDER BY seq;
-- Purging again deletes every event left, all published, returning how many,
-- and the publication row kept before, now that newer ones exist.
SELECT count(*) AS logged FROM event_log;
SELECT purge_events('0 s') AS purged;
SELECT count(*) AS logged FROM event_log;
SELECT seq, event_id IS NULL AS event_purged FROM publication ORDER BY seq;
-- A listener catching up from before the purge sees the jump to it.
SELECT seq, payload -> 'seq' AS payload_seq FROM events_since(3);
SELECT purge_events('-1 s');
-- Nor one whose months, counted by the calendar, make it so.
SELECT purge_events('-1 year 360 days');
-- Nor a null one.
SELECT purge_events(NULL);
-- It deletes, so not in a read-only transaction (nor on a standby).
BEGIN READ ONLY;
SELECT purge_events('0 s');
ROLLBACK;

-- A key too large for NOTIFY even without "data": both are left out, and the
-- listener reads the event from event_log by its event_id.
CREATE TABLE bigkey (k text PRIMARY KEY, ver rowseq NOT NULL);
SELECT outcome FROM versioned_upsert('bigkey', jsonb_build_object('k', repeat('k', 9000), 'ver', 1));
SELECT wait_notified(16);
SELECT r.payload::jsonb - 'event_id' AS payload,
       length((SELECT e.key ->> 'k' FROM event_log e
                WHERE e.event_id = (r.payload::jsonb ->> 'event_id')::bigint)) AS logged_key_length
  FROM receive() r;

-- Two-phase commit: a prepared transaction's event is published once it is
-- committed (at the worker's next look), never if it is rolled back, and
-- seq stays gapless.
BEGIN;
SELECT outcome FROM versioned_upsert('item', '{"id": 20, "ver": 1, "name": "prepared, then committed"}');
PREPARE TRANSACTION 'publish_2pc_commit';
BEGIN;
SELECT outcome FROM versioned_upsert('item', '{"id": 21, "ver": 1, "name": "prepared, then rolled back"}');
PREPARE TRANSACTION 'publish_2pc_rollback';
SELECT last_seq FROM publisher_status;
ROLLBACK PREPARED 'publish_2pc_rollback';
COMMIT PREPARED 'publish_2pc_commit';
SELECT wait_notified(17);
SELECT payload::jsonb -> 'seq' AS seq, payload::jsonb -> 'key' AS key, payload::jsonb -> 'data' ->> 'name' AS name
  FROM receive() ORDER BY n;
SELECT id, name FROM item WHERE id IN (20, 21) ORDER BY id;

-- Columns the superuser adds to the extension's tables: events are still
-- logged whole, queued and published; each new column gets its default (its
-- own, an identity's, its domain's), as an INSERT naming only the
-- extension's columns would give it, or NULL without one.  The default of
-- a column the extension sets, data, does not replace its NULL.
CREATE SEQUENCE added_seq;
CREATE DOMAIN added_tag AS text DEFAULT 'from the domain';
ALTER TABLE event_log ADD COLUMN added_text text, ADD COLUMN added_int int,
  ADD COLUMN added_const text NOT NULL DEFAULT 'logged',
  ADD COLUMN added_next bigint DEFAULT nextval('added_seq'),
  ADD COLUMN added_domain added_tag,
  ADD COLUMN added_identity int GENERATED BY DEFAULT AS IDENTITY,
  ALTER COLUMN data SET DEFAULT '{"from": "the default"}';
ALTER TABLE outbox ADD COLUMN added_text text, ADD COLUMN added_int int,
  ADD COLUMN added_const text NOT NULL DEFAULT 'queued';
ALTER TABLE publication ADD COLUMN added_const text NOT NULL DEFAULT 'published';
BEGIN;
SELECT outcome FROM versioned_upsert_batch('item', '[{"id": 22, "ver": 1, "name": "wider log"}]');
SELECT outcome FROM versioned_upsert('item', '{"id": 22, "ver": 1, "name": "wider log"}');
SELECT e.key, e.outcome, e.data ->> 'name' AS name, e.data IS NULL AS no_data,
       e.logged_at IS NOT NULL AS has_logged_at, e.added_text, e.added_int, e.added_const,
       e.added_next - min(e.added_next) OVER () AS next_step, e.added_domain,
       e.added_identity - min(e.added_identity) OVER () AS identity_step,
       o.added_text AS queued_text, o.added_int AS queued_int, o.added_const AS queued_const
  FROM event_log e LEFT JOIN outbox o USING (event_id) WHERE e.key = '{"id": 22}' ORDER BY e.event_id;
COMMIT;
SELECT wait_notified(18);
SELECT payload::jsonb -> 'seq' AS seq, payload::jsonb -> 'data' ->> 'name' AS name FROM receive();
SELECT seq, added_const FROM publication WHERE seq = 18;
-- A domain's NOT NULL holds for a column left out, as for an INSERT.
CREATE DOMAIN added_required AS int NOT NULL;
BEGIN;
ALTER TABLE outbox ADD COLUMN added_required added_required;
SELECT outcome FROM versioned_upsert('item', '{"id": 22, "ver": 2, "name": "wider log"}');
ROLLBACK;
DROP DOMAIN added_required;
ALTER TABLE event_log DROP COLUMN added_text, DROP COLUMN added_int, DROP COLUMN added_const,
  DROP COLUMN added_next, DROP COLUMN added_domain, DROP COLUMN added_identity,
  ALTER COLUMN data DROP DEFAULT;
ALTER TABLE outbox DROP COLUMN added_text, DROP COLUMN added_int, DROP COLUMN added_const;
ALTER TABLE publication DROP COLUMN added_const;
DROP DOMAIN added_tag;
DROP SEQUENCE added_seq;

-- Waiting events far apart in event_id (the messages between them changed
-- nothing) are read back one by one, those close together as a range: both
-- are published alike, in order.
BEGIN;
SELECT outcome FROM versioned_upsert('item', '{"id": 23, "ver": 1, "name": "far"}');
SELECT count(*) FILTER (WHERE (versioned_upsert('item', '{"id": 23, "ver": 1, "name": "again"}')).outcome = 'duplicate') AS duplicates
  FROM generate_series(1, 10);
SELECT outcome FROM versioned_upsert('item', '{"id": 24, "ver": 1, "name": "apart"}');
COMMIT;
SELECT wait_notified(20);
SELECT payload::jsonb -> 'seq' AS seq, payload::jsonb -> 'key' AS key, payload::jsonb -> 'data' ->> 'name' AS name
  FROM receive() ORDER BY n;

-- publish_data(): the notifications of a table whose rows must not reach
-- every role that can LISTEN leave the row out, as for a row too large, and
-- listeners read it by key with their own privileges.  It and configure()
-- each set one setting and leave the other alone; the table keeps a row in
-- target_settings only while one of them is not the default.
CREATE TABLE secret (id int PRIMARY KEY, ver rowseq NOT NULL, pin text);
SELECT publish_data('secret', false);
SELECT channel, publish_data FROM target_settings WHERE target = 'secret'::regclass;
SELECT outcome FROM versioned_upsert('secret', '{"id": 1, "ver": 1, "pin": "1234"}');
SELECT wait_notified(21);
SELECT channel, payload FROM receive();
SELECT configure('secret', 'secret_events');
SELECT dblink_exec('listener', 'LISTEN secret_events');
SELECT channel, publish_data FROM target_settings WHERE target = 'secret'::regclass;
SELECT outcome FROM versioned_upsert('secret', '{"id": 1, "ver": 2, "pin": "5678"}');
SELECT wait_notified(22);
SELECT channel, payload::jsonb ? 'data' AS has_data, payload::jsonb -> 'data_omitted' AS data_omitted FROM receive();
SELECT publish_data('secret', NULL);
SELECT channel, publish_data FROM target_settings WHERE target = 'secret'::regclass;
SELECT outcome FROM versioned_upsert('secret', '{"id": 1, "ver": 3, "pin": "9012"}');
SELECT wait_notified(23);
SELECT channel, payload::jsonb -> 'data' AS data, payload::jsonb ? 'data_omitted' AS has_data_omitted FROM receive();
SELECT publish_data('secret', false);
SELECT configure('secret', NULL);
SELECT channel, publish_data FROM target_settings WHERE target = 'secret'::regclass;
SELECT publish_data('secret', NULL);
SELECT count(*) AS settings_left FROM target_settings WHERE target = 'secret'::regclass;
-- A change of settings commits in order with the batches of notifications,
-- and so cannot be prepared.
BEGIN;
SELECT publish_data('secret', false);
PREPARE TRANSACTION 'publish_settings';
SELECT count(*) AS settings_left FROM target_settings WHERE target = 'secret'::regclass;
-- A change rolled back to a savepoint does not count; one released into
-- the transaction, or made before a savepoint rolled back, does.
BEGIN;
SAVEPOINT change;
SELECT publish_data('secret', false);
SAVEPOINT inner_change;
SELECT configure('secret', 'elsewhere');
RELEASE SAVEPOINT inner_change;
ROLLBACK TO SAVEPOINT change;
PREPARE TRANSACTION 'publish_settings_undone';
COMMIT PREPARED 'publish_settings_undone';
BEGIN;
SAVEPOINT change;
SELECT publish_data('secret', false);
RELEASE SAVEPOINT change;
PREPARE TRANSACTION 'publish_settings_released';
BEGIN;
SELECT publish_data('secret', false);
SAVEPOINT change;
SELECT configure('secret', 'elsewhere');
ROLLBACK TO SAVEPOINT change;
PREPARE TRANSACTION 'publish_settings_before';
SELECT count(*) AS settings_left FROM target_settings WHERE target = 'secret'::regclass;
SELECT count(*) AS prepared_left FROM pg_prepared_xacts WHERE gid LIKE 'publish_settings%';
-- The same checks as configure(): only a permanent table that may be a
-- target.
SELECT publish_data(NULL, false);
CREATE VIEW secret_view AS SELECT * FROM secret;
SELECT publish_data('secret_view', false);
DROP VIEW secret_view;
SELECT publish_data('upsert_order.publication', false);
CREATE TEMP TABLE secret_temp (id int PRIMARY KEY, ver rowseq NOT NULL);
SELECT publish_data('secret_temp', false);
DROP TABLE secret_temp;
-- Only once granted EXECUTE, as configure(), and then only for a table the
-- role owns: refused for secret, set for its own table.
GRANT CREATE ON SCHEMA publish TO publish_stranger;
SET ROLE publish_stranger;
CREATE TABLE stranger_own (id int PRIMARY KEY, ver rowseq NOT NULL);
SELECT publish_data('stranger_own', false);
RESET ROLE;
GRANT EXECUTE ON FUNCTION publish_data(regclass, boolean) TO publish_stranger;
SET ROLE publish_stranger;
SELECT publish_data('secret', false);
SELECT publish_data('stranger_own', false);
RESET ROLE;
REVOKE EXECUTE ON FUNCTION publish_data(regclass, boolean) FROM publish_stranger;
SELECT publish_data FROM target_settings WHERE target = 'stranger_own'::regclass;
DROP TABLE stranger_own;
REVOKE CREATE ON SCHEMA publish FROM publish_stranger;
-- A rule on target_settings that replaces what the extension writes there
-- makes the settings functions, and the event trigger of every DROP, stop
-- with an error that names it; once it is dropped, both work again.
CREATE RULE keep_settings AS ON DELETE TO target_settings DO INSTEAD NOTHING;
SELECT publish_data('secret', false);
DROP TABLE secret;
DROP RULE keep_settings ON target_settings;
-- Without its primary key, the settings functions fail with ON CONFLICT's
-- own error.
BEGIN;
ALTER TABLE target_settings DROP CONSTRAINT target_settings_pkey;
SELECT publish_data('secret', false);
ROLLBACK;
SELECT publish_data('secret', NULL);
CREATE TABLE dropped_after_rule (id int PRIMARY KEY, ver rowseq NOT NULL);
DROP TABLE dropped_after_rule;
-- A rule that deletes elsewhere instead, or a trigger that skips the row,
-- leaves target_settings as it was while the statement seems to have run:
-- the row left behind is found, and the same calls stop until they go.
CREATE TABLE settings_elsewhere (target oid);
CREATE RULE delete_elsewhere AS ON DELETE TO target_settings
	DO INSTEAD DELETE FROM settings_elsewhere WHERE target = OLD.target::oid;
CREATE TABLE dropped_under_rule (id int PRIMARY KEY, ver rowseq NOT NULL);
SELECT configure('dropped_under_rule', 'under_rule');
DROP TABLE dropped_under_rule;
DROP RULE delete_elsewhere ON target_settings;
CREATE FUNCTION skip_settings_row() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$;
CREATE TRIGGER skip_settings_row BEFORE INSERT OR UPDATE OR DELETE ON target_settings
	FOR EACH ROW EXECUTE FUNCTION skip_settings_row();
SELECT configure('dropped_under_rule', 'other_channel');
DROP TABLE dropped_under_rule;
DROP TRIGGER skip_settings_row ON target_settings;
DROP FUNCTION skip_settings_row();
DROP TABLE dropped_under_rule, settings_elsewhere;
SELECT count(*) AS settings_left FROM target_settings WHERE channel = 'under_rule';
-- The setting goes with the table.
SELECT publish_data('secret', false);
DROP TABLE secret;
SELECT count(*) AS settings_left FROM target_settings WHERE publish_data = false;

-- A partition's rows stay out when the partitioned table's do, also when a
-- message names the partition itself (at any depth); a partition cannot
-- publish what its parent keeps out.
CREATE TABLE hidden (region text, id int, ver rowseq NOT NULL, pin text, PRIMARY KEY (region, id))
	PARTITION BY LIST (region);
CREATE TABLE hidden_eu PARTITION OF hidden FOR VALUES IN ('eu', 'uk') PARTITION BY LIST (region);
CREATE TABLE hidden_uk PARTITION OF hidden_eu FOR VALUES IN ('uk');
SELECT publish_data('hidden', false);
SELECT publish_data('hidden_uk', true);
SELECT outcome FROM versioned_upsert('hidden', '{"region": "uk", "id": 1, "ver": 1, "pin": "1"}');
SELECT outcome FROM versioned_upsert('hidden_eu', '{"region": "uk", "id": 1, "ver": 2, "pin": "2"}');
SELECT outcome FROM versioned_upsert('hidden_uk', '{"region": "uk", "id": 1, "ver": 3, "pin": "3"}');
SELECT wait_notified(26);
SELECT payload::jsonb ->> 'table' AS "table", payload::jsonb ? 'data' AS has_data,
       payload::jsonb -> 'data_omitted' AS data_omitted
  FROM receive() ORDER BY n;
-- Once the parent publishes them, the partition's own setting counts again.
SELECT publish_data('hidden', NULL);
SELECT publish_data('hidden_uk', false);
SELECT outcome FROM versioned_upsert('hidden', '{"region": "uk", "id": 1, "ver": 4, "pin": "4"}');
SELECT outcome FROM versioned_upsert('hidden_uk', '{"region": "uk", "id": 1, "ver": 5, "pin": "5"}');
SELECT wait_notified(28);
SELECT payload::jsonb ->> 'table' AS "table", payload::jsonb -> 'data' ->> 'pin' AS pin,
       payload::jsonb -> 'data_omitted' AS data_omitted
  FROM receive() ORDER BY n;
DROP TABLE hidden;
-- A temporary table has no settings, and its rows, which only its session can
-- read, are not published.
CREATE TEMP TABLE private (id int PRIMARY KEY, ver rowseq NOT NULL, pin text);
SELECT outcome FROM versioned_upsert('private', '{"id": 1, "ver": 1, "pin": "1234"}');
SELECT wait_notified(29);
SELECT payload::jsonb ->> 'table' LIKE 'pg_temp_%.private' AS temp_table, payload::jsonb ? 'data' AS has_data,
       payload::jsonb -> 'data_omitted' AS data_omitted
  FROM receive();
DROP TABLE private;
-- A table with row level security enabled publishes no rows unless its owner
-- says so: its policies say which rows each role may see, and a notification
-- goes to every listener.  The same holds for its partitions.
CREATE TABLE guarded (id int PRIMARY KEY, ver rowseq NOT NULL, pin text);
ALTER TABLE guarded ENABLE ROW LEVEL SECURITY;
CREATE TABLE guarded_tree (id int PRIMARY KEY, ver rowseq NOT NULL) PARTITION BY RANGE (id);
CREATE TABLE guarded_leaf PARTITION OF guarded_tree FOR VALUES FROM (0) TO (100);
ALTER TABLE guarded_tree ENABLE ROW LEVEL SECURITY;
SELECT outcome FROM versioned_upsert('guarded', '{"id": 1, "ver": 1, "pin": "1"}');
SELECT outcome FROM versioned_upsert('guarded_leaf', '{"id": 1, "ver": 1}');
SELECT wait_notified(31);
SELECT payload::jsonb ->> 'table' AS "table", payload::jsonb ? 'data' AS has_data,
       payload::jsonb -> 'data_omitted' AS data_omitted
  FROM receive() ORDER BY n;
SELECT publish_data('guarded', true);
SELECT publish_data('guarded_tree', true);
SELECT target, channel, publish_data FROM target_settings
 WHERE target IN ('guarded'::regclass, 'guarded_tree'::regclass) ORDER BY target::text;
SELECT outcome FROM versioned_upsert('guarded', '{"id": 1, "ver": 2, "pin": "2"}');
SELECT outcome FROM versioned_upsert('guarded_leaf', '{"id": 1, "ver": 2}');
SELECT wait_notified(33);
SELECT payload::jsonb ->> 'table' AS "table", payload::jsonb -> 'data' AS data
  FROM receive() ORDER BY n;
-- Back to the default, which follows the table: without row level security,
-- the rows go out again.
SELECT publish_data('guarded', NULL);
SELECT count(*) AS settings_left FROM target_settings WHERE target = 'guarded'::regclass;
ALTER TABLE guarded DISABLE ROW LEVEL SECURITY;
SELECT outcome FROM versioned_upsert('guarded', '{"id": 1, "ver": 3, "pin": "3"}');
SELECT wait_notified(34);
SELECT payload::jsonb -> 'data' AS data FROM receive();
-- The leaf's own row level security counts for messages that name the leaf,
-- not for those that name its parent, which publishes; the leaf's setting
-- cannot publish what a parent keeps out; once detached, it decides alone.
-- (Each event is waited for: the settings are read when it is published.)
ALTER TABLE guarded_tree DISABLE ROW LEVEL SECURITY;
ALTER TABLE guarded_leaf ENABLE ROW LEVEL SECURITY;
SELECT publish_data('guarded_tree', NULL);
SELECT outcome FROM versioned_upsert('guarded_tree', '{"id": 1, "ver": 3}');
SELECT outcome FROM versioned_upsert('guarded_leaf', '{"id": 1, "ver": 4}');
SELECT wait_notified(36);
ALTER TABLE guarded_tree ENABLE ROW LEVEL SECURITY;
ALTER TABLE guarded_leaf DISABLE ROW LEVEL SECURITY;
SELECT publish_data('guarded_leaf', true);
SELECT outcome FROM versioned_upsert('guarded_leaf', '{"id": 1, "ver": 5}');
SELECT wait_notified(37);
ALTER TABLE guarded_tree DETACH PARTITION guarded_leaf;
SELECT outcome FROM versioned_upsert('guarded_leaf', '{"id": 1, "ver": 6}');
SELECT wait_notified(38);
SELECT payload::jsonb ->> 'table' AS "table", payload::jsonb -> 'version' AS version,
       payload::jsonb ? 'data' AS has_data
  FROM receive() ORDER BY n;
DROP TABLE guarded, guarded_tree, guarded_leaf;
-- The same holds for a child made with INHERITS, of any of its parents, at
-- any level: their readers see the child's rows through them.
CREATE TABLE watched (id int, ver rowseq NOT NULL, pin text);
CREATE TABLE audited (note text);
CREATE TABLE watched_child (PRIMARY KEY (id)) INHERITS (watched, audited);
CREATE TABLE watched_grandchild (PRIMARY KEY (id)) INHERITS (watched_child);
ALTER TABLE audited ENABLE ROW LEVEL SECURITY;
SELECT outcome FROM versioned_upsert('watched_child', '{"id": 1, "ver": 1, "pin": "1"}');
SELECT outcome FROM versioned_upsert('watched_grandchild', '{"id": 1, "ver": 1, "pin": "1"}');
SELECT wait_notified(40);
ALTER TABLE audited DISABLE ROW LEVEL SECURITY;
SELECT publish_data('watched', false);
SELECT outcome FROM versioned_upsert('watched_grandchild', '{"id": 1, "ver": 2, "pin": "2"}');
SELECT wait_notified(41);
SELECT publish_data('watched', NULL);
SELECT outcome FROM versioned_upsert('watched_grandchild', '{"id": 1, "ver": 3, "pin": "3"}');
SELECT wait_notified(42);
SELECT payload::jsonb ->> 'table' AS "table", payload::jsonb -> 'version' AS version,
       payload::jsonb -> 'data' ->> 'pin' AS pin, payload::jsonb -> 'data_omitted' AS data_omitted
  FROM receive() ORDER BY n;
DROP TABLE watched_grandchild, watched_child, watched, audited;
-- Each ancestor is read once: a lattice of 25 levels, each table inheriting
-- from both of the level above, has 2^25 paths from the leaf to the roots,
-- which are all walked while none keeps its rows out.
SET client_min_messages = warning;
DO $$
BEGIN
	CREATE TABLE lattice_a0 (id int, ver rowseq NOT NULL);
	CREATE TABLE lattice_b0 (id int, ver rowseq NOT NULL);
	FOR i IN 1..25 LOOP
		EXECUTE format('CREATE TABLE lattice_a%s () INHERITS (lattice_a%s, lattice_b%s)', i, i - 1, i - 1);
		EXECUTE format('CREATE TABLE lattice_b%s () INHERITS (lattice_a%s, lattice_b%s)', i, i - 1, i - 1);
	END LOOP;
	CREATE TABLE lattice_leaf (PRIMARY KEY (id)) INHERITS (lattice_a25, lattice_b25);
END $$;
RESET client_min_messages;
SELECT outcome FROM versioned_upsert('lattice_leaf', '{"id": 1, "ver": 1}');
SELECT wait_notified(43);
ALTER TABLE lattice_b0 ENABLE ROW LEVEL SECURITY;
SELECT outcome FROM versioned_upsert('lattice_leaf', '{"id": 1, "ver": 2}');
SELECT wait_notified(44);
SELECT payload::jsonb ->> 'table' AS "table", payload::jsonb -> 'data' AS data,
       payload::jsonb -> 'data_omitted' AS data_omitted
  FROM receive() ORDER BY n;
SET client_min_messages = warning;
DROP TABLE lattice_a0, lattice_b0 CASCADE;
RESET client_min_messages;

-- "table" quotes each name where SQL needs it: read back with ::regclass, it
-- names the table of the event, not another whose name folds the same way.
CREATE SCHEMA "Pub.lish";
CREATE TABLE "Pub.lish"."Mixed" (id int PRIMARY KEY, ver rowseq NOT NULL);
CREATE TABLE "Pub.lish".mixed (id int PRIMARY KEY, ver rowseq NOT NULL);
SELECT outcome FROM versioned_upsert('"Pub.lish"."Mixed"', '{"id": 1, "ver": 1}');
SELECT outcome FROM versioned_upsert('"Pub.lish".mixed', '{"id": 1, "ver": 1}');
SELECT wait_notified(46);
SELECT r.payload::jsonb ->> 'table' AS "table",
       (r.payload::jsonb ->> 'table')::regclass = e.target AS names_its_table
  FROM receive() r JOIN event_log e ON e.event_id = (r.payload::jsonb ->> 'event_id')::bigint
 ORDER BY r.n;
DROP TABLE "Pub.lish"."Mixed", "Pub.lish".mixed;
DROP SCHEMA "Pub.lish";

-- Every seq notified exactly once, gapless from 1.
SELECT count(*) AS notifications, count(DISTINCT payload::jsonb -> 'seq') AS distinct_seqs,
       min((payload::jsonb ->> 'seq')::bigint) AS first, max((payload::jsonb ->> 'seq')::bigint) AS last
  FROM received;

SELECT dblink_disconnect('listener');
SELECT dblink_disconnect('other');
-- A dropped table's channel is forgotten with it, whoever drops it, and
-- however (DROP TABLE, DROP SCHEMA ... CASCADE), in replica mode too.
CREATE TABLE short_lived (id int PRIMARY KEY, ver rowseq NOT NULL);
CREATE TABLE replica_dropped (id int PRIMARY KEY, ver rowseq NOT NULL);
ALTER TABLE short_lived OWNER TO publish_stranger;
CREATE SCHEMA doomed;
CREATE TABLE doomed.t (id int PRIMARY KEY, ver rowseq NOT NULL);
SET ROLE publish_stranger;
SELECT configure('short_lived', 'brief');
RESET ROLE;
SELECT configure('doomed.t', 'doomed_events');
SELECT configure('replica_dropped', 'replica_events');
SELECT channel FROM target_settings WHERE channel IN ('brief', 'doomed_events', 'replica_events') ORDER BY 1;
SET ROLE publish_stranger;
DROP TABLE short_lived;
RESET ROLE;
DROP SCHEMA doomed CASCADE;
SET session_replication_role = replica;
DROP TABLE replica_dropped;
RESET session_replication_role;
SELECT count(*) AS forgotten_left FROM target_settings WHERE channel IN ('brief', 'doomed_events', 'replica_events');
-- (the event trigger's function is not for calling)
SELECT _forget_dropped_targets();

REVOKE pg_monitor FROM publish_stranger;
REVOKE EXECUTE ON FUNCTION configure(regclass, text) FROM publish_stranger;
DROP ROLE publish_stranger;

-- purge_events() frees each batch's result before the next batch: a trigger
-- on event_log (it runs as the owner, with pg_catalog alone on the path)
-- counts the SPI result tables alive in this backend at every batch.
-- 5,000 stale events, never queued, make five batches of 1,000.
CREATE TABLE purge_stats (tables int);
CREATE TABLE purged_kind (id int PRIMARY KEY, ver rowseq NOT NULL);
INSERT INTO purged_kind VALUES (1, 100);
SELECT count(*) FILTER (WHERE outcome = 'stale') AS stale
  FROM versioned_upsert_batch('purged_kind',
		(SELECT jsonb_agg(jsonb_build_object('id', 1, 'ver', 1)) FROM generate_series(1, 5000)));
CREATE FUNCTION count_result_tables() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO publish.purge_stats
		SELECT count(*) FROM pg_catalog.pg_backend_memory_contexts WHERE name = 'SPI TupTable';
	RETURN NULL;
END $$;
CREATE TRIGGER count_result_tables AFTER DELETE ON event_log
	FOR EACH STATEMENT EXECUTE FUNCTION count_result_tables();
SELECT purge_events('0 s') >= 5000 AS purged_all;
SELECT count(*) >= 5 AS batches, max(tables) AS most_tables_alive FROM purge_stats;
DROP TRIGGER count_result_tables ON event_log;
DROP FUNCTION count_result_tables();
DROP TABLE purge_stats, purged_kind;

-- purge_events() reads each event's publication row through the index on
-- event_id, one probe per event, whatever the statistics say.  A purge that
-- emptied publication, then VACUUM ANALYZE, leave it recorded as one row in
-- many pages; after a burst of events, a join planned on that scanned the
-- whole index once per event purged (4.5 million index entries read here
-- for 3,000 events, against about 12,000 by probes).
CREATE TABLE purge_burst (id int PRIMARY KEY, ver rowseq NOT NULL);
CREATE FUNCTION burst(ver int) RETURNS bigint LANGUAGE sql AS $$
	SELECT count(*) FROM versioned_upsert_batch('purge_burst',
		(SELECT jsonb_agg(jsonb_build_object('id', i, 'ver', ver)) FROM generate_series(1, 3000) i))
$$;
SELECT last_seq AS seq FROM publisher_status \gset
SELECT burst(1) AS events;
SELECT wait_notified(:seq + 3000) AS published;
SELECT purge_events('0 s') >= 3000 AS purged_all;
VACUUM ANALYZE upsert_order.publication, upsert_order.event_log;
SELECT reltuples < 10 AS recorded_as_nearly_empty FROM pg_class WHERE oid = 'upsert_order.publication'::regclass;
SELECT burst(2) AS events;
SELECT wait_notified(:seq + 6000) AS published;
BEGIN;
SELECT purge_events('0 s') >= 3000 AS purged_all;
SELECT pg_stat_get_xact_tuples_returned('upsert_order.publication_event_id_key'::regclass)
	< 10 * 3000 AS a_few_index_entries_per_event;
COMMIT;
DROP FUNCTION burst(int);
DROP TABLE purge_burst;

-- The worker, a superuser, writes publication as the table's owner, and
-- deletes expired events (upsert_order.event_retention) as event_log's, in
-- a restricted context: triggers that the owner of the extension's tables
-- added run as that owner.
SET client_min_messages = warning;
DROP ROLE IF EXISTS publish_table_owner;
RESET client_min_messages;
CREATE ROLE publish_table_owner;
SELECT current_user AS superuser \gset
CREATE TABLE trigger_runs (tg_table name, tg_op text, runner name, runner_is_superuser boolean);
GRANT INSERT ON trigger_runs TO publish_table_owner;
CREATE FUNCTION record_runner() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO publish.trigger_runs
		SELECT TG_TABLE_NAME, TG_OP, current_user, rolsuper
		  FROM pg_catalog.pg_roles WHERE rolname = current_user;
	RETURN NULL;
END $$;
CREATE FUNCTION wait_purged(t regclass) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
	deadline timestamptz := clock_timestamp() + interval '30 s';
BEGIN
	WHILE EXISTS (SELECT FROM upsert_order.event_log e WHERE e.target = t) LOOP
		IF clock_timestamp() > deadline THEN
			RETURN false;
		END IF;
		PERFORM pg_sleep(0.01);
	END LOOP;
	RETURN true;
END $$;
CREATE TABLE owned (id int PRIMARY KEY, ver rowseq NOT NULL);
-- While a superuser owns the tables, its deferred trigger on publication
-- runs when the worker commits: the restricted context, which would refuse
-- it, is for other owners only.
CREATE CONSTRAINT TRIGGER record_runner AFTER INSERT ON publication
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION record_runner();
SELECT last_seq AS seq FROM publisher_status \gset
SELECT outcome FROM versioned_upsert('owned', '{"id": 0, "ver": 1}');
SELECT wait_notified(:seq + 1) AS published;
SELECT tg_table, tg_op, runner_is_superuser FROM trigger_runs;
DROP TRIGGER record_runner ON publication;
DELETE FROM trigger_runs;
ALTER TABLE publication OWNER TO publish_table_owner;
ALTER TABLE event_log OWNER TO publish_table_owner;
ALTER TABLE outbox OWNER TO publish_table_owner;
CREATE TRIGGER record_runner AFTER INSERT ON publication
	FOR EACH ROW EXECUTE FUNCTION record_runner();
CREATE TRIGGER record_runner AFTER DELETE ON event_log
	FOR EACH ROW EXECUTE FUNCTION record_runner();
SELECT last_seq AS seq FROM publisher_status \gset
SELECT outcome FROM versioned_upsert('owned', '{"id": 1, "ver": 1}');
SELECT wait_notified(:seq + 1) AS published;
ALTER SYSTEM SET upsert_order.event_retention = '1s';
SELECT pg_reload_conf();
SELECT wait_purged('owned') AS purged;
ALTER SYSTEM RESET upsert_order.event_retention;
SELECT pg_reload_conf();
SELECT DISTINCT tg_table, tg_op, runner, runner_is_superuser FROM trigger_runs ORDER BY 1;
-- Row level security that the owner forces on outbox does not hide from a
-- purge the events still waiting there (held here by a bad channel).
ALTER TABLE outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE outbox FORCE ROW LEVEL SECURITY;
CREATE TABLE stalled (id int PRIMARY KEY, ver rowseq NOT NULL);
INSERT INTO target_settings (target, channel) VALUES ('stalled', '');
SELECT last_seq AS seq FROM publisher_status \gset
SELECT outcome FROM versioned_upsert('stalled', '{"id": 1, "ver": 1}');
SELECT wait_for_error('channel name cannot be empty');
SELECT purge_events('0 s') >= 0 AS purged;
SELECT count(*) AS still_waiting
  FROM outbox o JOIN event_log e USING (event_id) WHERE e.target = 'stalled'::regclass;
DELETE FROM target_settings WHERE target = 'stalled'::regclass;
SELECT wait_notified(:seq + 1) AS published;
DROP TABLE stalled;
ALTER TABLE outbox NO FORCE ROW LEVEL SECURITY;
ALTER TABLE outbox DISABLE ROW LEVEL SECURITY;
DROP TRIGGER record_runner ON publication;
DROP TRIGGER record_runner ON event_log;
ALTER TABLE publication OWNER TO :"superuser";
ALTER TABLE event_log OWNER TO :"superuser";
ALTER TABLE outbox OWNER TO :"superuser";
DROP TABLE owned, trigger_runs;
DROP FUNCTION record_runner(), wait_purged(regclass);
DROP ROLE publish_table_owner;

-- Columns of publication and target_settings that the superuser drops and
-- adds again move to the end of their tables.  The worker keeps where the
-- columns are from one batch to the next, and looks again once they
-- change: it writes and reads them where they now are.  (They are left
-- nullable, and the channels before empty: nothing after this reads them,
-- and every suite creates the extension afresh.)
ALTER TABLE publication DROP COLUMN channel, ADD COLUMN channel text;
ALTER TABLE target_settings DROP COLUMN channel, ADD COLUMN channel text;
CREATE TABLE moved (id int PRIMARY KEY, ver rowseq NOT NULL);
SELECT configure('moved', 'moved_events');
SELECT last_seq AS seq FROM publisher_status \gset
SELECT outcome FROM versioned_upsert('moved', '{"id": 1, "ver": 1}');
SELECT wait_notified(:seq + 1) AS published;
SELECT p.seq = :seq + 1 AS next_seq, p.channel, p.payload::jsonb -> 'key' AS key
  FROM publication p ORDER BY p.seq DESC LIMIT 1;
DROP TABLE moved;
-- A column altered to another type stops the worker with an error until it
-- is changed back: it reads and writes the columns below SQL, as the types
-- the extension gave them.
CREATE TABLE retyped (id int PRIMARY KEY, ver rowseq NOT NULL);
ALTER TABLE target_settings ALTER COLUMN publish_data TYPE text;
SELECT outcome FROM versioned_upsert('retyped', '{"id": 1, "ver": 1}');
SELECT wait_for_error();
SELECT last_seq = :seq + 1 AS nothing_published FROM publisher_status;
ALTER TABLE target_settings ALTER COLUMN publish_data TYPE boolean USING publish_data::boolean;
SELECT wait_notified(:seq + 2) AS published;
SELECT payload::jsonb -> 'data' AS data FROM publication ORDER BY seq DESC LIMIT 1;
DROP TABLE retyped;
-- An event whose column was emptied by hand, once its NOT NULL was dropped,
-- stops the worker with an error that names the column, until the value is
-- back; the event is then published with it.
CREATE TABLE emptied (id int PRIMARY KEY, ver rowseq NOT NULL);
SELECT last_seq AS seq FROM publisher_status \gset
ALTER TABLE event_log ALTER COLUMN key DROP NOT NULL;
BEGIN;
SELECT event_id AS emptied_event FROM versioned_upsert('emptied', '{"id": 1, "ver": 1}') \gset
UPDATE event_log SET key = NULL WHERE event_id = :emptied_event;
COMMIT;
SELECT wait_for_error('column "key" of an event in %');
SELECT last_seq = :seq AS nothing_published FROM publisher_status;
UPDATE event_log SET key = '{"id": 1}' WHERE event_id = :emptied_event;
ALTER TABLE event_log ALTER COLUMN key SET NOT NULL;
SELECT wait_notified(:seq + 1) AS published;
SELECT payload::jsonb -> 'key' AS key FROM publication ORDER BY seq DESC LIMIT 1;
DROP TABLE emptied;
-- The worker reads its tables by their primary keys, each of which must
-- still start with the column it expects; and a seq written by hand at the
-- largest bigint, which it reads back after a failed batch, stops it
-- instead of numbering on from below zero, as does a last seq below 1
-- (left when every row it wrote is deleted by hand).
CREATE TABLE rekeyed (id int PRIMARY KEY, ver rowseq NOT NULL);
SELECT last_seq AS seq FROM publisher_status \gset
ALTER TABLE outbox ADD COLUMN k bigint GENERATED ALWAYS AS (event_id + 1) STORED;
ALTER TABLE outbox DROP CONSTRAINT outbox_pkey, ADD PRIMARY KEY (k);
SELECT outcome FROM versioned_upsert('rekeyed', '{"id": 1, "ver": 1}');
SELECT wait_for_error('the primary key of %');
ALTER TABLE outbox DROP CONSTRAINT outbox_pkey;
SELECT wait_for_error('% has no primary key');
ALTER TABLE outbox ADD CONSTRAINT outbox_pkey PRIMARY KEY (k);
INSERT INTO publication (seq, event_id, channel, payload) VALUES (9223372036854775807, NULL, 'x', '{}');
ALTER TABLE outbox DROP CONSTRAINT outbox_pkey, ADD PRIMARY KEY (event_id);
ALTER TABLE outbox DROP COLUMN k;
SELECT wait_for_error('table "upsert_order.publication" has reached %');
CREATE TEMP TABLE publication_saved AS
  SELECT * FROM ONLY publication WHERE seq < 9223372036854775807;
-- (Each swap in one transaction: the worker retries meanwhile, and an empty
-- publication would let it number on from 1.)
BEGIN;
DELETE FROM publication;
INSERT INTO publication (seq, event_id, channel, payload) VALUES (0, NULL, 'x', '{}');
COMMIT;
SELECT wait_for_error('table "upsert_order.publication" holds seq 0');
BEGIN;
DELETE FROM publication;
INSERT INTO publication SELECT * FROM publication_saved;
COMMIT;
DROP TABLE publication_saved;
SELECT wait_notified(:seq + 1) AS published;
SELECT seq = :seq + 1 AS next_seq, payload::jsonb -> 'key' AS key FROM publication ORDER BY seq DESC LIMIT 1;
DROP TABLE rekeyed;
-- A table inheriting from publication is none of the extension's: neither
-- events_since() nor a purge (which keeps the last publication row) reads
-- its rows.
SELECT max(seq) AS last FROM ONLY publication \gset
CREATE TABLE publication_child () INHERITS (publication);
INSERT INTO publication_child (seq, event_id, channel, payload) VALUES (:last + 1000, NULL, 'x', '{}');
SELECT count(*) AS beyond_last FROM events_since(:last - 1) WHERE seq > :last;
SELECT purge_events('0 s') >= 0 AS purged;
SELECT count(*) AS last_kept FROM ONLY publication WHERE seq = :last;
DROP TABLE publication_child;
