#!/usr/bin/env bash
# Tests/Faults/run.sh [--short] [PART...]: fault tests of the splitmilter daemon under load, with
# real Postfix where mail flows (issue 7 item 6). Needs root. One command runs every part; --short
# is CI's version (about 2 minutes in all); PART (1-5) runs only those parts. Each part prints its
# figures; the last line is "faults: N passed, M failed" (parts), exit 1 if M > 0.
#
# The set-up (scripts/lib/instance.sh): a private Postfix 3.7 laid out as on Debian (smtpd and
# cleanup chrooted to the queue directory R/q) relays example.org through smtpd_milters =
# unix:/splitmilter/fault.sock with milter_default_action = tempfail, as the README recommends; the
# daemon is the real binary, started as root with --user nobody, on R/q/splitmilter/fault.sock; one
# smtp-sink takes every delivery (example.org, the copy targets, the rewrite targets: transport_maps)
# and dumps each transaction (envelope recipients, headers). Rule files (fixtures/):
#   a.rules       copy %u@copy-a.example except carol dave; carol rewritten to carol@moved-a.example;
#                 frank copied to two targets (copy-a, copy2-a)
#   b.rules       the same shape with copy-b / copy2-b / moved-b
#   broken.rules  the same shape with copy-x / moved-x, and one misspelt directive
# What each message must become is not written here: faults.py asks `milter-test explain` for every
# user and rule file (the model), and counts the sink's dumps against it. The sender (faults.py
# send) is a retrying SMTP client: any 4xx, refused or dropped connection, and it sends the same
# message (same Message-ID) again later, all recipients or none; after a 250 never again.
#
# Parts:
#   1 SIGKILL under load: the retrying sender (1-3 recipients of alice bob carol dave frank per
#     message) while the daemon is SIGKILLed at random moments and restarted on its stale socket.
#     Proves: Postfix's tempfail and the sender's retry lose nothing, and a milter killed in the
#     middle of a message (even during its end-of-message edits) never lets a half-edited message
#     through: every message reaches each recipient (or its rewrite target) once, every copy once,
#     every copied message carries the marker header, no rewritten recipient is also delivered.
#     Prints sent, kills, tempfails seen by the sender, lost, duplicated, half-edited.
#   2 Reloads under load: a steady load while the rule file is replaced by a, broken, b, broken, a,
#     ... each followed by SIGUSR1. Proves: every delivered message carries the edits of exactly
#     one rule version (never a copy-a and a copy-b target in one message), a broken file never
#     takes effect (no copy-x / moved-x delivery; the daemon logs `file:line:col: error:` and
#     keeps the previous rules), the load sees no tempfail, and both versions were in force.
#   3 Abusive connections: `milter-test bench --rules` (every answer checked against explain) runs
#     beside thousands of hostile connections at the socket (connect+close, garbage, huge and zero
#     length prefixes, half frames then silence, bad or valid negotiation then garbage, sessions cut
#     off mid-transaction). Proves: no crash (same pid, still answering), no error in the checked
#     load, the hostile connections' descriptors all closed afterwards.
#   4 Soak: the checked bench load, with a reload every 5 s, for SOAK seconds (300; --short 30),
#     sampling the daemon's RSS and open descriptors every second. Prints start/end/max and the
#     growth after warm-up (the first fifth); fails on a descriptor left open after the load, or on
#     RSS growth after warm-up above SOAK_RSS_LIMIT_KB (65536).
#   5 SIGTERM under load (what a restart does): as part 1 with an orderly stop instead of a kill.
#     Proves the same of a stop, and that each is prompt (exit status 0 within 2 s; libmilter's own
#     stop takes up to 5 s, docs/postfix-milter.md, "Signals").
#
# Environment: SPLITMILTER the daemon (default: `swift build --show-bin-path`/splitmilter);
#              milter-test from the same directory. KEEP=1 keeps the scratch directory.
#              MESSAGES, KILLS (part 1), RESTARTS (part 5), CYCLES (part 2: a/broken/b/broken rounds), ABUSE (part 3
#              connections), SOAK (part 4 seconds) override the sizes.
# Full run: 20 kills (20 stops), and the load goes on until at least 600 messages were delivered
# (the sender does not wait for the kills: thousands are sent); 40 reload cycles (160 reloads),
# 10,000 hostile connections, a 300 s soak; about 9 minutes. --short: 3 kills (3 stops) and at
# least 100 messages, 6 cycles, 2,000 connections, 30 s; about 80 s.

set -uo pipefail

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd -- "$HERE/../.." && pwd)
# shellcheck source=scripts/lib/instance.sh
source "$REPO/scripts/lib/instance.sh"
# shellcheck source=scripts/lib/swift.sh
source "$REPO/scripts/lib/swift.sh"
INST_TAG=faults

SHORT=0
PARTS=()
for arg in "$@"; do
    case $arg in
    --short) SHORT=1 ;;
    [1-5]) PARTS+=("$arg") ;;
    -h | --help)
        sed -n '2,/^$/s/^# \{0,1\}//p' "$0"
        exit 0
        ;;
    *)
        printf 'usage: %s [--short] [1|2|3|4|5]...\n' "$0" >&2
        exit 2
        ;;
    esac
done
((${#PARTS[@]})) || PARTS=(1 2 3 4 5)
if ((SHORT)); then
    MESSAGES=${MESSAGES:-100} KILLS=${KILLS:-3} RESTARTS=${RESTARTS:-3} CYCLES=${CYCLES:-6} ABUSE=${ABUSE:-2000} SOAK=${SOAK:-30}
else
    MESSAGES=${MESSAGES:-600} KILLS=${KILLS:-20} RESTARTS=${RESTARTS:-20} CYCLES=${CYCLES:-40} ABUSE=${ABUSE:-10000} SOAK=${SOAK:-300}
fi
SOAK_RSS_LIMIT_KB=${SOAK_RSS_LIMIT_KB:-65536}
USERS=(alice bob carol dave frank)
INSTANCE=fault.test
PYTHON=${PYTHON:-python3}

say() { printf '%s\n' "$*"; }
FAILED=0 # checks failed in the current part
fail() {
    FAILED=$((FAILED + 1))
    say "  FAIL $*"
}
# figure NAME VALUE...: one line of figures.
figure() { say "  $*"; }

# rand_between LOW HIGH: a random number of seconds (with two decimals) in [LOW, HIGH].
rand_between() { awk -v lo="$1" -v hi="$2" -v seed="$RANDOM$RANDOM" 'BEGIN { srand(seed); printf "%.2f", lo + rand() * (hi - lo) }'; }

# json KEY FILE-OR-TEXT: the value of a top-level number field of a one-line JSON object.
jget() { grep -oE "\"$1\": ?-?[0-9.]+" <<<"$2" | head -n 1 | sed -E 's/.*: ?//'; }

need() {
    local missing=() c
    for c in postfix postconf postqueue smtp-sink script setsid ss "$PYTHON"; do
        command -v "$c" >/dev/null || missing+=("$c")
    done
    if ((${#missing[@]})); then
        say "faults: missing commands: ${missing[*]} (apt-get install postfix python3 util-linux iproute2)" >&2
        return 1
    fi
    if ((EUID != 0)); then
        say "faults: must run as root (private Postfix instance, the daemon's --user nobody)" >&2
        return 1
    fi
}

# ---------------------------------------------------------------------------------------------
# Set-up

setup() {
    inst_init splitmilter-faults || return 1
    R=$INST_ROOT
    inst_pick_ports 2 30000 39999 || return 1
    SMTP_PORT=$INST_PORT_BASE SINK_PORT=$((INST_PORT_BASE + 1))

    # Rule files the daemon (as nobody) can read; the live one is replaced by rename.
    mkdir -p "$R/rules" && cp -- "$HERE"/fixtures/*.rules "$R/rules/" && chmod -R a+rX "$R/rules" || return 1
    cp -- "$R/rules/a.rules" "$R/rules/live.rules" && chmod 644 "$R/rules/live.rules" || return 1

    "$PYTHON" "$HERE/faults.py" model "$MILTER_TEST" "$INSTANCE" a="$R/rules/a.rules" b="$R/rules/b.rules" \
        --users "${USERS[@]}" >"$R/model.json" 2>"$R/logs/model.log" ||
        { inst_tail "$R/logs/model.log"; return 1; }

    pf_init "$R" mx.faults.test --chroot || return 1
    SOCKDIR=$(milter_socket_dir "$R") || return 1
    local d transport=()
    for d in example.org copy-a.example copy2-a.example moved-a.example copy-b.example copy2-b.example \
        moved-b.example copy-x.example copy2-x.example moved-x.example; do
        transport+=("$d smtp:[127.0.0.1]:$SINK_PORT")
    done
    pf_map "$R" transport "${transport[@]}"
    # in_flow_delay 0: the sender is never slowed down by Postfix, so the load stays a load.
    pf_set "$R" \
        "relay_domains = example.org" \
        "transport_maps = texthash:$R/pf/transport" \
        "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination" \
        "smtpd_milters = unix:/splitmilter/fault.sock" \
        "milter_default_action = tempfail" \
        "in_flow_delay = 0" \
        "smtpd_peername_lookup = no" \
        "smtp_destination_concurrency_limit = 10" || return 1
    pf_listen "$R" "$SMTP_PORT" --chroot || return 1
    sink_start sink "$SINK_PORT" || return 1
    start_daemon || return 1
    pf_start "$R" || return 1
    inst_wait_port "$SMTP_PORT" 10
}

DAEMON_ARGS=(--instance "$INSTANCE" --log stderr --spf-cache '')

# start_daemon: the daemon of parts 1 and 2 on R/q/splitmilter/fault.sock (a stale socket left by a
# SIGKILL is replaced), rules R/rules/live.rules.
start_daemon() {
    milter_spawn milter "$R/rules/live.rules" "unix:$SOCKDIR/fault.sock" "${DAEMON_ARGS[@]}"
}

daemon_log() { milter_log milter; }
log_mark() { stat -c %s "$1" 2>/dev/null || echo 0; }
log_since() { tail -c +"$(($2 + 1))" "$1" 2>/dev/null; }

# sender_start NAME PREFIX ARGS...: the retrying sender in the background, its JSON in R/NAME.json.
sender_start() {
    local name=$1 prefix=$2
    shift 2
    inst_spawn "$name" "$R/logs/$name.log" "$PYTHON" "$HERE/faults.py" send --port "$SMTP_PORT" \
        --prefix "$prefix" --users "${USERS[@]}" --out "$R/$name.json" "$@"
}

# sender_wait NAME TIMEOUT: wait for the sender to finish; prints its summary line.
sender_wait() {
    local name=$1 timeout=$2
    if ! inst_reap "$name" "$timeout"; then
        fail "the sender $name did not finish within ${timeout}s"
        inst_kill "$name" 2
        return 1
    fi
    if ((INST_STATUS != 0)); then
        fail "the sender $name exited with status $INST_STATUS: $(tail -n 3 "$R/logs/$name.log")"
    fi
    tail -n 1 "$R/logs/$name.log"
}

# drain: wait for Postfix to deliver everything it accepted.
drain() {
    pf_flush "$R" >/dev/null
    pf_wait_queue_empty "$R" 120 || fail "Postfix's queue did not drain in 120 s"
}

# count SENDER VERSIONS PREFIX: the sink's dumps against the model; prints the JSON report.
count() {
    "$PYTHON" "$HERE/faults.py" count --model "$R/model.json" --sent "$R/$1.json" --sink "$R/sink" \
        --versions "$2" --prefix "$3"
}

# show_problems REPORT: the report's first problems, indented.
show_problems() {
    "$PYTHON" -c 'import json, sys; [print("    | " + p) for p in json.loads(sys.argv[1])["problems"]]' "$1"
}

# ---------------------------------------------------------------------------------------------
# Parts 1 and 5: the daemon stopped under load (SIGKILL, SIGTERM) and started again

# stops_under_load SIGNAL PREFIX COUNT PART: the retrying sender (messages PREFIX-N) while the daemon
# gets SIGNAL COUNT times at random moments and is started again; then the sink against the model.
# After SIGTERM each stop must be an orderly one: exit status 0 within STOP_LIMIT s.
stops_under_load() {
    local signal=$1 prefix=$2 wanted=$3 part=$4 stops=0 slow=0 bad_status=0 report summary deadline mark
    local stop=$R/stop-$part
    # The model is version a; an earlier part may have left another file live (part 2 ends on the
    # broken one, with which a daemon rightly refuses to start).
    reload_to a.rules
    [[ $RELOAD_OUT == *"reloaded "* ]] || { fail "the reload to a.rules before the stops failed: $RELOAD_OUT"; return; }
    sink_clear sink
    mark=$(pf_log_mark "$R")
    # The sender runs until the stop file exists; it is made once the stops are done and at least
    # MESSAGES were sent. Six workers keep several sessions inside the milter at any moment.
    sender_start "sender-$part" "$prefix" --count 0 --stop-file "$stop" --workers 6 --seed "$RANDOM"
    while ((stops < wanted)); do
        sleep "$(rand_between 0.4 2.0)"
        inst_alive "${INST_PIDS[sender-$part]}" || break
        kill "-$signal" "${INST_PIDS[milter]}" 2>/dev/null
        if ! inst_reap milter "$STOP_LIMIT" >/dev/null 2>&1; then
            slow=$((slow + 1))
            inst_kill milter 5 >/dev/null 2>&1
        elif [[ $signal == TERM ]] && ((INST_STATUS != 0)); then
            bad_status=$((bad_status + 1))
        fi
        stops=$((stops + 1))
        sleep "$(rand_between 0 0.5)"
        if ! start_daemon; then
            # Without a daemon every message is refused for good: stop the sender, do not wait on it.
            fail "the daemon did not start again after stop $stops"
            inst_kill "sender-$part" 2
            return
        fi
    done
    # Let the load go on until MESSAGES reached the sink.
    deadline=$((SECONDS + 300))
    while ((SECONDS < deadline)) && inst_alive "${INST_PIDS[sender-$part]}" && (($(sink_messages "$prefix") < MESSAGES)); do
        sleep 0.5
    done
    touch "$stop"
    summary=$(sender_wait "sender-$part" 120) || return
    drain
    report=$(count "sender-$part" a "$prefix")
    local rc=$?
    figure "sent $(jget sent "$summary") (accepted with 250, $(jget seconds "$summary") s), SIG$signal $stops," \
        "tempfails seen by the sender $(jget tempfails "$summary") (+ $(jget connect_failures "$summary") refused connections)," \
        "lost $(jget lost "$report"), duplicated $(jget duplicated "$report"), half-edited $(jget half_edited "$report")," \
        "deliveries $(jget deliveries "$report"), delivered but never accepted $(jget unexpected "$report")"
    figure "where the stops hit, as Postfix's smtpd saw it (4xx after a milter failure, by stage):" \
        "$(pf_log_since "$R" "$mark" | grep -oE 'milter-reject: [A-Z-]+' | sort | uniq -c |
            awk '{ printf "%s%s %s", sep, $3, $1; sep = ", " }')"
    ((rc == 0)) || { fail "the deliveries do not match the model:"; show_problems "$report"; }
    (($(jget ambiguous "$summary") == 0)) || fail "the sender lost the reply to an end of data $(jget ambiguous "$summary") times"
    (($(jget permanent "$summary") == 0)) || fail "the sender got $(jget permanent "$summary") permanent errors: $summary"
    (($(jget sent "$summary") >= MESSAGES)) || fail "only $(jget sent "$summary") of $MESSAGES messages were accepted"
    ((stops == wanted)) || fail "only $stops of $wanted stops happened"
    ((slow == 0)) || fail "the daemon outlived SIG$signal by more than ${STOP_LIMIT}s $slow times"
    ((bad_status == 0)) || fail "the daemon exited with a status other than 0 after SIGTERM $bad_status times"
    (($(jget tempfails "$summary") + $(jget connect_failures "$summary") > 0)) ||
        fail "the sender never saw a tempfail: the stops did not hit the load"
}

part_1() {
    say "[1] SIGKILL under load: $MESSAGES messages, $KILLS kills at random moments, milter_default_action = tempfail"
    STOP_LIMIT=5 stops_under_load KILL k "$KILLS" 1
}

part_5() {
    say "[5] SIGTERM under load (a restart): $MESSAGES messages, $RESTARTS orderly stops at random moments, each within 2 s"
    STOP_LIMIT=2 stops_under_load TERM t "$RESTARTS" 5
}

# sink_messages PREFIX: how many distinct messages of the sender with PREFIX reached the sink.
sink_messages() {
    grep -rhoiE "^Message-ID: <$1-[0-9]+@" "$R/sink" 2>/dev/null | sort -u | wc -l
}

# ---------------------------------------------------------------------------------------------
# Part 2: reloads under load

# reload_to FILE: make FILE the live rule file (by rename) and SIGUSR1; wait for the outcome line.
# Sets RELOAD_OUT to what the daemon logged for it.
reload_to() {
    local file=$1 mark
    cp -- "$R/rules/$file" "$R/rules/.next" && chmod 644 "$R/rules/.next" && mv -f -- "$R/rules/.next" "$R/rules/live.rules"
    mark=$(log_mark "$(daemon_log)")
    kill -USR1 "${INST_PIDS[milter]}"
    inst_wait 20 "the reload's outcome in the daemon's log" reload_done "$mark"
    RELOAD_OUT=$(log_since "$(daemon_log)" "$mark")
}

# (grep without -q: -q would stop reading at the match, and under pipefail the writer's SIGPIPE fails the check)
reload_done() { log_since "$(daemon_log)" "$1" | grep -E 'reloaded .*live\.rules|keeping the previous rules' >/dev/null; }

part_2() {
    local cycle file good=0 broken=0 summary report stop=$R/stop-2 bad_errors=0 line col
    say "[2] reloads under load: $CYCLES rounds of a, broken, b, broken (SIGUSR1 each), a steady load"
    # The broken file's error position, as the daemon must report it.
    read -r line col < <(awk '/^[[:space:]]*cpy[[:space:]]/ { print NR, index($0, "cpy"); exit }' "$R/rules/broken.rules")
    reload_to a.rules
    sink_clear sink
    sender_start sender-2 r --count 0 --stop-file "$stop" --workers 4 --pause 0.02 --seed "$RANDOM"
    sleep 0.5
    for ((cycle = 1; cycle <= CYCLES; cycle++)); do
        for file in a.rules broken.rules b.rules broken.rules; do
            reload_to "$file"
            if [[ $file == broken.rules ]]; then
                broken=$((broken + 1))
                if [[ $RELOAD_OUT != *"live.rules:$line:$col: error:"* || $RELOAD_OUT != *"keeping the previous rules"* ]]; then
                    bad_errors=$((bad_errors + 1))
                    ((bad_errors > 1)) || fail "broken reload $broken: no 'live.rules:$line:$col: error:' and 'keeping the previous rules':"$'\n'"$RELOAD_OUT"
                fi
                [[ $RELOAD_OUT != *"reloaded "* ]] || fail "broken reload $broken: the daemon says it reloaded"
            else
                good=$((good + 1))
                [[ $RELOAD_OUT == *"reloaded "* ]] || fail "reload to $file: no 'reloaded' line: $RELOAD_OUT"
            fi
            sleep "$(rand_between 0.05 0.4)"
        done
    done
    touch "$stop"
    inst_alive "${INST_PIDS[milter]}" || fail "the daemon died during the reloads"
    summary=$(sender_wait sender-2 120) || return
    drain
    report=$(count sender-2 a,b r)
    local rc=$?
    local a b either
    a=$("$PYTHON" -c 'import json,sys; print(json.loads(sys.argv[1])["per_version"]["a"])' "$report")
    b=$("$PYTHON" -c 'import json,sys; print(json.loads(sys.argv[1])["per_version"]["b"])' "$report")
    either=$("$PYTHON" -c 'import json,sys; print(json.loads(sys.argv[1])["per_version"]["either"])' "$report")
    figure "reloads $((good + broken)) ($good good, $broken broken, each broken one logged file:line:col and kept the old rules: $((broken - bad_errors))/$broken)," \
        "messages $(jget sent "$summary") in $(jget seconds "$summary") s, tempfails $(jget tempfails "$summary")"
    figure "messages of version a $a, of b $b, untouched by either $either; mixed versions $(jget mixed_versions "$report")," \
        "broken rules in effect $(grep -rlE 'copy-x|moved-x|copy2-x' "$R/sink" 2>/dev/null | wc -l), lost $(jget lost "$report")," \
        "duplicated $(jget duplicated "$report"), half-edited $(jget half_edited "$report")"
    ((rc == 0)) || { fail "the deliveries do not match one rule version each:"; show_problems "$report"; }
    ((a > 0 && b > 0)) || fail "both versions should have been in force (a: $a, b: $b)"
    (($(jget tempfails "$summary") == 0)) || fail "the load saw $(jget tempfails "$summary") tempfails during reloads"
    (($(jget permanent "$summary") == 0)) || fail "the sender got permanent errors: $summary"
}

# ---------------------------------------------------------------------------------------------
# Parts 3 and 4: the daemon alone, driven by milter-test bench

# bench_loop NAME SOCKET STOPFILE: `milter-test bench --rules a.rules` over and over until STOPFILE
# exists, each run's JSON in R/NAME/N.json and its exit status in R/NAME/N.rc.
bench_loop() {
    local name=$1 sock=$2 stop=$3 templates=() u
    mkdir -p "$R/$name"
    for u in "${USERS[@]}"; do templates+=(--rcpt-template "$u@example.org"); done
    inst_spawn "$name" "$R/logs/$name.log" bash -c '
        out=$1 stop=$2; shift 2; n=0
        until [[ -e $stop ]]; do
            n=$((n + 1))
            "$@" --json >"$out/$n.json" 2>"$out/$n.err"
            echo $? >"$out/$n.rc"
        done' bench-loop "$R/$name" "$stop" "$MILTER_TEST" bench "unix:$sock" -c 4 -n 400 -k 3 \
        --messages-per-conn 5 --headers 8 --body-size 2048 "${templates[@]}" \
        --rules "$R/rules/a.rules" --instance "$INSTANCE"
}

# bench_results NAME: "runs messages failed-runs" of a bench loop; the first failures to stderr.
bench_results() {
    local dir=$R/$1 runs=0 messages=0 failed=0 f n rc
    for f in "$dir"/*.rc; do
        [[ -e $f ]] || continue
        n=${f%.rc}
        runs=$((runs + 1))
        rc=$(cat "$f")
        local fm
        fm=$(grep -oE '"failedMessages" : [0-9]+' "$n.json" 2>/dev/null | awk '{print $3}')
        if [[ $rc != 0 || ${fm:-x} != 0 ]]; then
            failed=$((failed + 1))
            if ((failed <= 2)); then
                {
                    say "    bench run $(basename "$n"): exit $rc, failed messages ${fm:-?}"
                    head -c 1500 "$n.json" | sed 's/^/    | /'
                    sed 's/^/    | /' "$n.err"
                } >&2
            fi
        else
            messages=$((messages + $(grep -oE '"messages" : [0-9]+' "$n.json" | head -n 1 | awk '{print $3}')))
        fi
    done
    echo "$runs $messages $failed"
}

fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
fds_at_most() { (($(fds "$1") <= $2)); }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
threads() { awk '/^Threads:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

part_3() {
    local sock=$SOCKDIR/abuse.sock pid fd0 fd1 out abuse results runs messages failed stop=$R/stop-3
    say "[3] abusive connections: $ABUSE hostile connections at the socket beside a checked bench load"
    # A short --timeout, so that the half frames are dropped by the daemon within the run too.
    milter_spawn abuse "$R/rules/a.rules" "unix:$sock" "${DAEMON_ARGS[@]}" --log-level warning --timeout 5 ||
        { fail "the daemon did not start"; return; }
    pid=${INST_PIDS[abuse]}
    fd0=$(fds "$pid")
    bench_loop bench-3 "$sock" "$stop"
    abuse=$("$PYTHON" "$HERE/faults.py" abuse --socket "$sock" --connections "$ABUSE" --workers 24 --hold 1.0 \
        --seed "$RANDOM" 2>&1)
    touch "$stop"
    inst_reap bench-3 120 || { fail "the bench load did not stop"; inst_kill bench-3 2; }
    # The daemon closes what the hostile clients left (they closed their ends) within its timeout.
    inst_wait 15 "the daemon's descriptors back to $fd0" fds_at_most "$pid" "$fd0" >/dev/null 2>&1
    fd1=$(fds "$pid")
    results=$(bench_results bench-3)
    read -r runs messages failed <<<"$results"
    local alive=no
    inst_alive "$pid" && [[ ${INST_PIDS[abuse]:-} == "$pid" ]] && alive=yes
    figure "hostile connections $(jget connections "$abuse") in $(jget seconds "$abuse") s" \
        "($(grep -oE '"kinds": \{[^}]*\}' <<<"$abuse" | sed 's/"kinds": //; s/[{}"]//g'));" \
        "stalled in a half frame: $(jget stalled_dropped "$abuse") of $(jget stalled "$abuse") dropped by the daemon" \
        "(--timeout 5) within $(jget stalled_dropped_after "$abuse") s"
    figure "checked load: $runs bench runs, $messages messages verified, $failed failed runs;" \
        "daemon pid $pid alive: $alive (crashes $([[ $alive == yes ]] && echo 0 || echo 1)), descriptors before $fd0 after $fd1," \
        "threads now $(threads "$pid"), warnings logged $(grep -c 'warning' "$(milter_log abuse)")"
    [[ $alive == yes ]] || { fail "the daemon died"; inst_tail "$(milter_log abuse)"; }
    ((runs > 0 && failed == 0)) || fail "the checked load had $failed failed runs of $runs"
    ((fd1 <= fd0)) || fail "descriptors: $fd0 before, $fd1 after the hostile connections closed"
    (($(jget connections "$abuse") >= ABUSE)) || fail "faults.py abuse: $abuse"
    (($(jget stalled_dropped "$abuse") == $(jget stalled "$abuse"))) ||
        fail "the daemon did not drop every stalled connection within 20 s: $abuse"
    # After all that, a fresh checked run still passes.
    out=$("$MILTER_TEST" bench "unix:$sock" -c 2 -n 100 -k 3 --rcpt-template alice@example.org \
        --rcpt-template carol@example.org --rcpt-template frank@example.org --rules "$R/rules/a.rules" \
        --instance "$INSTANCE" 2>&1) || fail "a checked run after the abuse failed: $out"
    milter_stop abuse >/dev/null 2>&1
}

part_4() {
    local sock=$SOCKDIR/soak.sock pid stop=$R/stop-4 t0 i=0 samples=$R/soak.samples warm
    say "[4] soak: ${SOAK}s of checked bench load, a reload every 5 s; RSS and descriptors sampled every second"
    milter_spawn soak "$R/rules/a.rules" "unix:$sock" "${DAEMON_ARGS[@]}" --log-level warning ||
        { fail "the daemon did not start"; return; }
    pid=${INST_PIDS[soak]}
    local fd_idle rss_idle
    fd_idle=$(fds "$pid") rss_idle=$(rss_kb "$pid")
    bench_loop bench-4 "$sock" "$stop"
    t0=$SECONDS
    : >"$samples"
    while ((SECONDS - t0 < SOAK)); do
        printf '%s %s %s %s\n' "$((SECONDS - t0))" "$(rss_kb "$pid")" "$(fds "$pid")" "$(threads "$pid")" >>"$samples"
        i=$((i + 1))
        ((i % 5 == 0)) && kill -USR1 "$pid"
        sleep 1
    done
    touch "$stop"
    inst_reap bench-4 120 || { fail "the bench load did not stop"; inst_kill bench-4 2; }
    inst_wait 10 "the daemon's descriptors back to $fd_idle" fds_at_most "$pid" "$fd_idle" >/dev/null 2>&1
    local fd_end rss_end runs messages failed
    fd_end=$(fds "$pid") rss_end=$(rss_kb "$pid")
    read -r runs messages failed <<<"$(bench_results bench-4)"
    warm=$((SOAK / 5))
    local stats
    stats=$(awk -v warm="$warm" '
        NR == 1 { rs = $2; fs = $3 }
        { re = $2; fe = $3; if ($2 > rm) rm = $2; if ($3 > fm) fm = $3; if ($4 > tm) tm = $4
          if ($1 <= warm) { rw = $2; fw = $3 } }
        END { printf "%d %d %d %d %d %d %d %d %d", rs, re, rm, rw, fs, fe, fm, fw, tm }' "$samples")
    local rs re rm rw fs fe fm fw tm
    read -r rs re rm rw fs fe fm fw tm <<<"$stats"
    figure "load: $runs bench runs, $messages messages verified, $failed failed runs, $((SOAK / 5)) reloads"
    figure "RSS (KiB): idle $rss_idle, start $rs, end $re, max $rm; after warm-up (${warm}s) $rw -> $re: growth $((re - rw)) KiB;" \
        "after the load $rss_end"
    figure "open descriptors: idle $fd_idle, start $fs, end $fe, max $fm; growth after warm-up $((fe - fw)); after the load $fd_end;" \
        "threads max $tm"
    inst_alive "$pid" || fail "the daemon died during the soak"
    ((runs > 0 && failed == 0)) || fail "the soak load had $failed failed runs of $runs"
    ((fd_end <= fd_idle)) || fail "descriptors: $fd_idle idle before the load, $fd_end after it"
    ((re - rw <= SOAK_RSS_LIMIT_KB)) || fail "RSS grew by $((re - rw)) KiB after warm-up (limit $SOAK_RSS_LIMIT_KB)"
    milter_stop soak >/dev/null 2>&1
}

# ---------------------------------------------------------------------------------------------
# Main

main() {
    local t0=$SECONDS passed=0 failed=0 p ts
    need || { say "faults: 0 passed, ${#PARTS[@]} failed"; exit 1; }
    if [[ -z ${SPLITMILTER:-} ]]; then
        swift_find && SPLITMILTER=$(swift_run build --show-bin-path 2>/dev/null)/splitmilter
    fi
    export SPLITMILTER
    MILTER_TEST=${MILTER_TEST:-$(dirname -- "${SPLITMILTER:-.}")/milter-test}
    if [[ ! -x ${SPLITMILTER:-} || ! -x $MILTER_TEST ]]; then
        say "faults: no daemon or milter-test at '${SPLITMILTER:-}' (build it, or set SPLITMILTER)" >&2
        say "faults: 0 passed, ${#PARTS[@]} failed"
        exit 1
    fi
    local f
    for f in a b; do
        "$SPLITMILTER" --check --rules "$HERE/fixtures/$f.rules" >/dev/null 2>&1 ||
            { say "faults: fixtures/$f.rules does not pass --check" >&2; exit 1; }
    done
    if "$SPLITMILTER" --check --rules "$HERE/fixtures/broken.rules" >/dev/null 2>&1; then
        say "faults: fixtures/broken.rules passes --check; it must not" >&2
        exit 1
    fi
    if ! setup; then
        say "faults: the set-up failed (see above)" >&2
        [[ -n ${R:-} ]] && inst_tail "$R/maillog" 20
        say "faults: 0 passed, ${#PARTS[@]} failed"
        exit 1
    fi
    say "faults: Postfix in $R (smtpd 127.0.0.1:$SMTP_PORT, sink :$SINK_PORT), $( ((SHORT)) && echo short || echo full) run, set-up $((SECONDS - t0))s"
    for p in "${PARTS[@]}"; do
        FAILED=0
        ts=$SECONDS
        "part_$p"
        if ((FAILED == 0)); then
            say "[$p] pass ($((SECONDS - ts))s)"
            passed=$((passed + 1))
        else
            say "[$p] FAIL: $FAILED check(s) failed ($((SECONDS - ts))s)"
            failed=$((failed + 1))
        fi
    done
    inst_cleanup
    say "faults: total time $((SECONDS - t0))s"
    say "faults: $passed passed, $failed failed"
    ((failed == 0))
}

main
