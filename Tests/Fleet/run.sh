#!/usr/bin/env bash
# Tests/Fleet/run.sh: issue 11 with real parts and no mocks: a fleet of three MX hosts that take
# their rules from one PostgreSQL database.
#
# One private PostgreSQL cluster (scripts/lib/pgcluster.sh) holds splitmilter's tables. Three MX
# hosts, mx1 mx2 mx3, are each a private Postfix instance (scripts/lib/instance.sh, laid out as
# e2e scenario e's second instance: not chrooted) on its own 127.0.0.1 port, with its own
# splitmilter daemon (--database with its own cache file, --metrics, --user nobody) and its own
# smtp-sink as Google (gapps.example.org); example.org is delivered locally on each host. All
# three read the same rule file:
#
#     domain example.org
#       copy %u@gapps.example.org
#       only pgsql:google          (alice, bob)
#       user pgsql:people          (carol copy carol-N@gapps.example.org)
#
# The checks:
#   1  all three start from the database (not the cache) and show the same rules_info sha256
#   2  propagation: 100 times, carol's copy target changes in the database; per host, the time
#      from the commit (pg_xact_commit_timestamp) until the host's metrics page shows the new
#      change id (polled every 10 ms); p50/p99/max printed, every one at most 1000 ms; then one
#      message through each host: its Google sink gets carol's copy at the last target
#   3  the database stops: every host still accepts mail (no 4xx) and copies with the last rules;
#      splitmilter_database_up 0 everywhere
#   4  mx2's daemon restarts while the database is down: it serves from its cache (logged), and
#      mail through it gets the right copies
#   5  the database starts again and changes: every host, mx2 included, follows without a restart
#      (within 60 s: the reconnect backoff goes up to 30 s); checked on the metrics and by mail
#   6  a bad row (targets 'frank@') in a transaction that also changes carol's target: every daemon
#      logs the error with the row's identity, updates_total{result="failed"} rises, the rules
#      stay (same sha256, mail still gets the old copies); deleting the row brings the transaction's
#      good change in and all three agree on one new sha256
#   7  a daemon started with the database down and no cache file refuses to start ("not starting")
#
# Needs root, Postfix, smtp-sink, swaks, curl and the PostgreSQL server binaries.
# Environment: SPLITMILTER  the daemon binary (default: `swift build --show-bin-path`/splitmilter)
#              KEEP=1       keep the scratch directory (its path is printed)
#              VERBOSE=1    print every assertion, not only the failing ones
# The last line of output is "fleet: N passed, M failed" (N, M count the checks above); exit 1 if
# M > 0. Every wait is bounded; everything started is stopped on exit.

set -uo pipefail

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd -- "$HERE/../.." && pwd)
# shellcheck source=scripts/lib/instance.sh
source "$REPO/scripts/lib/instance.sh"
# shellcheck source=scripts/lib/pgcluster.sh
source "$REPO/scripts/lib/pgcluster.sh"
# shellcheck source=scripts/lib/swift.sh
source "$REPO/scripts/lib/swift.sh"
INST_TAG=fleet
PG_TAG=fleet
export PG_READER_PASSWORD=${PG_READER_PASSWORD:-reader-secret}

HOSTS=(mx1 mx2 mx3)
CHANGES=100       # check 2's database changes
BOUND_MS=1000     # check 2's bound on each host's propagation time
RUN_ID=$(date +%H%M%S)-$$
MAIN_PID=$BASHPID
declare -A SMTP=() GOOGLE=() METRICS=()

# ---------------------------------------------------------------------------------------------
# Assertions: a check passes when none of its assertions failed.

PASSED=0
FAILED=0
BAD=0 # failed assertions in the current check

say() { printf '%s\n' "$*"; }

# bad WHAT EXPECTED FOUND: one failed assertion; the first of a check shows the daemons' logs.
bad() {
    local h
    BAD=$((BAD + 1))
    say "  FAIL $1"
    say "       expected: $2"
    say "       found:    ${3:-(nothing)}" | sed '2,$s/^/                 /'
    ((BAD == 1)) || return 0
    for h in "${HOSTS[@]}"; do inst_tail "$(milter_log "milter-$h")" 6; done
}

good() { [[ ${VERBOSE:-0} == 1 ]] && say "  ok   $1"; return 0; }
# same WHAT EXPECTED FOUND
same() { if [[ $2 == "$3" ]]; then good "$1"; else bad "$1" "$2" "$3"; fi; }
# holds WHAT ERE TEXT: a line of TEXT matches ERE.
holds() { if grep -Eq -- "$2" <<<"$3"; then good "$1"; else bad "$1" "a line matching /$2/" "$3"; fi; }

# run_check NUMBER TITLE FUNCTION
run_check() {
    local t=$SECONDS
    BAD=0
    say "[$1] $2"
    "$3"
    if ((BAD == 0)); then
        say "[$1] pass ($((SECONDS - t))s)"
        PASSED=$((PASSED + 1))
    else
        say "[$1] FAIL: $BAD assertion(s) failed ($((SECONDS - t))s)"
        FAILED=$((FAILED + 1))
    fi
}

# ---------------------------------------------------------------------------------------------
# The database, the daemons' pages and logs

sql() { pg_admin_sql "$PGDIR" "$PG_PORT" "$@"; }
last_change() { sql 'SELECT last FROM splitmilter.change_counter'; }

# set_carol TARGET: carol's copy target, one UPDATE (two change ids: delete, then set).
set_carol() {
    sql "UPDATE splitmilter.user_rules SET targets = '$1'
         WHERE list = 'people' AND name = 'carol' AND action = 'copy'"
}

page() { curl -s --max-time 5 "http://127.0.0.1:${METRICS[$1]}/metrics"; }
# value PAGE SERIES: the value of the line "SERIES VALUE" (a whole number without its ".0").
value() { awk -v s="$2" 'index($0, s " ") == 1 { v = $NF; sub(/\.0$/, "", v); print v; exit }' <<<"$1"; }
sha_of() { sed -n 's/^splitmilter_rules_info{sha256="\([0-9a-f]*\)"}.*/\1/p' <<<"$1"; }
# host_value HOST SERIES, host_sha HOST: from the host's page now.
host_value() { value "$(page "$1")" "$2"; }
host_sha() { sha_of "$(page "$1")"; }

log_mark() { stat -c %s "$(milter_log "milter-$1")" 2>/dev/null || echo 0; }
log_since() { tail -c +"$((${2:-0} + 1))" "$(milter_log "milter-$1")" 2>/dev/null; }
log_has() { log_since "$1" "${3:-0}" | grep -E -- "$2" >/dev/null; }

# series_at_least HOST SERIES MIN: the series is MIN or more on HOST's page.
series_at_least() {
    local v
    v=$(host_value "$1" "$2")
    [[ $v =~ ^[0-9]+$ ]] && ((v >= $3))
}
series_is() { [[ $(host_value "$1" "$2") == "$3" ]]; }

# expect_everywhere WHAT SERIES VALUE: every host's page shows SERIES VALUE.
expect_everywhere() {
    local h
    for h in "${HOSTS[@]}"; do same "$1 ($h)" "$3" "$(host_value "$h" "$2")"; done
}

# agreed_sha WHAT: every host shows the same non-empty rules sha256; sets SHA to it (MISMATCH
# when they differ).
agreed_sha() {
    local h s all=
    SHA=
    for h in "${HOSTS[@]}"; do
        s=$(host_sha "$h")
        all+="$h=${s:-none} "
        [[ -n $SHA ]] || SHA=$s
        [[ -n $s && $s == "$SHA" ]] || SHA=MISMATCH
    done
    if [[ $SHA == MISMATCH ]]; then bad "$1" "one rules_info sha256 on all three" "$all"; else good "$1"; fi
}

# ---------------------------------------------------------------------------------------------
# Mail

# mail_via HOST ID TO[,TO...]: one message through HOST's Postfix; sets QID (empty when refused)
# and SENT_LOG.
mail_via() {
    SENT_LOG=$R/logs/swaks-$2.log
    swaks --server "127.0.0.1:${SMTP[$1]}" --timeout 15 --ehlo client.fleet.test \
        --from sender@example.org --to "$3" --header "Message-Id: <$2@fleet.test>" \
        --header "Subject: fleet $2" >"$SENT_LOG" 2>&1
    QID=$(sed -n 's/^<-  250 .*queued as \([0-9A-Za-z]*\).*/\1/p' "$SENT_LOG" | tail -n 1)
}

# mail_round TAG TARGET [HOST...]: one message to alice, carol and dave through each HOST (default:
# all three): accepted with no 4xx, delivered to carol's mailbox there, and the host's Google
# sink gets exactly alice's copy (list google) and carol's at TARGET (list people); dave, in
# neither list, gets no copy.
mail_round() {
    local tag=$1 target=$2 h id mark
    shift 2
    (($#)) || set -- "${HOSTS[@]}"
    local -A qids=() marks=()
    for h in "$@"; do
        id=$tag-$h-$RUN_ID
        mark=$(pf_log_mark "$R/$h")
        mail_via "$h" "$id" alice@example.org,carol@example.org,dave@example.org
        if [[ -n $QID ]] && ! grep -Eq '^<\*\* +4[0-9][0-9]' "$SENT_LOG"; then
            good "$tag $h: accepted, no 4xx (queue id $QID)"
            qids[$h]=$QID
            marks[$h]=$mark
        else
            bad "$tag $h: accepted, no 4xx" "250 ... queued as QID" "$(grep -E '^(<\*\*|<-) ' "$SENT_LOG" | tail -n 6)"
        fi
    done
    for h in "$@"; do
        [[ -n ${qids[$h]:-} ]] || continue
        id=$tag-$h-$RUN_ID
        pf_wait_log "$R/$h" " ${qids[$h]}: removed" 20 "${marks[$h]}" || true
        same "$tag $h: Google got alice's copy and carol's at $target" \
            "$(printf '<alice@gapps.example.org>\n<%s>' "$target")" \
            "$(sink_rcpts "google-$h" "$id@fleet.test" | awk '{print $1}' | sort)"
        same "$tag $h: carol's mailbox holds the message" 1 \
            "$(grep -cixF -- "Message-Id: <$id@fleet.test>" "$R/$h/mail/carol.mbox" 2>/dev/null)"
    done
}

# ---------------------------------------------------------------------------------------------
# Set-up

need() {
    local missing=() c
    for c in postfix postconf postqueue smtp-sink swaks curl script setsid ss timeout; do
        command -v "$c" >/dev/null || missing+=("$c")
    done
    if ((${#missing[@]})); then
        say "fleet: missing commands: ${missing[*]} (apt-get install postfix swaks curl util-linux iproute2)" >&2
        return 1
    fi
    pg_find_bindir || return 1
    if ((EUID != 0)); then
        say "fleet: must run as root (private Postfix instances, smtp-sink -u nobody)" >&2
        return 1
    fi
}

# database_conf HOST CACHE: the host's --database file (cache CACHE).
database_conf() {
    cat >"$R/$1/database.conf" <<EOF
# The --database settings of $1 (Tests/Fleet/run.sh)
host = 127.0.0.1
port = $PG_PORT
dbname = mail
user = splitmilter_reader
password_file = $R/etc/reader.password
sslmode = disable
connect_timeout = 5
cache = $2
EOF
}

# start_daemon HOST: the host's daemon on its socket, its metrics on 127.0.0.1.
start_daemon() {
    local h=$1
    milter_spawn "milter-$h" "$RULES" "unix:$R/$h/q/splitmilter/milter.sock" \
        --database "$R/$h/database.conf" --metrics "127.0.0.1:${METRICS[$h]}" &&
        inst_wait_port "${METRICS[$h]}" 10
}

setup() {
    local h i=0 b
    inst_init splitmilter-fleet || return 1
    R=$INST_ROOT
    trap fleet_cleanup EXIT
    PGDIR=$R/pg
    PG_PORT=$(pg_free_port 25432) || return 1
    pg_cluster_start "$PGDIR" "$PG_PORT" || return 1
    sql "INSERT INTO splitmilter.list_members VALUES ('google', 'alice'), ('google', 'bob')" \
        "INSERT INTO splitmilter.user_rules VALUES ('people', 'carol', 'copy', 'carol-0@gapps.example.org')" ||
        return 1

    inst_pick_ports 10 || return 1
    b=$INST_PORT_BASE
    PRIMARY_PORT=$((b + 9))
    for h in "${HOSTS[@]}"; do
        SMTP[$h]=$((b + i)) GOOGLE[$h]=$((b + 3 + i)) METRICS[$h]=$((b + 6 + i))
        i=$((i + 1))
    done

    # The daemons run as nobody: the rule file must be theirs to read (SIGUSR1 reloads it); the
    # settings and the password are read at start, as root (the password file: mode 0600).
    mkdir -p "$R/etc" || return 1
    RULES=$R/etc/fleet.rules
    printf '%s\n' 'domain example.org' '  copy %u@gapps.example.org' '  only pgsql:google' \
        '  user pgsql:people' >"$RULES" && chmod 644 "$RULES" || return 1
    (umask 077 && printf '%s\n' "$PG_READER_PASSWORD" >"$R/etc/reader.password") || return 1

    sink_start primary "$PRIMARY_PORT" || return 1
    for h in "${HOSTS[@]}"; do
        pf_init "$R/$h" "$h.fleet.test" || return 1
        milter_socket_dir "$R/$h" >/dev/null || return 1
        pf_split_mx "$R/$h" "$R/$h/q/splitmilter/milter.sock" "${GOOGLE[$h]}" "$PRIMARY_PORT" || return 1
        pf_listen "$R/$h" "${SMTP[$h]}" || return 1
        milter_state_dir "$R/$h/state" >/dev/null || return 1
        database_conf "$h" "$R/$h/state/database.cache" || return 1
        sink_start "google-$h" "${GOOGLE[$h]}" || return 1
    done
    for h in "${HOSTS[@]}"; do start_daemon "$h" || return 1; done
    for h in "${HOSTS[@]}"; do pf_start "$R/$h" || return 1; done
    for h in "${HOSTS[@]}"; do inst_wait_port "${SMTP[$h]}" 10 || return 1; done
}

# fleet_cleanup: the EXIT trap: the database first (its files are in the scratch directory), then
# inst_cleanup (Postfix instances, daemons, sinks; the scratch directory), with the exit status.
# Only the main shell cleans up: a subshell that bash ends on an error (set -u) runs the trap too.
fleet_cleanup() {
    local rc=$?
    [[ $BASHPID == "$MAIN_PID" ]] || return "$rc"
    trap - EXIT
    [[ -n ${PGDIR:-} ]] && pg_cluster_stop "$PGDIR" >/dev/null 2>&1
    (exit "$rc")
    inst_cleanup
}

# ---------------------------------------------------------------------------------------------
# The checks

check_start() {
    local h first
    first=$(last_change)
    for h in "${HOSTS[@]}"; do
        holds "$h read the rows from the database" \
            "database postgresql://splitmilter_reader@127\.0\.0\.1:$PG_PORT/mail .*: 2 list rows and 1 rule rows up to change $first," \
            "$(log_since "$h")"
        if log_has "$h" 'serving from the cache'; then bad "$h did not start from the cache" "no cache line" "$(log_since "$h")"; fi
    done
    expect_everywhere "database up" splitmilter_database_up 1
    expect_everywhere "rows up to change $first" splitmilter_database_change "$first"
    agreed_sha "one rules_info sha256 on all three"
    [[ $SHA == MISMATCH ]] || say "  rules sha256 $SHA on mx1 mx2 mx3"
}

# fmt_ms MICROSECONDS: milliseconds with one decimal.
fmt_ms() { printf '%d.%d' $(($1 / 1000)) $(($1 % 1000 / 100)); }

# poll_round ID HOST...: one scrape of every HOST (one curl, the pages fetched in parallel); sets
# SEEN[HOST] to the time (microseconds) the scrape ended for each that shows change ID or later.
poll_round() {
    local id=$1 h v line now args=()
    shift
    for h in "$@"; do
        : >"$R/poll-$h"
        args+=(-o "$R/poll-$h" "http://127.0.0.1:${METRICS[$h]}/metrics")
    done
    curl -s -Z --max-time 1 "${args[@]}"
    now=${EPOCHREALTIME/./}
    for h in "$@"; do
        v=
        while IFS= read -r line; do
            [[ $line == 'splitmilter_database_change '* ]] && v=${line#* } && break
        done <"$R/poll-$h"
        v=${v%.0}
        [[ $v =~ ^[0-9]+$ ]] && ((v >= id)) && SEEN[$h]=$now
    done
}

# propagate I EXPECTED: change I (carol's target carol-I), written in the background while every
# host's page is polled every 10 ms for change EXPECTED (an UPDATE takes two ids: the old row's
# delete and the new row's set); then the id and commit time (pg_xact_commit_timestamp) that
# the database gives. Appends each host's time from the commit to LATENCIES (microseconds), or a
# line to LATE. Returns 1 when the change failed or its id is not EXPECTED.
propagate() {
    local i=$1 expected=$2 writer start h pending=("${HOSTS[@]}") id commit
    sql "UPDATE splitmilter.user_rules SET targets = 'carol-$i@gapps.example.org'
         WHERE list = 'people' AND name = 'carol' AND action = 'copy'" \
        "SELECT c.last || ' ' || (extract(epoch FROM pg_xact_commit_timestamp(x.xmin)) * 1000000)::bigint
         FROM splitmilter.change_counter c JOIN splitmilter.changes x ON x.id = c.last" >"$R/change.out" 2>&1 &
    writer=$!
    SEEN=()
    start=${EPOCHREALTIME/./}
    while ((${#pending[@]} && ${EPOCHREALTIME/./} - start < 6000000)); do
        poll_round "$expected" "${pending[@]}"
        for h in "${!pending[@]}"; do [[ -n ${SEEN[${pending[$h]}]:-} ]] && unset "pending[$h]"; done
        ((${#pending[@]})) && sleep 0.01
    done
    wait "$writer"
    read -r id commit <"$R/change.out"
    if [[ $id != "$expected" || ! $commit =~ ^[0-9]+$ ]]; then
        bad "change $i committed as change $expected" "'$expected COMMIT_TIME'" "$(cat "$R/change.out")"
        return 1
    fi
    for h in "${HOSTS[@]}"; do
        if [[ -z ${SEEN[$h]:-} ]]; then
            LATE+=("change $id on $h: not in force 6 s after it was written")
            continue
        fi
        LATENCIES+=($((SEEN[$h] > commit ? SEEN[$h] - commit : 0)))
        ((LATENCIES[-1] <= BOUND_MS * 1000)) || LATE+=("change $id on $h: $(fmt_ms "${LATENCIES[-1]}") ms")
    done
}

check_propagation() {
    local i last n sorted
    LATENCIES=() LATE=()
    declare -gA SEEN=()
    last=$(last_change)
    for ((i = 1; i <= CHANGES; i++)); do
        propagate "$i" $((last + 2)) || return
        last=$((last + 2))
    done
    n=${#LATENCIES[@]}
    mapfile -t sorted < <(printf '%s\n' "${LATENCIES[@]}" | sort -n)
    if ((n > 0)); then
        # Nearest rank: the p-th percentile is the ceil(p/100 * n)-th smallest.
        say "fleet: propagation p50 $(fmt_ms "${sorted[$(((50 * n + 99) / 100 - 1))]}") ms" \
            "p99 $(fmt_ms "${sorted[$(((99 * n + 99) / 100 - 1))]}") ms max $(fmt_ms "${sorted[n - 1]}") ms" \
            "($CHANGES changes x ${#HOSTS[@]} hosts)"
    fi
    same "every host saw every change" $((CHANGES * ${#HOSTS[@]})) "$n"
    same "every propagation within $BOUND_MS ms" "" "$(printf '%s\n' "${LATE[@]}" | head -n 20)"
    expect_everywhere "rows up to the last change" splitmilter_database_change "$last"
    agreed_sha "one rules_info sha256 on all three after the changes"
    # Stopped at once after the last change: the cache writer, which writes at most once a second,
    # still holds the newest rows; an orderly stop writes them before the process ends.
    milter_stop milter-mx2 || bad "mx2's daemon stops on SIGTERM" "exit within 6 s" "SIGKILL was needed"
    same "mx2 stopped right after the last change: its cache file holds that change" "change $last" \
        "$(sed -n 2p "$R/mx2/state/database.cache")"
    start_daemon mx2 || { bad "mx2's daemon starts again" "listening" "see above"; return; }
    mail_round prop "carol-$CHANGES@gapps.example.org"
}

check_database_down() {
    local h
    pg_cluster_stop "$PGDIR" || bad "the database stops" "pg_cluster_stop succeeds" "it failed"
    for h in "${HOSTS[@]}"; do
        if inst_wait 15 "splitmilter_database_up 0 on $h" series_is "$h" splitmilter_database_up 0; then
            good "$h: splitmilter_database_up 0"
        else
            bad "$h: splitmilter_database_up 0" 0 "$(host_value "$h" splitmilter_database_up)"
        fi
    done
    mail_round down "carol-$CHANGES@gapps.example.org"
    expect_everywhere "still database_up 0" splitmilter_database_up 0
}

check_restart_from_cache() {
    local mark
    mark=$(log_mark mx2)
    milter_stop milter-mx2 || bad "mx2's daemon stops on SIGTERM" "exit within 6 s" "SIGKILL was needed"
    if ! start_daemon mx2; then
        bad "mx2's daemon starts again with the database down" "listening" "see above"
        return
    fi
    holds "mx2 serves from its cache" "serving from the cache $R/mx2/state/database\.cache: change [0-9]+" \
        "$(log_since mx2 "$mark")"
    same "mx2: splitmilter_database_up 0" 0 "$(host_value mx2 splitmilter_database_up)"
    same "mx2: the cached rows are those of the last change" "$(host_value mx1 splitmilter_database_change)" \
        "$(host_value mx2 splitmilter_database_change)"
    agreed_sha "mx2 from its cache: the same rules_info sha256 as mx1 and mx3"
    mail_round cache "carol-$CHANGES@gapps.example.org" mx2
}

check_database_back() {
    local id h t0=$SECONDS
    if ! pg_cluster_restart "$PGDIR"; then
        bad "the database starts again" "pg_cluster_restart succeeds" "it failed"
        return
    fi
    set_carol carol-back@gapps.example.org || bad "the change after the restart" "UPDATE succeeds" "it failed"
    id=$(last_change)
    for h in "${HOSTS[@]}"; do
        if inst_wait 60 "change $id in force on $h" series_at_least "$h" splitmilter_database_change "$id" &&
            inst_wait 5 "database_up 1 on $h" series_is "$h" splitmilter_database_up 1; then
            good "$h follows again: change $id in force, database_up 1 ($((SECONDS - t0)) s after the restart)"
        else
            bad "$h follows again within 60 s" "change $id, database_up 1" \
                "change $(host_value "$h" splitmilter_database_change), up $(host_value "$h" splitmilter_database_up)"
        fi
    done
    say "  every host followed again within $((SECONDS - t0)) s of the database's restart"
    agreed_sha "one rules_info sha256 on all three after the restart"
    mail_round back carol-back@gapps.example.org
}

check_bad_row() {
    local h before id fixed
    local -A mark=() failed=() ok=()
    agreed_sha "one rules_info sha256 before the bad row"
    before=$SHA
    for h in "${HOSTS[@]}"; do
        mark[$h]=$(log_mark "$h")
        failed[$h]=$(host_value "$h" 'splitmilter_database_updates_total{result="failed"}')
        ok[$h]=$(host_value "$h" 'splitmilter_database_updates_total{result="ok"}')
    done
    # One transaction: a good change (carol's target) and a bad row; neither may come in.
    sql "BEGIN;
         UPDATE splitmilter.user_rules SET targets = 'carol-fix@gapps.example.org'
             WHERE list = 'people' AND name = 'carol' AND action = 'copy';
         INSERT INTO splitmilter.user_rules VALUES ('people', 'frank', 'copy', 'frank@');
         COMMIT" || bad "the bad row is written" "the transaction commits" "it failed"
    id=$(last_change)
    for h in "${HOSTS[@]}"; do
        if inst_wait 10 "the error on $h" log_has "$h" 'the rows have errors, the rules in force stay' "${mark[$h]}"; then
            good "$h: the rows have errors, the rules in force stay"
        else
            bad "$h: logs that the rules stay" "a line '... the rows have errors, the rules in force stay'" \
                "$(log_since "$h" "${mark[$h]}")"
        fi
        holds "$h: the error names the row" \
            "pgsql:people:[0-9]+:[0-9]+: error: .*\(row list='people' name='frank' action='copy'\)" \
            "$(log_since "$h" "${mark[$h]}")"
        same "$h: updates_total{result=\"failed\"} rose by one" "$((failed[$h] + 1))" \
            "$(host_value "$h" 'splitmilter_database_updates_total{result="failed"}')"
        same "$h: the rows in force are still those before change $id" "$((id - 3))" \
            "$(host_value "$h" splitmilter_database_change)"
    done
    agreed_sha "one rules_info sha256 with the bad row in the database"
    same "the rules in force stay (the sha256 before the bad row)" "$before" "$SHA"
    mail_round badrow carol-back@gapps.example.org

    # The fix: the row deleted; the transaction's good change comes in everywhere.
    sql "DELETE FROM splitmilter.user_rules WHERE list = 'people' AND name = 'frank'" ||
        bad "the bad row is deleted" "DELETE succeeds" "it failed"
    fixed=$(last_change)
    for h in "${HOSTS[@]}"; do
        if inst_wait 10 "change $fixed on $h" series_at_least "$h" splitmilter_database_change "$fixed"; then
            good "$h: change $fixed in force"
        else
            bad "$h: change $fixed in force" "$fixed" "$(host_value "$h" splitmilter_database_change)"
        fi
        same "$h: updates_total{result=\"ok\"} rose" 1 \
            "$(($(host_value "$h" 'splitmilter_database_updates_total{result="ok"}') > ok[$h]))"
    done
    agreed_sha "one rules_info sha256 on all three after the fix"
    if [[ $SHA != "$before" && $SHA != MISMATCH ]]; then good "a new sha256"; else
        bad "a new sha256 after the fix" "not $before" "$SHA"; fi
    mail_round fixed carol-fix@gapps.example.org
}

check_no_cache() {
    local dir=$R/nocache out rc
    pg_cluster_stop "$PGDIR" || bad "the database stops" "pg_cluster_stop succeeds" "it failed"
    if ! { milter_state_dir "$dir/state" >/dev/null && milter_socket_dir "$dir" >/dev/null; }; then
        bad "a directory for the new daemon" "made" "mkdir failed"
        return
    fi
    database_conf nocache "$dir/state/database.cache"
    milter_user_args
    out=$(timeout -k 3 15 "$SPLITMILTER" --rules "$RULES" --socket "unix:$dir/q/splitmilter/milter.sock" \
        --database "$dir/database.conf" "${MILTER_USER_ARGS[@]}" </dev/null 2>&1)
    rc=$?
    if ((rc != 0 && rc != 124 && rc != 137)); then good "refuses to start (exit $rc)"; else
        bad "refuses to start" "a non-zero exit (not the timeout's)" "exit $rc"; fi
    holds "says why" 'no cache to serve from: .*; not starting' "$out"
    if [[ -e $dir/state/database.cache ]]; then bad "no cache written" "no file" "$dir/state/database.cache"; else
        good "no cache written"; fi
}

# ---------------------------------------------------------------------------------------------

# give_up [WHY]: no check can run.
give_up() {
    [[ -z ${1:-} ]] || say "fleet: $1" >&2
    [[ -z ${R:-} ]] || fleet_cleanup
    say "fleet: 0 passed, 7 failed"
    exit 1
}

main() {
    local t0=$SECONDS
    need || give_up
    # By default the checkout's build, as its owner, with swift from their PATH under sudo.
    [[ -n ${SPLITMILTER:-} ]] || { swift_find && SPLITMILTER=$(swift_run build --show-bin-path 2>/dev/null)/splitmilter; }
    export SPLITMILTER=${SPLITMILTER:-}
    [[ -x $SPLITMILTER ]] || give_up "no daemon binary at '$SPLITMILTER' (build it, or set SPLITMILTER)"
    setup || give_up "setting up the database and the three hosts failed (see above)"
    say "fleet: PostgreSQL on 127.0.0.1:$PG_PORT; mx1 mx2 mx3 on 127.0.0.1:${SMTP[mx1]}-${SMTP[mx3]}" \
        "(metrics ${METRICS[mx1]}-${METRICS[mx3]}) in $R; set-up took $((SECONDS - t0))s"
    run_check 1 "all three start from the database with the same rules" check_start
    run_check 2 "propagation of $CHANGES changes to three hosts, then mail at the last target" check_propagation
    run_check 3 "the database down: mail accepted and copied with the last rules; database_up 0" check_database_down
    run_check 4 "a daemon restarted while the database is down serves from its cache" check_restart_from_cache
    run_check 5 "the database back: every host follows again without a restart" check_database_back
    run_check 6 "a bad row: logged with its identity, the rules stay; the fix brings a new sha256" check_bad_row
    run_check 7 "the database down and no cache: a new daemon refuses to start" check_no_cache
    fleet_cleanup
    say "fleet: total time $((SECONDS - t0))s"
    say "fleet: $PASSED passed, $FAILED failed"
    ((FAILED == 0))
}

main "$@"
