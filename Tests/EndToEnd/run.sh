#!/usr/bin/env bash
# Tests/EndToEnd/run.sh [SCENARIO...]: end-to-end tests of splitmilter with a real Postfix.
#
# One private Postfix instance (scripts/lib/instance.sh) gets one smtpd listener per scenario,
# each with its own splitmilter daemon and rule file (-o smtpd_milters=...), so the daemons are
# started once and stopped together at the end. smtp-sink processes play Google, a Google that
# rejects everything, and the primary MX of example.net. Scenario e adds a second private Postfix
# as the sending MTA. Scenarios:
#   a  split delivery             b  dual delivery (only-list, alias, per-user copy)
#   c  secondary MX (rewrite)     d  the copy is rejected: no bounce to the sender
#   e  milter down: 4xx, then Postfix's own retry   f  custom delivery agent via pipe(8)
#
# Environment: SPLITMILTER  the daemon binary (default: `swift build --show-bin-path`/splitmilter)
#              KEEP=1       keep the scratch directory (its path is printed)
#              VERBOSE=1    print every check, not only the failing ones
# The last line of output is "e2e: N passed, M failed" (N, M count scenarios); exit 1 if M > 0.

set -uo pipefail

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd -- "$HERE/../.." && pwd)
# shellcheck source=scripts/lib/instance.sh
source "$REPO/scripts/lib/instance.sh"

ALL_SCENARIOS=(a b c d e f)
declare -A TITLE=(
    [a]="split delivery: local mailbox + one copy at Google, except dave"
    [b]="dual delivery: only alice bob carol, allie (alias of alice) copies to alice"
    [c]="secondary MX: carol.smith@example.net rewritten to local carol"
    [d]="the Google copy is rejected with 550: no bounce to the sender"
    [e]="milter down: 4xx, nothing half-delivered; Postfix's retry delivers everything"
    [f]="custom delivery agent: rewrite to a pipe(8) transport"
)
declare -A RULES=([a]=split.rules [b]=dual.rules [c]=secondary-mx.rules [d]=bounce.rules [e]=split.rules [f]=mda.rules)

# ---------------------------------------------------------------------------------------------
# Checks

FAILED_CHECKS=0 # in the current scenario
SCENARIO=
MARK=0      # main maillog offset at the start of the current scenario
SMARK=0     # sender instance's maillog offset

say() { printf '%s\n' "$*"; }

# fail NAME EXPECTED FOUND: report one failed check with the logs that explain it.
fail() {
    local name=$1 expected=$2 found=$3
    FAILED_CHECKS=$((FAILED_CHECKS + 1))
    say "  FAIL $name"
    say "       expected: ${expected//$'\n'/$'\n                 '}"
    say "       found:    ${found:-(nothing)}" | sed '2,$s/^/                 /'
    if ((FAILED_CHECKS > 1)); then
        say "       (maillog and daemon log: see this scenario's first failure above)"
        return
    fi
    say "    --- maillog since the scenario started (last 15 lines)"
    pf_log_since "$R" "$MARK" | tail -n 15 | sed 's/^/    | /'
    if [[ $SCENARIO == e ]]; then
        say "    --- sending instance's maillog since the scenario started (last 10 lines)"
        pf_log_since "$R/sender" "$SMARK" | tail -n 10 | sed 's/^/    | /'
    fi
    inst_tail "$(milter_log "milter-$SCENARIO")" 15
}

ok() { [[ ${VERBOSE:-0} == 1 ]] && say "  ok   $1"; return 0; }

# expect_eq NAME EXPECTED FOUND
expect_eq() {
    if [[ $2 == "$3" ]]; then ok "$1"; else fail "$1" "$2" "$3"; fi
}
# expect_match NAME ERE TEXT: some line of TEXT matches ERE.
expect_match() {
    if grep -Eq -- "$2" <<<"$3"; then ok "$1"; else fail "$1" "a line matching /$2/" "$3"; fi
}
# expect_no_match NAME ERE TEXT
expect_no_match() {
    local hit
    hit=$(grep -E -- "$2" <<<"$3")
    if [[ -z $hit ]]; then ok "$1"; else fail "$1" "no line matching /$2/" "$hit"; fi
}

# ---------------------------------------------------------------------------------------------
# Sending and looking

RUN_ID=$(date +%H%M%S)-$$
msgid() { printf '%s-%s@e2e.test' "$1" "$RUN_ID"; }

# send PORT FROM TO[,TO...] MSGID [swaks options...]: submit one message; sets QID (empty if the
# message was not accepted) and SWAKS_LOG. The Subject is "e2e MSGID" unless given.
send() {
    local port=$1 from=$2 to=$3 id=$4
    shift 4
    SWAKS_LOG=$R/logs/swaks-${id%%@*}.log
    swaks --server "127.0.0.1:$port" --timeout 15 --ehlo client.e2e.test \
        --from "$from" --to "$to" --header "Message-Id: <$id>" --header "Subject: e2e $id" \
        "$@" >"$SWAKS_LOG" 2>&1
    SWAKS_RC=$?
    QID=$(sed -n 's/^<-  250 .*queued as \([0-9A-Za-z]*\).*/\1/p' "$SWAKS_LOG" | tail -n 1)
}

# expect_queued NAME: the last send was accepted.
expect_queued() {
    if [[ -n $QID ]]; then
        ok "$1 (queue id $QID)"
        return 0
    fi
    fail "$1" "250 ... queued as QID" "swaks exit $SWAKS_RC:"$'\n'"$(tail -n 8 "$SWAKS_LOG")"
    return 1
}

# mbox_count USER MSGID: how many copies of the message USER's mailbox holds (also counts the
# returned headers inside a bounce, which is how a DSN about MSGID is found).
mbox_count() {
    local f=$R/mail/$1.mbox
    [[ -f $f ]] || { echo 0; return; }
    grep -cixF -- "Message-Id: <$2>" "$f"
}

# sink_addrs SINK MSGID: the envelope recipients of that message at the sink, one per line, sorted.
sink_addrs() { sink_rcpts "$1" "$2" | awk '{print $1}' | sort; }

# wait_done QID: wait until the main queue is empty and QID is gone from it.
wait_done() {
    pf_wait_queue_empty "$R" 20 || true
    [[ -z ${1:-} ]] || pf_wait_log "$R" " $1: removed" 5 "$MARK" || true
}

# ---------------------------------------------------------------------------------------------
# Set-up

need() {
    local missing=() c
    for c in postfix postconf postqueue postsuper smtp-sink swaks script setsid ss; do
        command -v "$c" >/dev/null || missing+=("$c")
    done
    if ((${#missing[@]})); then
        say "run.sh: missing commands: ${missing[*]} (apt-get install postfix swaks util-linux iproute2)" >&2
        return 1
    fi
    if ((EUID != 0)); then
        say "run.sh: must run as root (private Postfix instance, smtp-sink -u nobody)" >&2
        return 1
    fi
}

setup() {
    inst_init splitmilter-e2e || return 1
    R=$INST_ROOT
    # Ports: listeners a..f, then the sinks and the sending instance.
    inst_pick_ports 10 20000 29999 || return 1
    local b=$INST_PORT_BASE i=0 s
    declare -gA PORT=()
    for s in "${ALL_SCENARIOS[@]}"; do PORT[$s]=$((b + i)); i=$((i + 1)); done
    GOOGLE_PORT=$((b + 6)) GOOGLE_DOWN_PORT=$((b + 7)) PRIMARY_PORT=$((b + 8)) SENDER_PORT=$((b + 9))

    pf_init "$R" mx.e2e.test || return 1
    pf_split_mx "$R" "$R/splitmilter.sock" "$GOOGLE_PORT" "$PRIMARY_PORT" \
        "gapps-down.example.org smtp:[127.0.0.1]:$GOOGLE_DOWN_PORT" || return 1
    for s in "${SELECTED[@]}"; do
        pf_listen "$R" "${PORT[$s]}" -o "smtpd_milters=unix:$R/milter-$s.sock" || return 1
    done

    if [[ " ${SELECTED[*]} " == *" e "* ]]; then
        # The sending MTA of scenario e: relays everything to the MX's scenario-e listener and
        # retries quickly. (Written now, started after the MX: see pf_start.)
        pf_init "$R/sender" sender.e2e.test || return 1
        pf_set "$R/sender" \
            "relayhost = [127.0.0.1]:${PORT[e]}" \
            "default_transport = smtp" "relay_transport = smtp" \
            "smtpd_recipient_restrictions = permit_mynetworks, reject" \
            "queue_run_delay = 2s" "minimal_backoff_time = 2s" "maximal_backoff_time = 4s" \
            "smtp_connect_timeout = 5s" || return 1
        pf_listen "$R/sender" "$SENDER_PORT" || return 1
    fi

    sink_start google "$GOOGLE_PORT" || return 1
    sink_start google-down "$GOOGLE_DOWN_PORT" -f RCPT -B "550 5.1.1 No such user here" || return 1
    sink_start primary "$PRIMARY_PORT" || return 1
    for s in "${SELECTED[@]}"; do
        milter_start "milter-$s" "$HERE/fixtures/${RULES[$s]}" "$R/milter-$s.sock" || return 1
    done

    pf_start "$R" || return 1
    if [[ -d $R/sender ]]; then
        pf_start "$R/sender" || return 1
        inst_wait_port "$SENDER_PORT" 10 || return 1
    fi
    for s in "${SELECTED[@]}"; do inst_wait_port "${PORT[$s]}" 10 || return 1; done
}

# reset: an empty queue, empty mailboxes and sinks, and a new maillog mark.
reset() {
    pf_wait_queue_empty "$R" 5 >/dev/null 2>&1 || pf_clear_queue "$R"
    rm -f "$R"/mail/*.mbox "$R"/mda/*.eml
    sink_clear google
    sink_clear google-down
    sink_clear primary
    MARK=$(pf_log_mark "$R")
    [[ -d $R/sender ]] && SMARK=$(pf_log_mark "$R/sender")
    return 0
}

# ---------------------------------------------------------------------------------------------
# Scenarios

scenario_a() {
    local p=${PORT[a]} id

    # a1: alice gets her local copy and exactly one Google copy, silent (NOTIFY=NEVER) and with
    # her original address as the DSN ORCPT.
    id=$(msgid a1)
    send "$p" sender@example.org alice@example.org "$id"
    expect_queued "a1 accepted" || return
    wait_done "$QID"
    expect_eq "a1 alice.mbox holds the message once" 1 "$(mbox_count alice "$id")"
    expect_eq "a1 Google got exactly alice@gapps.example.org" "<alice@gapps.example.org>" "$(sink_addrs google "$id")"
    expect_match "a1 the Google copy has NOTIFY=NEVER and ORCPT=rfc822;alice@example.org" \
        '^<alice@gapps\.example\.org> .*NOTIFY=NEVER' "$(sink_rcpts google "$id")"
    expect_match "a1 ... ORCPT" '^<alice@gapps\.example\.org> .*ORCPT=rfc822;alice@example\.org' "$(sink_rcpts google "$id")"
    expect_match "a1 the message carries X-Splitmilter-Copied" '^X-Splitmilter-Copied:' \
        "$(sink_dumps google "$id" | xargs -r cat)"
    expect_match "a1 maillog: local delivery sent" '^to=<alice@example\.org> .*relay=local .*status=sent' \
        "$(pf_deliveries "$R" "$QID" "$MARK")"
    expect_match "a1 maillog: Google delivery sent" \
        "^to=<alice@gapps\.example\.org> .*relay=127\.0\.0\.1\[127\.0\.0\.1\]:$GOOGLE_PORT .*status=sent" \
        "$(pf_deliveries "$R" "$QID" "$MARK")"
    expect_match "a1 the daemon logged a decision with the queue id and rule file:line" \
        "$QID.*split\.rules:[0-9]+|split\.rules:[0-9]+.*$QID" "$(cat "$(milter_log milter-a)")"

    # a2: dave is excepted, localhost and example.net have no rules: no copy for anyone.
    id=$(msgid a2)
    send "$p" sender@example.org dave@example.org,alice@localhost,zed@example.net "$id"
    expect_queued "a2 accepted" || return
    wait_done "$QID"
    expect_eq "a2 dave.mbox holds the message once" 1 "$(mbox_count dave "$id")"
    expect_eq "a2 alice.mbox (alice@localhost) holds the message once" 1 "$(mbox_count alice "$id")"
    expect_eq "a2 the primary MX got exactly zed@example.net" "<zed@example.net>" "$(sink_addrs primary "$id")"
    expect_eq "a2 Google got nothing" "" "$(sink_addrs google "$id")"
    expect_no_match "a2 maillog: no delivery to gapps" 'gapps' "$(pf_deliveries "$R" "$QID" "$MARK")"

    # a3: recipient extensions (delimiter +): %u keeps the extension; dave+x is still dave.
    id=$(msgid a3)
    send "$p" sender@example.org alice+news@example.org,dave+news@example.org "$id"
    expect_queued "a3 accepted" || return
    wait_done "$QID"
    expect_eq "a3 alice.mbox holds the message once" 1 "$(mbox_count alice "$id")"
    expect_eq "a3 dave.mbox holds the message once" 1 "$(mbox_count dave "$id")"
    expect_eq "a3 Google got exactly alice+news@gapps.example.org" "<alice+news@gapps.example.org>" \
        "$(sink_addrs google "$id")"
}

scenario_b() {
    local p=${PORT[b]} id n

    # b1: one message for alice, bob, carol, allie (alias of alice) and dave (not listed).
    id=$(msgid b1)
    send "$p" sender@example.org alice@example.org,bob@example.org,carol@example.org,allie@example.org,dave@example.org "$id"
    expect_queued "b1 accepted" || return
    wait_done "$QID"
    expect_eq "b1 Google got alice, bob and carol exactly once each" \
        $'<alice@gapps.example.org>\n<bob@gapps.example.org>\n<carol@gapps.example.org>' \
        "$(sink_addrs google "$id")"
    expect_eq "b1 bob.mbox holds the message once" 1 "$(mbox_count bob "$id")"
    expect_eq "b1 carol.mbox holds the message once" 1 "$(mbox_count carol "$id")"
    expect_eq "b1 dave.mbox holds the message once" 1 "$(mbox_count dave "$id")"
    n=$(mbox_count alice "$id")
    # Postfix itself delivers alice@ and allie@ (-> alice) separately: the two recipients have
    # different original recipients, so local(8) does not merge them. Not the milter's doing.
    if ((n >= 1)); then ok "b1 alice.mbox holds $n copies (alice + allie->alice)"; else
        fail "b1 alice.mbox holds the message" "1 or 2 copies" "$n"; fi
    [[ ${VERBOSE:-0} == 1 ]] && say "  note b1: alice.mbox has $n copies of the message (one for alice@, one for allie@)"

    # b2: allie alone: her per-user rule copies to alice's Google mailbox.
    id=$(msgid b2)
    send "$p" sender@example.org allie@example.org "$id"
    expect_queued "b2 accepted" || return
    wait_done "$QID"
    expect_eq "b2 Google got exactly alice@gapps.example.org" "<alice@gapps.example.org>" "$(sink_addrs google "$id")"
    expect_match "b2 the copy's ORCPT is allie's address" '^<alice@gapps\.example\.org> .*ORCPT=rfc822;allie@example\.org' \
        "$(sink_rcpts google "$id")"
    expect_eq "b2 alice.mbox holds the message once" 1 "$(mbox_count alice "$id")"
}

scenario_c() {
    local p=${PORT[c]} id

    # c1: carol.smith@example.net is taken out of the relay stream and delivered to local carol.
    id=$(msgid c1)
    send "$p" sender@example.org carol.smith@example.net "$id"
    expect_queued "c1 accepted" || return
    wait_done "$QID"
    expect_eq "c1 carol.mbox holds the message once" 1 "$(mbox_count carol "$id")"
    expect_eq "c1 the primary MX got nothing" "" "$(sink_addrs primary "$id")"
    expect_match "c1 maillog: delivered to carol@example.org locally" \
        '^to=<carol@example\.org> .*relay=local .*status=sent' "$(pf_deliveries "$R" "$QID" "$MARK")"
    expect_no_match "c1 maillog: no delivery attempt to carol.smith@example.net" \
        '^to=<carol\.smith@example\.net>' "$(pf_deliveries "$R" "$QID" "$MARK")"

    # c2: zed@example.net still goes to the primary MX, next to a rewritten carol.smith.
    id=$(msgid c2)
    send "$p" sender@example.org zed@example.net,carol.smith@example.net "$id"
    expect_queued "c2 accepted" || return
    wait_done "$QID"
    expect_eq "c2 the primary MX got exactly zed@example.net" "<zed@example.net>" "$(sink_addrs primary "$id")"
    expect_eq "c2 carol.mbox holds the message once" 1 "$(mbox_count carol "$id")"
}

scenario_d() {
    local p=${PORT[d]} id0 id

    # d0 (control, proves the check can see a bounce): a plain recipient at the rejecting
    # sink bounces to the local sender.
    id0=$(msgid d0)
    send "$p" sender@example.org someone@gapps-down.example.org "$id0"
    expect_queued "d0 control accepted" || return
    wait_done "$QID"
    pf_wait_log "$R" " to=<sender@example\.org>.*status=sent" 10 "$MARK" || true
    expect_eq "d0 control: the plain recipient's 550 bounced to sender.mbox" 1 "$(mbox_count sender "$id0")"

    # d1: alice's copy is rejected with 550; Postfix must not tell the sender.
    id=$(msgid d1)
    send "$p" sender@example.org alice@example.org "$id"
    expect_queued "d1 accepted" || return
    wait_done "$QID"
    local log
    log=$(pf_deliveries "$R" "$QID" "$MARK")
    expect_eq "d1 alice.mbox holds the message once (local delivery still happens)" 1 "$(mbox_count alice "$id")"
    expect_match "d1 maillog: the copy was rejected (status=bounced)" \
        '^to=<alice@gapps-down\.example\.org> .*status=bounced .*550' "$log"
    expect_no_match "d1 maillog: no sender notification for $QID" \
        " $QID: sender (non-delivery|delivery status) notification" "$(pf_log_since "$R" "$MARK")"
    expect_eq "d1 no DSN about the message in sender.mbox" 0 "$(mbox_count sender "$id")"
    expect_no_match "d1 maillog: nothing delivered to the sender" '^to=<sender@example\.org>' \
        "$(pf_log_since "$R" "$MARK" | grep -F ' to=<sender@example.org>' | grep -v "$id0")"
}

scenario_e() {
    local p=${PORT[e]} id sqid rc

    # The daemon goes down (SIGTERM; libmilter needs up to ~5 s to notice).
    milter_stop milter-e 6
    rc=$?
    expect_eq "e the daemon exits on SIGTERM within 6 s" 0 "$rc"

    # Direct submission: Postfix answers 4xx, nothing queued.
    id=$(msgid e0)
    send "$p" sender@example.org alice@example.org "$id"
    expect_eq "e0 not accepted while the milter is down" "" "$QID"
    expect_match "e0 the client got a 4xx" '^<\*\* +4[0-9][0-9] ' "$(cat "$SWAKS_LOG")"

    # Through the sending MTA: it gets 4xx and keeps the message.
    id=$(msgid e1)
    send "$SENDER_PORT" sender@example.org alice@example.org,dave@example.org "$id"
    expect_queued "e1 accepted by the sending MTA" || return
    sqid=$QID
    pf_wait_log "$R/sender" " $sqid: to=<alice@example\.org>.*status=deferred" 20 "$SMARK" || true
    expect_match "e1 the sending MTA deferred it with a 4xx from the MX" \
        '^to=<alice@example\.org> .*status=deferred .*said: 4[0-9][0-9] ' "$(pf_deliveries "$R/sender" "$sqid" "$SMARK")"
    expect_eq "e1 nothing in alice.mbox yet" 0 "$(mbox_count alice "$id")"
    expect_eq "e1 nothing in dave.mbox yet" 0 "$(mbox_count dave "$id")"
    expect_eq "e1 nothing at Google yet" "" "$(sink_addrs google "$id")"
    expect_no_match "e1 the MX did not queue it" "message-id=<$id>" "$(pf_log_since "$R" "$MARK")"
    if pf_queue_empty "$R"; then ok "e1 the MX queue is empty"; else
        fail "e1 the MX queue is empty" "Mail queue is empty" "$(pf_queue "$R")"; fi

    # The daemon comes back on the same (now stale) socket; Postfix's retry delivers everything.
    milter_start milter-e "$HERE/fixtures/${RULES[e]}" "$R/milter-e.sock" ||
        { fail "e the daemon restarts on its stale socket" "listening" "not listening"; return; }
    pf_flush "$R/sender" >/dev/null
    pf_wait_log "$R/sender" " $sqid: removed" 20 "$SMARK" || true
    expect_match "e1 the sending MTA delivered it on retry" \
        "^to=<alice@example\.org> .*relay=127\.0\.0\.1\[127\.0\.0\.1\]:$p .*status=sent" \
        "$(pf_deliveries "$R/sender" "$sqid" "$SMARK")"
    wait_done ""
    expect_eq "e1 alice.mbox holds the message once" 1 "$(mbox_count alice "$id")"
    expect_eq "e1 dave.mbox holds the message once" 1 "$(mbox_count dave "$id")"
    expect_eq "e1 Google got exactly alice@gapps.example.org" "<alice@gapps.example.org>" "$(sink_addrs google "$id")"
}

scenario_f() {
    local p=${PORT[f]} id token body files f
    id=$(msgid f1)
    token="f1-$RANDOM$RANDOM"
    body=$R/logs/f1.body
    printf '%s\n' "Hello Frank," "" "this line has   three spaces and a trailing tab	" \
        ".a line that starts with a dot" "From the start of a line" "Ünïcödé: ✓" "-- " "e2e $token" >"$body"
    send "$p" sender@example.org frank@example.org "$id" \
        --header "X-E2E-Token: $token" --header "Subject: f1 custom agent $token" \
        --header "Content-Type: text/plain; charset=utf-8" --body "@$body"
    expect_queued "f1 accepted" || return
    wait_done "$QID"
    expect_match "f1 maillog: delivered through the mda pipe" \
        '^to=<frank@mda\.example\.test> .*relay=mda .*status=sent' \
        "$(pf_deliveries "$R" "$QID" "$MARK")"
    expect_eq "f1 frank's local mailbox got nothing" 0 "$(mbox_count frank "$id")"
    files=$(cd "$R/mda" && ls -1 -- *.eml 2>/dev/null)
    expect_match "f1 the agent stored exactly one file, for frank@mda.example.test" \
        '^frank@mda\.example\.test\.[^.]+\.eml$' "$files"
    expect_eq "f1 ... and only that" 1 "$(grep -c . <<<"$files")"
    f=$R/mda/$(head -n 1 <<<"$files")
    [[ -f $f ]] || return
    local head got_body
    head=$(sed '/^$/q' "$f")
    got_body=$(sed '1,/^$/d' "$f")
    expect_match "f1 Subject intact" "^Subject: f1 custom agent $token\$" "$head"
    expect_match "f1 X-E2E-Token intact" "^X-E2E-Token: $token\$" "$head"
    expect_match "f1 Message-Id intact" "^Message-Id: <$id>\$" "$head"
    expect_match "f1 Return-Path added by pipe flags=R" '^Return-Path: <sender@example\.org>$' "$head"
    expect_eq "f1 body intact, line for line" "$(cat "$body")" "$got_body"
}

# ---------------------------------------------------------------------------------------------
# Main

main() {
    local s
    SELECTED=()
    for s in "$@"; do
        if [[ -z ${TITLE[$s]:-} ]]; then
            say "usage: $0 [$(IFS='|'; echo "${ALL_SCENARIOS[*]}")]..." >&2
            exit 2
        fi
        [[ " ${SELECTED[*]} " == *" $s "* ]] || SELECTED+=("$s")
    done
    ((${#SELECTED[@]})) || SELECTED=("${ALL_SCENARIOS[@]}")

    local t0=$SECONDS passed=0 failed=0 ran=()
    need || { say "e2e: 0 passed, ${#SELECTED[@]} failed"; exit 1; }
    if [[ -z ${SPLITMILTER:-} ]]; then
        SPLITMILTER=$(cd "$REPO" && swift build --show-bin-path 2>/dev/null)/splitmilter
    fi
    export SPLITMILTER
    if [[ ! -x $SPLITMILTER ]]; then
        say "run.sh: no daemon binary at $SPLITMILTER (build it, or set SPLITMILTER)" >&2
        say "e2e: 0 passed, ${#SELECTED[@]} failed"
        exit 1
    fi

    # Every fixture must pass the daemon's own --check first: a broken fixture fails its
    # scenario with the daemon's message, not with a mysterious delivery mismatch.
    local bad=()
    for s in "${SELECTED[@]}"; do
        local out
        if ! out=$("$SPLITMILTER" --rules "$HERE/fixtures/${RULES[$s]}" --check 2>&1 </dev/null); then
            say "[$s] ${TITLE[$s]}"
            say "  FAIL $s: splitmilter --check fixtures/${RULES[$s]}"
            printf '%s\n' "$out" | sed 's/^/    | /'
            bad+=("$s")
        else
            ran+=("$s")
        fi
    done
    failed=${#bad[@]}
    SELECTED=("${ran[@]}")

    if ((${#SELECTED[@]})); then
        if ! setup; then
            say "run.sh: setting up the private Postfix instance failed (see above)" >&2
            [[ -n ${R:-} ]] && inst_tail "$R/maillog" 20
            inst_cleanup
            say "e2e: 0 passed, $((failed + ${#SELECTED[@]})) failed"
            exit 1
        fi
        say "e2e: Postfix in $R, scenario ports ${PORT[a]}-${PORT[f]}, set-up took $((SECONDS - t0))s"
        for s in "${SELECTED[@]}"; do
            SCENARIO=$s
            FAILED_CHECKS=0
            reset
            local ts=$SECONDS
            say "[$s] ${TITLE[$s]}"
            "scenario_$s"
            if ((FAILED_CHECKS == 0)); then
                say "[$s] pass ($((SECONDS - ts))s)"
                passed=$((passed + 1))
            else
                say "[$s] FAIL: $FAILED_CHECKS check(s) failed ($((SECONDS - ts))s)"
                failed=$((failed + 1))
            fi
        done
        inst_cleanup
    fi
    say "e2e: total time $((SECONDS - t0))s" >&2
    say "e2e: $passed passed, $failed failed"
    ((failed == 0))
}

main "$@"
