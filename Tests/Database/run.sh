#!/usr/bin/env bash
# Tests/Database/run.sh: prove docs/postgresql/schema.sql (splitmilter's PostgreSQL tables and
# their change log) with real SQL on a private PostgreSQL cluster (scripts/lib/pgcluster.sh).
# Needs the PostgreSQL server binaries (initdb) and psql; runs as root (the server then runs as
# the postgres user) or as another user. The cluster listens on 127.0.0.1:PG_PORT (default: the
# first free port from 25432) and is stopped and removed on exit (KEEP=1 keeps the directory).
#
# What it proves, one check each (more or less):
#   - single INSERT, UPDATE, DELETE of list_members and user_rules log the right change rows with
#     ids 1, 2, 3, ...; an UPDATE logs 'delete' of the old row, then 'set' of the new one, also
#     when it changes the key, and for many rows all deletes come before all sets;
#   - a statement that writes no row logs nothing and leaves the counter alone;
#   - a rolled back transaction, a rolled back savepoint and a failed statement leave no gap;
#   - INSERT ... ON CONFLICT DO UPDATE logs set, and delete-then-set for the existing key;
#   - two concurrent writers: the second waits for the first (on the counter) and, committing
#     later, gets the higher ids; two writers that then insert the same key do not deadlock (the
#     later one gets the duplicate key error); a REPEATABLE READ writer that meets a concurrent
#     commit fails with a serialization error instead of taking stale ids;
#   - replaying the log (last change per key wins) gives exactly the tables;
#   - a LISTEN session is notified once for a transaction that wrote many rows to both tables in
#     several statements, and not at all for a rolled back one;
#   - splitmilter_reader (TCP, password PG_READER_PASSWORD) may SELECT every table and nothing
#     else; a wrong password, and the admin over TCP (no password), are refused;
#   - a 1,000,000-row INSERT logs 1,000,000 change rows with one counter update (the time it took
#     is printed, not checked);
#   - over the whole run ids are dense from 1 and in commit order (pg_xact_commit_timestamp);
#   - TRUNCATE logs one 'all' 'reload' row; a restart keeps the counter; after pruning the log,
#     ids go on from the counter (a reader sees the gap);
#   - last, on a cluster of its own that serves a certificate, the database settings' TLS
#     through the real daemon (Tests/Database/tls.sh; needs openssl and the daemon binary,
#     SPLITMILTER or `swift build`'s). `run.sh tls` runs only these.
#
# The last line is "database: N passed, M failed"; exit 1 if M > 0.

set -u

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd -- "$HERE/../.." && pwd)
# shellcheck source=scripts/lib/pgcluster.sh
source "$REPO/scripts/lib/pgcluster.sh"
# shellcheck source=Tests/Database/tls.sh
source "$HERE/tls.sh"
PG_TAG=database
export PG_READER_PASSWORD=${PG_READER_PASSWORD:-reader-secret}

say() { printf '%s\n' "$*"; }

# since START: the seconds since START (an $EPOCHREALTIME), with two decimals.
since() {
    local us=$((${EPOCHREALTIME/./} - ${1/./}))
    printf '%d.%02d' $((us / 1000000)) $((us % 1000000 / 10000))
}

PASSED=0
FAILED=0
declare -a BG_PIDS=()
ROOT=
D=
PORT=

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    local pid dir
    for pid in "${BG_PIDS[@]}"; do
        kill "$pid" 2>/dev/null
    done
    for pid in "${TLS_PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null
    done
    for dir in "$D" "$TLS_D"; do
        [[ -z $dir ]] || pg_cluster_stop "$dir"
    done
    if [[ -n $ROOT ]]; then
        if [[ ${KEEP:-0} == 1 ]]; then
            say "database: kept $ROOT"
        else
            rm -rf -- "$ROOT"
        fi
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

pass() {
    PASSED=$((PASSED + 1))
    say "ok: $1"
}

fail() {
    FAILED=$((FAILED + 1))
    say "FAIL: $1"
}

# check NAME EXPECTED ACTUAL
check() {
    if [[ $2 == "$3" ]]; then
        pass "$1"
    else
        fail "$1"
        say "    expected: $2"
        say "    got:      $3"
    fi
}

# check_match NAME PATTERN TEXT: TEXT matches the extended regular expression PATTERN.
check_match() {
    if [[ $3 =~ $2 ]]; then
        pass "$1"
    else
        fail "$1"
        say "    expected to match: $2"
        say "    got: $3"
    fi
}

finish() {
    say "database: $PASSED passed, $FAILED failed"
    ((FAILED == 0))
    exit
}

# q SQL...: as splitmilter_admin (pgcluster.sh); without SQL, the statements on stdin (one
# session, so BEGIN ... COMMIT spans them).
q() { pg_admin_sql "$D" "$PORT" "$@" 2>&1; }

# reader PASSWORD SQL: as splitmilter_reader over TCP.
reader() {
    local psql=psql
    [[ -x ${PG_BINDIR:-}/psql ]] && psql=$PG_BINDIR/psql
    PGPASSWORD=$1 PGCONNECT_TIMEOUT=10 "$psql" -X -h 127.0.0.1 -p "$PORT" -U splitmilter_reader \
        -d mail -v ON_ERROR_STOP=1 -qAt -c "$2" </dev/null 2>&1
}

last_id() { q 'SELECT last FROM splitmilter.change_counter'; }

# log_since ID: the change rows above ID, "id kind op list name action targets" (NULL: -), comma
# separated.
log_since() {
    q "SELECT coalesce(string_agg(concat_ws(' ', id, kind, op, coalesce(list, '-'),
           coalesce(name, '-'), coalesce(action, '-'), coalesce(targets, '-')), ', ' ORDER BY id), '')
       FROM splitmilter.changes WHERE id > $1"
}

# wait_sql TIMEOUT SQL: poll SQL (as the admin) every 0.1 s until it prints t.
wait_sql() {
    local deadline=$((SECONDS + $1))
    while ((SECONDS < deadline)); do
        [[ $(q "$2") == t ]] && return 0
        sleep 0.1
    done
    return 1
}

# session NAME FILE: run FILE's statements as the admin in the background (application_name
# NAME), output in $ROOT/NAME.out; the pid goes to BG_PIDS.
session() {
    PGAPPNAME=$1 pg_admin_sql "$D" "$PORT" <"$2" >"$ROOT/$1.out" 2>&1 &
    BG_PIDS+=($!)
}

# in_sleep NAME: true when session NAME runs pg_sleep.
in_sleep() {
    printf '%s' "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = '$1'
        AND state = 'active' AND query LIKE '%pg_sleep%')"
}

# waits_for_lock NAME: true when session NAME waits for a heavyweight lock.
waits_for_lock() {
    printf '%s' "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = '$1'
        AND wait_event_type = 'Lock')"
}

# wait_bg: wait for the background sessions (at most 60 s each, then kill).
wait_bg() {
    local pid deadline
    for pid in "${BG_PIDS[@]}"; do
        deadline=$((SECONDS + 60))
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
            sleep 0.1
        done
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    BG_PIDS=()
}

# ---------------------------------------------------------------------------------------------

command -v psql >/dev/null 2>&1 || pg_find_bindir || {
    say "database: 0 passed, 1 failed (no PostgreSQL)"
    exit 1
}
ROOT=$(mktemp -d "${TMPDIR:-/tmp}/splitmilter-db.XXXXXX") || exit 1
chmod 755 "$ROOT"
if [[ ${1:-} == tls ]]; then
    tls_checks
    finish
fi
PORT=${PG_PORT:-$(pg_free_port 25432)} || exit 1
started=$EPOCHREALTIME
D=$ROOT/pg
if ! pg_cluster_start "$D" "$PORT"; then
    fail "pg_cluster_start $D $PORT"
    finish
fi
pass "pg_cluster_start: a cluster on 127.0.0.1:$PORT in $(since "$started") s"

# --- single statements ------------------------------------------------------------------------

check "a new counter is 0 and the log empty" "0 0" "$(last_id) $(q 'SELECT count(*) FROM splitmilter.changes')"

q "INSERT INTO splitmilter.list_members VALUES ('staff', 'alice')" >/dev/null
check "INSERT member: id 1, set" "1 member set staff alice - -" "$(log_since 0)"

q "INSERT INTO splitmilter.user_rules VALUES ('rules', 'bob', 'copy', 'bob@copy.example')" >/dev/null
check "INSERT rule: id 2, set" "2 rule set rules bob copy bob@copy.example" "$(log_since 1)"

q "UPDATE splitmilter.user_rules SET targets = 'bob@new.example' WHERE name = 'bob'" >/dev/null
check "UPDATE rule: delete (key only), then set" \
    "3 rule delete rules bob copy -, 4 rule set rules bob copy bob@new.example" "$(log_since 2)"

q "UPDATE splitmilter.list_members SET name = 'alicia' WHERE name = 'alice'" >/dev/null
check "UPDATE of the key: delete old key, then set new key" \
    "5 member delete staff alice - -, 6 member set staff alicia - -" "$(log_since 4)"

q "DELETE FROM splitmilter.list_members WHERE name = 'alicia'" >/dev/null
check "DELETE member: delete" "7 member delete staff alicia - -" "$(log_since 6)"

q "DELETE FROM splitmilter.user_rules WHERE name = 'bob'" >/dev/null
check "DELETE rule: delete" "8 rule delete rules bob copy -" "$(log_since 7)"

q "INSERT INTO splitmilter.list_members VALUES ('move', 'x'), ('move', 'y'), ('move', 'z')" >/dev/null
q "UPDATE splitmilter.list_members SET list = 'moved' WHERE list = 'move'" >/dev/null
check "UPDATE of 3 keys: 3 deletes, then 3 sets" \
    "12 delete move, 13 delete move, 14 delete move, 15 set moved, 16 set moved, 17 set moved" \
    "$(q "SELECT string_agg(concat_ws(' ', id, op, list), ', ' ORDER BY id)
          FROM splitmilter.changes WHERE id > 11")"

out=$(q <<'EOF'
BEGIN;
UPDATE splitmilter.list_members SET name = 'never' WHERE false;
DELETE FROM splitmilter.user_rules WHERE false;
INSERT INTO splitmilter.list_members SELECT 'none', 'none' WHERE false;
SELECT coalesce(n_tup_upd, 0) FROM pg_stat_xact_user_tables
    WHERE relid = 'splitmilter.change_counter'::regclass;
COMMIT;
EOF
)
check "statements that write no row: no change row, no counter update" "0 17 17" \
    "$out $(last_id) $(q 'SELECT max(id) FROM splitmilter.changes')"

# --- no gaps ----------------------------------------------------------------------------------

q <<'EOF' >/dev/null
BEGIN;
INSERT INTO splitmilter.list_members VALUES ('gone', 'a'), ('gone', 'b');
UPDATE splitmilter.list_members SET name = 'c' WHERE list = 'moved' AND name = 'x';
ROLLBACK;
EOF
check "a rolled back transaction: counter and log unchanged" "17 " "$(last_id) $(log_since 17)"

out=$(q "INSERT INTO splitmilter.list_members VALUES ('moved', 'y')")
check_match "a failed statement (duplicate key) is refused" 'duplicate key' "$out"

q <<'EOF' >/dev/null
BEGIN;
INSERT INTO splitmilter.list_members VALUES ('sp', 'a');
SAVEPOINT s;
INSERT INTO splitmilter.list_members VALUES ('sp', 'b');
ROLLBACK TO SAVEPOINT s;
INSERT INTO splitmilter.list_members VALUES ('sp', 'c');
COMMIT;
EOF
check "after a rollback, a failed statement and a rolled back savepoint: ids go on at 18, 19" \
    "18 member set sp a - -, 19 member set sp c - -" "$(log_since 17)"

# --- upsert -----------------------------------------------------------------------------------

q "INSERT INTO splitmilter.user_rules VALUES ('up', 'old', 'rewrite', 'old@a.example')" >/dev/null
q "INSERT INTO splitmilter.user_rules VALUES ('up', 'old', 'rewrite', 'old@b.example'),
       ('up', 'new', 'copy', 'new@b.example')
   ON CONFLICT (list, name, action) DO UPDATE SET targets = excluded.targets" >/dev/null
check "INSERT ... ON CONFLICT DO UPDATE: set of the new key; delete then set of the existing key" \
    "new set new@b.example, old delete -, old set old@b.example" \
    "$(q "SELECT string_agg(concat_ws(' ', name, op, coalesce(targets, '-')), ', '
              ORDER BY name, id) FROM splitmilter.changes WHERE id > 20")"
check "the upsert took ids 21-23" "23 3" "$(last_id) $(q 'SELECT count(*) FROM splitmilter.changes WHERE id > 20')"

# --- concurrent writers -----------------------------------------------------------------------

cat >"$ROOT/writer_a.sql" <<'EOF'
BEGIN;
INSERT INTO splitmilter.list_members VALUES ('conc', 'a1');
SELECT pg_sleep(2);
INSERT INTO splitmilter.list_members VALUES ('conc', 'a2');
COMMIT;
EOF
cat >"$ROOT/writer_b.sql" <<'EOF'
INSERT INTO splitmilter.list_members VALUES ('conc', 'b1');
EOF
before=$(last_id)
session writer_a "$ROOT/writer_a.sql"
if wait_sql 20 "$(in_sleep writer_a)"; then
    session writer_b "$ROOT/writer_b.sql"
    if wait_sql 20 "$(waits_for_lock writer_b)"; then
        pass "a second writer waits while the first holds its transaction open"
    else
        fail "a second writer waits while the first holds its transaction open"
    fi
else
    fail "writer A started"
fi
wait_bg
check "the first writer's ids, then the later committer's" \
    "$((before + 1)) a1, $((before + 2)) a2, $((before + 3)) b1" \
    "$(q "SELECT string_agg(id || ' ' || name, ', ' ORDER BY id) FROM splitmilter.changes
          WHERE id > $before")"
check "the later committer committed later (commit timestamps)" t \
    "$(q "SELECT max(pg_xact_commit_timestamp(xmin)) FILTER (WHERE name LIKE 'a%')
               < min(pg_xact_commit_timestamp(xmin)) FILTER (WHERE name = 'b1')
          FROM splitmilter.changes WHERE id > $before")"
check "writer outputs are clean" "" "$(cat "$ROOT/writer_a.out" "$ROOT/writer_b.out" | grep -v '^$')"

# Without the counter lock taken before the first row, B would insert k2, wait for the counter at
# the end of its statement, and A's insert of k2 would wait for B: a deadlock.
cat >"$ROOT/writer_a.sql" <<'EOF'
BEGIN;
INSERT INTO splitmilter.user_rules VALUES ('dl', 'k1', 'copy', 'a@a.example');
SELECT pg_sleep(2);
INSERT INTO splitmilter.user_rules VALUES ('dl', 'k2', 'copy', 'a@a.example');
COMMIT;
EOF
cat >"$ROOT/writer_b.sql" <<'EOF'
INSERT INTO splitmilter.user_rules VALUES ('dl', 'k2', 'copy', 'b@b.example');
EOF
before=$(last_id)
session writer_a "$ROOT/writer_a.sql"
wait_sql 20 "$(in_sleep writer_a)" && session writer_b "$ROOT/writer_b.sql"
wait_sql 20 "$(waits_for_lock writer_b)"
wait_bg
check "two writers of one key: no deadlock, the first commits" \
    "$((before + 1)) k1 a@a.example, $((before + 2)) k2 a@a.example" \
    "$(q "SELECT string_agg(concat_ws(' ', id, name, targets), ', ' ORDER BY id)
          FROM splitmilter.changes WHERE id > $before")"
out=$(cat "$ROOT/writer_a.out" "$ROOT/writer_b.out" | tr '\n' ' ')
if [[ $out == *"duplicate key"* && $out != *deadlock* ]]; then
    pass "... and the second gets the duplicate key error, not a deadlock"
else
    fail "... and the second gets the duplicate key error, not a deadlock"
    say "    got: $out"
fi

cat >"$ROOT/writer_a.sql" <<'EOF'
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT count(*) FROM splitmilter.list_members;
SELECT pg_sleep(1);
INSERT INTO splitmilter.list_members VALUES ('rr', 'late');
COMMIT;
EOF
before=$(last_id)
session writer_a "$ROOT/writer_a.sql"
wait_sql 20 "$(in_sleep writer_a)"
q "INSERT INTO splitmilter.list_members VALUES ('rr', 'early')" >/dev/null
wait_bg
check_match "a REPEATABLE READ writer that meets a concurrent commit fails (retry)" \
    'could not serialize access' "$(cat "$ROOT/writer_a.out")"
check "... and leaves no id behind (the change rows above, then the counter)" \
    "$((before + 1)) early; $((before + 1))" \
    "$(q "SELECT string_agg(id || ' ' || name, ', ' ORDER BY id) FROM splitmilter.changes
          WHERE id > $before"); $(last_id)"

# --- replay -----------------------------------------------------------------------------------

check "replaying the log (last change per key wins) gives exactly both tables" "0 0" "$(q "
WITH m AS (SELECT DISTINCT ON (list, name) op, list, name FROM splitmilter.changes
           WHERE kind = 'member' ORDER BY list, name, id DESC),
     r AS (SELECT DISTINCT ON (list, name, action) op, list, name, action, targets
           FROM splitmilter.changes WHERE kind = 'rule' ORDER BY list, name, action, id DESC)
SELECT (SELECT count(*) FROM ((SELECT list, name FROM m WHERE op = 'set'
                               EXCEPT ALL SELECT list, name FROM splitmilter.list_members)
                              UNION ALL
                              (SELECT list, name FROM splitmilter.list_members
                               EXCEPT ALL SELECT list, name FROM m WHERE op = 'set')) x)
       || ' ' ||
       (SELECT count(*) FROM ((SELECT list, name, action, targets FROM r WHERE op = 'set'
                               EXCEPT ALL SELECT * FROM splitmilter.user_rules)
                              UNION ALL
                              (SELECT * FROM splitmilter.user_rules
                               EXCEPT ALL SELECT list, name, action, targets FROM r
                               WHERE op = 'set')) y)")"

# --- notifications ----------------------------------------------------------------------------

cat >"$ROOT/listener.sql" <<'EOF'
LISTEN splitmilter;
SELECT pg_sleep(3);
SELECT 'listened';
EOF
session listener "$ROOT/listener.sql"
if wait_sql 20 "$(in_sleep listener)"; then
    q <<'EOF' >/dev/null
BEGIN;
INSERT INTO splitmilter.list_members SELECT 'many', 'u' || g FROM generate_series(1, 500) g;
UPDATE splitmilter.list_members SET name = name || 'x' WHERE list = 'many' AND name LIKE 'u1%';
INSERT INTO splitmilter.user_rules
    SELECT 'many', 'u' || g, 'copy', 'u' || g || '@copy.example' FROM generate_series(1, 500) g;
DELETE FROM splitmilter.list_members WHERE list = 'many' AND name LIKE 'u2%';
COMMIT;
BEGIN;
INSERT INTO splitmilter.list_members VALUES ('many', 'rolled-back');
ROLLBACK;
EOF
else
    fail "the listener started"
fi
wait_bg
notes=$(grep -c 'Asynchronous notification "splitmilter"' "$ROOT/listener.out")
check "one notification for a committed transaction of 4 statements and 1,000+ rows, none for a rolled back one" \
    1 "$notes"
check "the notification has no payload" 0 "$(grep -c 'payload' "$ROOT/listener.out")"

# --- the reader -------------------------------------------------------------------------------

out=$(reader "$PG_READER_PASSWORD" "SELECT (SELECT count(*) FROM splitmilter.list_members) > 0,
    (SELECT count(*) FROM splitmilter.user_rules) > 0, (SELECT last FROM splitmilter.change_counter) > 0,
    (SELECT count(*) FROM splitmilter.changes) > 0")
check "the reader over TCP with PG_READER_PASSWORD may SELECT every table" "t|t|t|t" "$out"

refused=0
allowed=()
for table in list_members user_rules change_counter changes; do
    case $table in
        list_members) ins="INSERT INTO splitmilter.list_members VALUES ('r', 'r')" ;;
        user_rules) ins="INSERT INTO splitmilter.user_rules VALUES ('r', 'r', 'copy', 'r@r')" ;;
        change_counter) ins="INSERT INTO splitmilter.change_counter VALUES (0)" ;;
        changes) ins="INSERT INTO splitmilter.changes (id, kind, op) VALUES (0, 'all', 'reload')" ;;
    esac
    for sql in "$ins" "UPDATE splitmilter.$table SET list = list" "DELETE FROM splitmilter.$table" \
        "TRUNCATE splitmilter.$table"; do
        [[ $table == change_counter && $sql == UPDATE* ]] && sql="UPDATE splitmilter.change_counter SET last = last + 1"
        [[ $table == changes && $sql == UPDATE* ]] && sql="UPDATE splitmilter.changes SET op = op"
        out=$(reader "$PG_READER_PASSWORD" "$sql")
        if [[ $out == *"permission denied"* ]]; then
            refused=$((refused + 1))
        else
            allowed+=("$sql: $out")
        fi
    done
done
out=$(reader "$PG_READER_PASSWORD" "CREATE TABLE splitmilter.mine (a int)")
[[ $out == *"permission denied"* ]] && refused=$((refused + 1)) || allowed+=("CREATE TABLE: $out")
check "the reader's INSERT, UPDATE, DELETE, TRUNCATE of the 4 tables and CREATE are refused" \
    "17" "$refused${allowed[*]:+ allowed: ${allowed[*]}}"

check_match "the reader over TCP with a wrong password is refused" \
    'password authentication failed' "$(reader "wrong-$PG_READER_PASSWORD" 'SELECT 1')"
psql=psql
[[ -x ${PG_BINDIR:-}/psql ]] && psql=$PG_BINDIR/psql
check_match "the admin over TCP (no password) is refused" 'password authentication failed' \
    "$(PGPASSWORD=x "$psql" -X -h 127.0.0.1 -p "$PORT" -U splitmilter_admin -d mail -qAt \
        -c 'SELECT 1' </dev/null 2>&1)"
check "the reader changed nothing" "$(q 'SELECT last FROM splitmilter.change_counter')" \
    "$(reader "$PG_READER_PASSWORD" 'SELECT max(id) FROM splitmilter.changes')"

# --- a million rows ---------------------------------------------------------------------------

before=$(last_id)
started=$EPOCHREALTIME
out=$(q <<'EOF'
BEGIN;
INSERT INTO splitmilter.user_rules
    SELECT 'bulk', 'u' || g, 'copy', 'u' || g || '@copy.example' FROM generate_series(1, 1000000) g;
SELECT n_tup_upd FROM pg_stat_xact_user_tables WHERE relid = 'splitmilter.change_counter'::regclass;
COMMIT;
EOF
)
say "    a 1,000,000-row INSERT with its 1,000,000 change rows took $(since "$started") s"
check "a 1,000,000-row INSERT: one counter update" 1 "$out"
check "... 1,000,000 change rows with dense ids, all 'rule' 'set' of list bulk" \
    "1000000 $((before + 1)) $((before + 1000000)) 1000000 $((before + 1000000))" \
    "$(q "SELECT count(*), min(id), max(id), count(*) FILTER (WHERE kind = 'rule' AND op = 'set'
              AND list = 'bulk'), (SELECT last FROM splitmilter.change_counter)
          FROM splitmilter.changes WHERE id > $before" | tr '|' ' ')"

check "over the whole run: ids dense from 1 to the counter" "t" \
    "$(q "SELECT count(*) = max(id) AND min(id) = 1 AND max(id) = (SELECT last FROM
              splitmilter.change_counter) FROM splitmilter.changes")"
check "over the whole run: ids in commit order (commit timestamps never go back)" 0 \
    "$(q "SELECT count(*) FROM (SELECT pg_xact_commit_timestamp(xmin) AS at,
              lag(pg_xact_commit_timestamp(xmin)) OVER (ORDER BY id) AS before
              FROM splitmilter.changes) s WHERE at < before")"

# --- truncate, restart, pruning ---------------------------------------------------------------

before=$(last_id)
q 'TRUNCATE splitmilter.user_rules' >/dev/null
check "TRUNCATE: one 'all' 'reload' row" "$((before + 1)) all reload - - - -" "$(log_since "$before")"
check "... and the table is empty" 0 "$(q 'SELECT count(*) FROM splitmilter.user_rules')"

before=$(last_id)
if pg_cluster_stop "$D" && pg_cluster_restart "$D"; then
    pass "pg_cluster_stop, pg_cluster_restart"
else
    fail "pg_cluster_stop, pg_cluster_restart"
fi
q "INSERT INTO splitmilter.list_members VALUES ('after', 'restart')" >/dev/null
check "after a restart the counter goes on" "$((before + 1)) member set after restart - -" \
    "$(log_since "$before")"

before=$(last_id)
q "DELETE FROM splitmilter.changes WHERE at < now() + interval '1 day'" >/dev/null
q "INSERT INTO splitmilter.list_members VALUES ('after', 'pruning')" >/dev/null
check "after pruning the whole log, ids go on from the counter" \
    "$((before + 1)) member set after pruning - -" "$(log_since 0)"

tls_checks
finish
