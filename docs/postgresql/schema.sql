-- docs/postgresql/schema.sql: splitmilter's tables in PostgreSQL (11 or later; tested with 15).
--
-- Run once, as the role that is to own the tables (no superuser is needed: any role that may
-- CREATE in the database), in the database splitmilter reads:
--
--     psql -v ON_ERROR_STOP=1 -d mail -f schema.sql
--
-- What splitmilter reads
--   splitmilter.list_members  user lists: a rule file names list L as `pgsql:L` wherever it takes a
--                             user list (only, except, known, allow-any); the list holds every
--                             `name` of the rows whose `list` is L.
--   splitmilter.user_rules    per-user rules: a rule file's `user pgsql:L` reads each row of
--                             list L as the rule-file line `user NAME ACTION TARGETS` (ACTION is
--                             copy or rewrite). There are deliberately no CHECK constraints on the
--                             content: splitmilter checks every row exactly as it checks a rule
--                             file, and reports a bad row (list, name, action) with its error.
--   splitmilter.changes       the change log, below. splitmilter.change_counter holds the last id.
--
-- The change log
--   Triggers on list_members and user_rules append one row to splitmilter.changes for every row
--   a statement writes, so that a reader that has read everything once can follow the changes
--   instead of reading everything again:
--     kind 'member' (list_members) or 'rule' (user_rules);
--     op 'set':    the row now exists with these values (list, name; and action, targets);
--     op 'delete': the row with this key (list, name; and action) no longer exists; targets is NULL;
--     kind 'all', op 'reload': a TRUNCATE of either table; every other column is NULL; read
--                  everything again.
--   An UPDATE logs a 'delete' of every old row, then a 'set' of every new row (so an UPDATE that
--   changes or swaps keys replays right). INSERT ... ON CONFLICT DO UPDATE logs as an INSERT of the
--   new keys and an UPDATE of the existing ones.
--
--   Ids are dense (1, 2, 3, ... with no gap, even when a transaction or a savepoint rolls back: the
--   counter rolls back with it) and in commit order: every writing statement first locks the one
--   row of splitmilter.change_counter (a BEFORE STATEMENT trigger), and its AFTER STATEMENT
--   trigger takes its ids with one `UPDATE ... SET last = last + n`, however many rows the
--   statement wrote (a million-row INSERT costs one counter update). The row lock is held until
--   the transaction ends, so a second writer waits (before it writes any row, so two writers
--   cannot deadlock on the counter) and takes higher ids after the first committed. Hence a reader
--   that sees id N sees every id below N that will ever exist; a later commit only adds higher ids.
--   Consequences for writers: one writing transaction at a time (keep them short); under
--   REPEATABLE READ or SERIALIZABLE a writer that meets a concurrent commit fails with
--   "could not serialize access" and must retry (READ COMMITTED, the default, waits instead).
--   Do not write one key twice in one statement through data-modifying WITH queries (their
--   statement triggers may fire out of order).
--
--   Every writing statement also runs pg_notify('splitmilter', ''): a listener (LISTEN splitmilter)
--   is woken once per committed transaction (PostgreSQL folds identical notifications of one
--   transaction; a rolled back transaction notifies nobody) and then reads the changes above the
--   last id it saw.
--
--   Pruning is allowed, e.g. daily:
--       DELETE FROM splitmilter.changes WHERE at < now() - interval '7 days';
--   A reader that misses ids it has not seen (they were pruned) reads everything again.
--   `at` is the writing transaction's start time.
--
-- Privileges (the role names are yours to choose)
--   splitmilter reads with a role that may only read:
--       CREATE ROLE splitmilter_reader LOGIN PASSWORD '...';
--       GRANT USAGE ON SCHEMA splitmilter TO splitmilter_reader;
--       GRANT SELECT ON ALL TABLES IN SCHEMA splitmilter TO splitmilter_reader;
--   A role that edits lists and rules needs only INSERT, UPDATE, DELETE (and TRUNCATE) on
--   list_members and user_rules: the trigger functions run as the owner (SECURITY DEFINER) and
--   write the counter and the change log themselves, so writers cannot forge the log.

BEGIN;

CREATE SCHEMA splitmilter;

-- The key columns sort by their bytes (COLLATE "C"), as the daemon sorts its rows: the primary
-- keys' indexes then hand the daemon its start-up read already in order.
CREATE TABLE splitmilter.list_members (
    list text COLLATE "C" NOT NULL,
    name text COLLATE "C" NOT NULL,
    PRIMARY KEY (list, name)
);

CREATE TABLE splitmilter.user_rules (
    list    text COLLATE "C" NOT NULL,
    name    text COLLATE "C" NOT NULL,
    action  text COLLATE "C" NOT NULL,
    targets text NOT NULL,
    PRIMARY KEY (list, name, action)
);

-- Exactly one row: the last id taken (0: none yet). The unique index on a constant refuses a
-- second row.
CREATE TABLE splitmilter.change_counter (
    last bigint NOT NULL
);
CREATE UNIQUE INDEX change_counter_one_row ON splitmilter.change_counter ((true));
INSERT INTO splitmilter.change_counter (last) VALUES (0);

CREATE TABLE splitmilter.changes (
    id      bigint PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    kind    text NOT NULL,
    op      text NOT NULL,
    list    text,
    name    text,
    action  text,
    targets text
);

-- BEFORE each writing statement: take the counter's row lock (held until the transaction ends),
-- so that writers queue here before they touch a row.
CREATE FUNCTION splitmilter.lock_counter() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM 1 FROM splitmilter.change_counter FOR UPDATE;
    RETURN NULL;
END
$$;

-- AFTER each INSERT, UPDATE, DELETE of either table: 'delete' for every old row, then 'set' for
-- every new row, with ids from one counter update. A 'delete' carries the key only.
CREATE FUNCTION splitmilter.log_changes() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n_old bigint := 0;
    n_new bigint := 0;
    base  bigint;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        SELECT count(*) INTO n_old FROM old_rows;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        SELECT count(*) INTO n_new FROM new_rows;
    END IF;
    IF n_old + n_new = 0 THEN
        RETURN NULL;
    END IF;
    UPDATE splitmilter.change_counter SET last = last + n_old + n_new
        RETURNING last - n_old - n_new INTO STRICT base;
    IF TG_TABLE_NAME = 'list_members' THEN
        IF n_old > 0 THEN
            INSERT INTO splitmilter.changes (id, kind, op, list, name)
                SELECT base + row_number() OVER (), 'member', 'delete', o.list, o.name
                FROM old_rows o;
        END IF;
        IF n_new > 0 THEN
            INSERT INTO splitmilter.changes (id, kind, op, list, name)
                SELECT base + n_old + row_number() OVER (), 'member', 'set', r.list, r.name
                FROM new_rows r;
        END IF;
    ELSE
        IF n_old > 0 THEN
            INSERT INTO splitmilter.changes (id, kind, op, list, name, action)
                SELECT base + row_number() OVER (), 'rule', 'delete', o.list, o.name, o.action
                FROM old_rows o;
        END IF;
        IF n_new > 0 THEN
            INSERT INTO splitmilter.changes (id, kind, op, list, name, action, targets)
                SELECT base + n_old + row_number() OVER (), 'rule', 'set', r.list, r.name,
                       r.action, r.targets
                FROM new_rows r;
        END IF;
    END IF;
    PERFORM pg_notify('splitmilter', '');
    RETURN NULL;
END
$$;

-- AFTER a TRUNCATE of either table: one 'all' 'reload' row.
CREATE FUNCTION splitmilter.log_reload() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    new_id bigint;
BEGIN
    UPDATE splitmilter.change_counter SET last = last + 1 RETURNING last INTO STRICT new_id;
    INSERT INTO splitmilter.changes (id, kind, op) VALUES (new_id, 'all', 'reload');
    PERFORM pg_notify('splitmilter', '');
    RETURN NULL;
END
$$;

-- The same triggers on both tables; transition tables need one trigger per event.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['list_members', 'user_rules'] LOOP
        EXECUTE format('CREATE TRIGGER lock_counter
            BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON splitmilter.%I
            FOR EACH STATEMENT EXECUTE FUNCTION splitmilter.lock_counter()', t);
        EXECUTE format('CREATE TRIGGER log_insert
            AFTER INSERT ON splitmilter.%I REFERENCING NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION splitmilter.log_changes()', t);
        EXECUTE format('CREATE TRIGGER log_update
            AFTER UPDATE ON splitmilter.%I REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION splitmilter.log_changes()', t);
        EXECUTE format('CREATE TRIGGER log_delete
            AFTER DELETE ON splitmilter.%I REFERENCING OLD TABLE AS old_rows
            FOR EACH STATEMENT EXECUTE FUNCTION splitmilter.log_changes()', t);
        EXECUTE format('CREATE TRIGGER log_truncate
            AFTER TRUNCATE ON splitmilter.%I
            FOR EACH STATEMENT EXECUTE FUNCTION splitmilter.log_reload()', t);
    END LOOP;
END
$$;

COMMIT;
