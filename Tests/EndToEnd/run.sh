#!/usr/bin/env bash
# Tests/EndToEnd/run.sh [SCENARIO...]: end-to-end tests of splitmilter with a real Postfix.
#
# One private Postfix instance (scripts/lib/instance.sh) gets one smtpd listener per scenario,
# each with its own splitmilter daemon and rule file (-o smtpd_milters=...), so the daemons are
# started once and stopped together at the end. smtp-sink processes play Google, a Google that
# rejects everything, and the primary MX of example.net. Scenario e adds a second private Postfix
# as the sending MTA; scenario g a second listener whose milter is on inet:127.0.0.1; scenario l a
# dnsmasq on 127.0.0.53 and a second daemon that refreshes on a schedule; scenario m has no
# listener (it runs milter-test explain); scenario n's daemon is also the instance's
# non_smtpd_milters, for mail submitted with Postfix's own sendmail(1). Scenario o has a third
# private Postfix that logs to syslog like a stock one, a daemon with --log syslog, and a private
# rsyslogd on /dev/log: with o selected, the run happens in a private mount namespace
# (unshare --mount), where rsyslogd's socket is bind-mounted over /dev/log. Clients of j, k, l come from 127.0.0.2-5 (swaks
# --local-interface); scenario j's listener offers SASL PLAIN (fixtures/fake-dovecot-auth.pl).
# Laid out as a Debian server with the package: master.cf chroots smtpd (and cleanup, pickup, ...)
# to the queue directory R/q; the daemons run as an unprivileged user (--user MILTER_USER,
# default nobody) with copies of the rule files, their sockets in R/q/splitmilter (mode 2750,
# group postfix: /var/spool/postfix/splitmilter), named unix:/splitmilter/NAME.sock in master.cf.
# Scenarios:
#   a  split delivery             b  dual delivery (only-list, alias, per-user copy)
#   c  secondary MX (rewrite)     d  the copy is rejected: no bounce to the sender
#   e  milter down: 4xx, then Postfix's own retry   f  custom delivery agent via pipe(8)
#   g  --socket: mode and group, live / stale / non-socket paths, inet:
#   h  SIGUSR1 reloads the rules (a broken file keeps the old ones); SIGTERM and SIGHUP stop it
#   i  hostile local parts through Postfix: delivered, never copied, logged; the daemon carries on
#   j  allow-clients: per-client verdicts at RCPT, allow-any, trusted-networks, SASL login
#   k  known users: unknown ones refused at RCPT, no bounce queued
#   l  spf: sources from a real DNS server: include chain, loop, change + SIGUSR1, DNS down, the
#      cache at restart, the refresh schedule
#   m  milter-test explain --client: the guard verdict and why
#   n  sendmail(1) submissions (pickup, cleanup, non_smtpd_milters): one copy; the daemon down:
#      the message waits in the maildrop queue, then gets its copy; guarded domains: no guard
#      refuses a local submission (Postfix could not take it), the same recipients over SMTP are
#      refused
#   o  --log syslog: the decision line, facility mail, in one file with Postfix's own lines
#   p  --metrics: the counters scraped from the daemon equal what Postfix's maillog and the sinks
#      show; promtool accepts the page; a shadow section copies nothing and refuses nobody until a
#      reload makes it live
#
# Environment: SPLITMILTER  the daemon binary (default: `swift build --show-bin-path`/splitmilter);
#                           milter-test is taken from the same directory (scenario m)
#              KEEP=1       keep the scratch directory (its path is printed)
#              VERBOSE=1    print every check, not only the failing ones
#              MILTER_USER  the user the daemons run as (default nobody)
# The last line of output is "e2e: N passed, M failed" (N, M count scenarios); exit 1 if M > 0.

set -uo pipefail

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd -- "$HERE/../.." && pwd)
# shellcheck source=scripts/lib/instance.sh
source "$REPO/scripts/lib/instance.sh"
# shellcheck source=scripts/lib/swift.sh
source "$REPO/scripts/lib/swift.sh"

ALL_SCENARIOS=(a b c d e f g h i j k l m n o p)
declare -A TITLE=(
    [a]="split delivery: local mailbox + one copy at Google, except dave"
    [b]="dual delivery: only alice bob carol, allie (alias of alice) copies to alice"
    [c]="secondary MX: carol.smith@example.net rewritten to local carol"
    [d]="the Google copy is rejected with 550: no bounce to the sender"
    [e]="milter down: 4xx, nothing half-delivered; Postfix's retry delivers everything"
    [f]="custom delivery agent: rewrite to a pipe(8) transport"
    [g]="sockets: mode and group; a live socket is kept, a stale one replaced, a file refused; inet:"
    [h]="SIGUSR1 reloads the rules, a broken file keeps the old ones; SIGTERM and SIGHUP stop it"
    [i]="hostile local parts: delivered, no copy, a warning; the daemon keeps serving"
    [j]="allowed clients: 127.0.0.2 may send to cache.example, 127.0.0.3 gets 550 5.7.1 per recipient"
    [k]="known users: mallory gets 550 5.1.1 at RCPT, alice and bob are delivered, no bounce"
    [l]="spf: sources from dnsmasq: the allowed set follows the record, survives DNS down and a restart"
    [m]="milter-test explain --client: reject and accept, with the reason"
    [n]="sendmail(1) through non_smtpd_milters: one copy; daemon down: kept, copied later; guards pass it"
    [o]="--log syslog: the copy decision with facility mail, next to Postfix's lines for the queue id"
    [p]="--metrics: the counters equal Postfix's maillog; a shadow section acts only once a reload makes it live"
)
declare -A RULES=([a]=split.rules [b]=dual.rules [c]=secondary-mx.rules [d]=bounce.rules [e]=split.rules
    [f]=mda.rules [g]=split.rules [h]=reload.rules [i]=split.rules [j]=guard.rules [k]=known.rules
    [l]=provider.rules [m]=provider.rules [n]=sendmail.rules [o]=split.rules [p]=observe.rules)

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
    local log
    for log in "$R/logs/milter-$SCENARIO".log "$R/logs/milter-$SCENARIO"-*.log; do
        [[ -e $log ]] && inst_tail "$log" 15
    done
    if [[ $SCENARIO == [lm] ]]; then inst_tail "$R/logs/dns.log" 10; fi
    if [[ $SCENARIO == o ]]; then inst_tail "$R/syslog/mail.log" 15; fi
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
# expect_contains NAME STRING TEXT: TEXT contains STRING (no regular expression).
expect_contains() {
    if [[ $3 == *"$2"* ]]; then ok "$1"; else fail "$1" "a line containing '$2'" "$3"; fi
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
    for c in postfix postconf postqueue postsuper sendmail smtp-sink swaks script setsid ss timeout; do
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
    # Ports: listeners a..m, then the sinks, the sending instance, scenario g's inet listener and
    # the port of its milter, scenario l's second listener, scenario k's listener without a milter,
    # the DNS server's port (on 127.0.0.53) and scenario p's metrics listener.
    local n=${#ALL_SCENARIOS[@]}
    inst_pick_ports $((n + 10)) 20000 29999 || return 1
    local b=$INST_PORT_BASE i=0 s
    declare -gA PORT=()
    for s in "${ALL_SCENARIOS[@]}"; do PORT[$s]=$((b + i)); i=$((i + 1)); done
    GOOGLE_PORT=$((b + n)) GOOGLE_DOWN_PORT=$((b + n + 1)) PRIMARY_PORT=$((b + n + 2))
    SENDER_PORT=$((b + n + 3)) G_INET_PORT=$((b + n + 4)) G_MILTER_PORT=$((b + n + 5))
    L_SCHED_PORT=$((b + n + 6)) PLAIN_PORT=$((b + n + 7)) DNS_PORT=$((b + n + 8)) METRICS_PORT=$((b + n + 9))
    DNS_SPEC=$DNS_ADDR:$DNS_PORT

    # The MX is laid out as on Debian: its master.cf chroots smtpd (and cleanup, pickup, ...) to
    # the queue directory, and the daemons' sockets are in R/q/splitmilter (the packaged
    # /var/spool/postfix/splitmilter: setgid, group postfix), which smtpd names
    # unix:/splitmilter/NAME.sock. The daemons run as MILTER_USER (nobody), so they read copies of
    # the rule files (the checkout may be where nobody cannot read, e.g. /root) and write their
    # spf caches to R/state (the packaged /var/lib/splitmilter).
    pf_init "$R" mx.e2e.test --chroot || return 1
    SOCKDIR=$(milter_socket_dir "$R") || return 1
    STATE=$(milter_state_dir "$R/state") || return 1
    mkdir -p "$R/fixtures" && cp -- "$HERE"/fixtures/*.rules "$R/fixtures/" && chmod -R a+rX "$R/fixtures" || return 1
    FIXTURES=$R/fixtures
    pf_split_mx "$R" /splitmilter/splitmilter.sock "$GOOGLE_PORT" "$PRIMARY_PORT" \
        "gapps-down.example.org smtp:[127.0.0.1]:$GOOGLE_DOWN_PORT" || return 1
    guarded_domains || return 1
    if selected j; then
        # Scenario j's clients may log in: SASL PLAIN through Postfix's dovecot client, answered by
        # the test's auth server (user carol, password e2e-secret), on R/q/sasl/auth: the path is
        # relative to the queue directory, chroot or not.
        LISTEN_OPTS[j]+=" -o smtpd_sasl_auth_enable=yes -o smtpd_sasl_type=dovecot -o smtpd_sasl_path=sasl/auth"
        mkdir -p "$R/q/sasl" || return 1
        inst_spawn sasl "$R/logs/sasl.log" perl "$HERE/fixtures/fake-dovecot-auth.pl" "$R/q/sasl/auth" carol e2e-secret
        inst_wait 10 "the SASL server's socket $R/q/sasl/auth" test -S "$R/q/sasl/auth" || return 1
    fi
    for s in "${SELECTED[@]}"; do
        has_listener "$s" || continue
        pf_listen "$R" "${PORT[$s]}" --chroot -o "smtpd_milters=unix:/splitmilter/milter-$s.sock" "${LISTEN_OPTS[$s]:-}" || return 1
    done
    if selected g; then
        pf_listen "$R" "$G_INET_PORT" --chroot -o "smtpd_milters=inet:127.0.0.1:$G_MILTER_PORT" || return 1
    fi
    if selected k; then
        pf_listen "$R" "$PLAIN_PORT" --chroot -o "smtpd_milters=" "${LISTEN_OPTS[k]}" || return 1
    fi
    if selected l; then
        pf_listen "$R" "$L_SCHED_PORT" --chroot -o "smtpd_milters=unix:/splitmilter/milter-l-sched.sock" "${LISTEN_OPTS[l]}" || return 1
        # The daemons of scenario l resolve spf:provider.example when they start.
        dns_serve 127.0.0.2 || return 1
    fi
    if selected i; then hostile_mailboxes || return 1; fi
    # Scenario o's own set-up: when it fails, only scenario o fails (saying why).
    if selected o && ! syslog_instance; then O_UNAVAILABLE=${O_UNAVAILABLE:-"setting up its instance failed (see above)"}; fi
    if selected n; then
        # Mail submitted with sendmail(1) never meets smtpd: cleanup (chrooted, as on Debian) asks
        # non_smtpd_milters; milter_default_action = tempfail is already set (pf_mx_config).
        pf_set "$R" "non_smtpd_milters = unix:/splitmilter/milter-n.sock" || return 1
    fi

    if selected e; then
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
        has_daemon "$s" || continue
        start_milter "$s" || return 1
    done

    pf_start "$R" || return 1
    if selected o && [[ -z ${O_UNAVAILABLE:-} ]] && ! { pf_start "$R/syslog" && inst_wait_port "${PORT[o]}" 10; }; then
        O_UNAVAILABLE="its Postfix instance did not start (see above)"
    fi
    if [[ -d $R/sender ]]; then
        pf_start "$R/sender" || return 1
        inst_wait_port "$SENDER_PORT" 10 || return 1
    fi
    for s in "${SELECTED[@]}"; do
        has_listener "$s" || continue
        inst_wait_port "${PORT[$s]}" 10 || return 1
    done
}

selected() { [[ " ${SELECTED[*]} " == *" $1 "* ]]; }
# has_listener SCENARIO: the scenario has its own smtpd listener on the main instance (m runs
# milter-test only; o has an instance of its own). n's daemon serves its listener and the
# instance's sendmail(1) submissions (non_smtpd_milters).
# has_daemon SCENARIO: it has its own daemon.
has_listener() { [[ $1 != [mo] ]]; }
has_daemon() { [[ $1 != m ]]; }

# The clients of scenarios j, k, l come from 127.0.0.2-5, which /etc/hosts may not name: no
# reverse lookup, so that no DNS outside the box is asked (or waited for).
declare -A LISTEN_OPTS=([j]="-o smtpd_peername_lookup=no" [k]="-o smtpd_peername_lookup=no"
    [l]="-o smtpd_peername_lookup=no")

# guarded_domains: cache.example and users.example (scenarios j, k, l) are virtual alias domains
# whose every user Postfix accepts (a catch-all to the same user @example.org): a recipient
# refused there is refused by the milter alone. Without the milter, an unknown user would be
# accepted and bounced later by local(8): the backscatter that `known` prevents (scenario k).
guarded_domains() {
    pf_set "$R" "virtual_alias_domains = cache.example, users.example" || return 1
    printf '%s\n' '@cache.example @example.org' '@users.example @example.org' >>"$R/pf/virtual"
}

# start_milter SCENARIO: the scenario's daemon on unix:ROOT/milter-SCENARIO.sock.
start_milter() {
    local s=$1
    case $s in
    g) # Mode 0620, not the default 0660, so that scenario g sees the option applied.
        milter_spawn milter-g "$FIXTURES/${RULES[g]}" "unix:$SOCKDIR/milter-g.sock" \
            --socket-mode 0620 --socket-group postfix ;;
    l) # Refreshes on SIGUSR1 only; and a second daemon, every 2 s without a signal.
        start_spf_milter milter-l 0 "$STATE/spf.cache" &&
            start_spf_milter milter-l-sched 2 "$STATE/spf-sched.cache" ;;
    o) # Logs to syslog, in the socket directory of scenario o's own instance.
        [[ -z ${O_UNAVAILABLE:-} ]] || return 0
        milter_spawn milter-o "$FIXTURES/${RULES[o]}" "unix:$R/syslog/q/splitmilter/milter-o.sock" --log syslog ;;
    p) # Its rule file is a scratch copy that the scenario rewrites; the metrics page on loopback.
        cp -- "$FIXTURES/${RULES[p]}" "$R/observe.rules" &&
            milter_spawn milter-p "$R/observe.rules" "unix:$SOCKDIR/milter-p.sock" \
                --metrics "127.0.0.1:$METRICS_PORT" ;;
    h) # Its rule file is a scratch copy that the scenario rewrites.
        cp -- "$FIXTURES/${RULES[h]}" "$R/reload.rules" &&
            milter_start milter-h "$R/reload.rules" "$SOCKDIR/milter-h.sock" ;;
    *) milter_start "milter-$s" "$FIXTURES/${RULES[$s]}" "$SOCKDIR/milter-$s.sock" ;;
    esac
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
    local p=${PORT[a]} id pid

    # a0: laid out as packaged: the daemon, started as root with --user, runs as MILTER_USER; its
    # socket in the setgid socket directory has group postfix (mode 0660, opened before the switch).
    pid=${INST_PIDS[milter-a]:-}
    expect_eq "a0 the daemon runs as $MILTER_USER" "$MILTER_USER" "$(ps -o user= -p "$pid" 2>&1)"
    expect_contains "a0 ... and says so" "milter-a.sock as user $MILTER_USER " "$(cat "$(milter_log milter-a)")"
    expect_eq "a0 the socket directory: mode 2750, owner $MILTER_USER, group postfix" \
        "2750 $MILTER_USER postfix" "$(stat -c '%a %U %G' -- "$SOCKDIR" 2>&1)"
    expect_eq "a0 the socket: mode 660, group postfix" "socket 660 postfix" \
        "$(stat -c '%F %a %G' -- "$SOCKDIR/milter-a.sock" 2>&1)"

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
    # ... through an smtpd chrooted to the queue directory (it reached unix:/splitmilter/milter-a.sock).
    pid=$(pgrep -f -- "^smtpd -n 127\.0\.0\.1:$p -t inet" | head -n 1)
    expect_eq "a1 the listener's smtpd runs chrooted to $R/q" "$R/q" "$(readlink "/proc/${pid:-none}/root" 2>&1)"

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

    # The daemon goes down (SIGTERM).
    milter_stop milter-e 10
    rc=$?
    expect_eq "e the daemon exits on SIGTERM within 10 s" 0 "$rc"

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
    milter_start milter-e "$FIXTURES/${RULES[e]}" "$SOCKDIR/milter-e.sock" ||
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
# Daemon helpers for scenarios g, h, i

# daemon_log_since NAME OFFSET: what the daemon NAME logged after byte OFFSET of its log.
daemon_log_since() { tail -c +"$((${2:-0} + 1))" "$(milter_log "$1")" 2>/dev/null; }
daemon_log_mark() { stat -c %s "$(milter_log "$1")" 2>/dev/null || echo 0; }
# grep reads to the end (no -q): a writer cut off by SIGPIPE would fail the pipeline under pipefail.
daemon_log_has() { daemon_log_since "$1" "$3" | grep -E -- "$2" >/dev/null; }
# wait_daemon_log NAME ERE TIMEOUT OFFSET: wait for a line matching ERE in NAME's log after OFFSET.
wait_daemon_log() {
    inst_wait "$3" "/$2/ in the log of $1" daemon_log_has "$1" "$2" "$4"
}

# daemon_once LOG ARGS...: run the daemon (as MILTER_USER) in the foreground for a start that
# must fail; bounded: SIGTERM after 10 s (exit 124: it started serving), SIGKILL 3 s later. Sets
# ONCE_RC.
daemon_once() {
    local log=$1
    shift
    milter_user_args
    timeout -k 3 10 "$SPLITMILTER" "${MILTER_USER_ARGS[@]}" "$@" </dev/null >"$log" 2>&1
    ONCE_RC=$?
}

# expect_refused NAME LOG STRING: the last daemon_once exited with an error (not by the timeout)
# and its output contains STRING.
expect_refused() {
    if ((ONCE_RC != 0 && ONCE_RC != 124 && ONCE_RC != 137)); then
        ok "$1 (exit $ONCE_RC)"
    else
        fail "$1" "a non-zero exit before serving (not 124/137: killed by the 10 s timeout)" \
            "exit $ONCE_RC:"$'\n'"$(tail -n 5 "$2")"
    fi
    expect_contains "$1: the message" "$3" "$(cat "$2")"
}

# expect_daemon_alive NAME CHECK
expect_daemon_alive() {
    if inst_alive "${INST_PIDS[$1]:-}"; then ok "$2"; else fail "$2" "$1 running" "not running"; fi
}

# expect_copy_to_alice CHECK PORT: one message to alice through PORT gets her local delivery and
# exactly one Google copy.
expect_copy_to_alice() {
    local check=$1 port=$2 id
    id=$(msgid "$check")
    send "$port" sender@example.org alice@example.org "$id"
    expect_queued "$check accepted" || return 1
    wait_done "$QID"
    expect_eq "$check alice.mbox holds the message once" 1 "$(mbox_count alice "$id")"
    expect_eq "$check Google got exactly alice@gapps.example.org" "<alice@gapps.example.org>" \
        "$(sink_addrs google "$id")"
}

# ---------------------------------------------------------------------------------------------
# Scenario g: the daemon's --socket handling

scenario_g() {
    local sock=$SOCKDIR/milter-g.sock rules=$FIXTURES/${RULES[g]} log inode f before sum
    local socket_options=(--socket-mode 0620 --socket-group postfix)

    # g1: the socket has the mode and group asked for (the owner is the daemon's user). 0620,
    # not the default 0660, shows the option is applied: connect(2) on a unix socket needs only
    # write permission, so Postfix's smtpd (user postfix, group postfix) still gets in.
    expect_eq "g1 stat: a socket, mode 620, owner root, group postfix" "socket 620 root postfix" \
        "$(stat -c '%F %a %U %G' -- "$sock" 2>&1)"
    expect_copy_to_alice g1 "${PORT[g]}" || return
    expect_no_match "g1 maillog: smtpd had no trouble connecting to the milter" \
        'warning: .*[Mm]ilter' "$(pf_log_since "$R" "$MARK")"
    # ... and values other than Postfix's are applied as well. (This daemon serves no listener;
    # the cleanup stops it with the others, in parallel, rather than waiting here for libmilter.)
    milter_spawn milter-g-other "$rules" "unix:$SOCKDIR/milter-g-other.sock" --socket-mode 0600 --socket-group nogroup ||
        { fail "g1 a daemon with --socket-mode 0600 --socket-group nogroup starts" "listening" "see above"; return; }
    expect_eq "g1 stat with --socket-mode 0600 --socket-group nogroup" "socket 600 root nogroup" \
        "$(stat -c '%F %a %U %G' -- "$SOCKDIR/milter-g-other.sock" 2>&1)"
    log=$R/logs/milter-g-badgroup.log
    daemon_once "$log" --rules "$rules" --socket "unix:$SOCKDIR/milter-g-badgroup.sock" --socket-group no-such-group-e2e
    expect_refused "g1 an unknown --socket-group is refused" "$log" "no-such-group-e2e"
    if [[ -e $SOCKDIR/milter-g-badgroup.sock ]]; then
        fail "g1 ... and leaves no socket behind" "no $SOCKDIR/milter-g-badgroup.sock" "$(ls -l -- "$SOCKDIR/milter-g-badgroup.sock")"
    else ok "g1 ... and leaves no socket behind"; fi

    # g2: a second daemon on the live socket exits with an error and leaves the socket alone;
    # the first one keeps serving.
    inode=$(stat -c %i -- "$sock")
    log=$R/logs/milter-g-second.log
    daemon_once "$log" --rules "$rules" --socket "unix:$sock" "${socket_options[@]}"
    expect_refused "g2 a second daemon on the live socket exits non-zero" "$log" \
        "another process is listening on '$sock'"
    expect_eq "g2 the socket file is still the first daemon's (inode)" "$inode" "$(stat -c %i -- "$sock" 2>&1)"
    expect_daemon_alive milter-g "g2 the first daemon still runs"
    expect_copy_to_alice g2 "${PORT[g]}" || return

    # g3: after kill -9 the socket file stays behind with nobody listening; a new daemon on the
    # same path replaces it and serves.
    inst_signal milter-g KILL 5
    expect_eq "g3 SIGKILL ends the daemon (exit status 128+9)" 137 "$INST_STATUS"
    if [[ -S $sock ]]; then ok "g3 the stale socket file remains"; else
        fail "g3 the stale socket file remains" "a socket at $sock" "$(ls -l -- "$sock" 2>&1)"; fi
    if inst_unix_listening "$sock"; then
        fail "g3 nothing listens on the stale socket" "no listener" "$(ss -xl src "$sock")"
    else ok "g3 nothing listens on the stale socket"; fi
    milter_spawn milter-g "$rules" "unix:$sock" "${socket_options[@]}" ||
        { fail "g3 a new daemon starts on the stale socket" "listening" "see above"; return; }
    ok "g3 a new daemon starts on the stale socket"
    expect_eq "g3 stat of the new socket" "socket 620 root postfix" "$(stat -c '%F %a %U %G' -- "$sock" 2>&1)"
    expect_copy_to_alice g3 "${PORT[g]}" || return

    # g4: a path that exists and is not a socket is refused and left exactly as it was.
    f=$R/not-a-socket
    printf 'splitmilter e2e: not a socket %s\n' "$RUN_ID" >"$f"
    chmod 0640 "$f"
    before=$(stat -c '%F %i %s %a %U %G %.9Y %.9Z' -- "$f")
    sum=$(cksum <"$f")
    log=$R/logs/milter-g-file.log
    daemon_once "$log" --rules "$rules" --socket "unix:$f" "${socket_options[@]}"
    expect_refused "g4 a regular file at the socket path is refused" "$log" "'$f' exists and is not a socket"
    expect_eq "g4 the file is untouched (type inode size mode owner group mtime ctime)" "$before" \
        "$(stat -c '%F %i %s %a %U %G %.9Y %.9Z' -- "$f" 2>&1)"
    expect_eq "g4 the file's contents are untouched" "$sum" "$(cksum <"$f")"

    # g5: inet:PORT@127.0.0.1 end to end; Postfix's listener uses smtpd_milters = inet:127.0.0.1:PORT.
    milter_spawn milter-g-inet "$rules" "inet:$G_MILTER_PORT@127.0.0.1" ||
        { fail "g5 the daemon starts on inet:$G_MILTER_PORT@127.0.0.1" "listening" "see above"; return; }
    expect_eq "g5 it listens on 127.0.0.1:$G_MILTER_PORT only" "127.0.0.1:$G_MILTER_PORT" \
        "$(ss -Hltn "sport = :$G_MILTER_PORT" | awk '{print $4}')"
    expect_copy_to_alice g5 "$G_INET_PORT" || return
    expect_contains "g5 the inet daemon logged the copy" \
        "$QID: rcpt=<alice@example.org> copy=alice@gapps.example.org" "$(cat "$(milter_log milter-g-inet)")"
    log=$R/logs/milter-g-inet-second.log
    daemon_once "$log" --rules "$rules" --socket "inet:$G_MILTER_PORT@127.0.0.1"
    expect_refused "g5 a second daemon on the same port exits non-zero" "$log" "Address already in use"
    expect_daemon_alive milter-g-inet "g5 the first inet daemon still runs"
}

# ---------------------------------------------------------------------------------------------
# Scenario h: SIGUSR1 reloads the rules; SIGTERM and SIGHUP stop the daemon

# send_alice_bob CHECK: one message to alice and bob on a new SMTP connection (and so a new milter
# connection, which takes the rules in force when it starts); sets ID.
send_alice_bob() {
    ID=$(msgid "$1")
    send "${PORT[h]}" sender@example.org alice@example.org,bob@example.org "$ID"
    expect_queued "$1 accepted" || return 1
    wait_done "$QID"
    expect_eq "$1 alice.mbox holds the message once" 1 "$(mbox_count alice "$ID")"
    expect_eq "$1 bob.mbox holds the message once" 1 "$(mbox_count bob "$ID")"
}

scenario_h() {
    local sock=$SOCKDIR/milter-h.sock rules=$R/reload.rules mark pos line col
    local fixture_broken=$FIXTURES/reload-broken.rules

    # h1: the rules it started with copy every example.org user.
    send_alice_bob h1 || return
    expect_eq "h1 Google got alice and bob" $'<alice@gapps.example.org>\n<bob@gapps.example.org>' \
        "$(sink_addrs google "$ID")"

    # h2: the file now says "except alice"; SIGUSR1; the next connection no longer copies alice.
    cp -- "$FIXTURES/reload-except.rules" "$rules"
    mark=$(daemon_log_mark milter-h)
    kill -USR1 "${INST_PIDS[milter-h]}"
    if wait_daemon_log milter-h "reloaded .*reload\.rules" 10 "$mark"; then
        ok "h2 the daemon logged the reload"
    else
        fail "h2 the daemon logged the reload" "a line 'reloaded $rules: ...'" "$(daemon_log_since milter-h "$mark")"
        return
    fi
    expect_daemon_alive milter-h "h2 SIGUSR1 did not stop the daemon"
    send_alice_bob h2 || return
    expect_eq "h2 Google got only bob" "<bob@gapps.example.org>" "$(sink_addrs google "$ID")"

    # h3: a file with an error: reported with file:line:col, refused as a whole; the previous
    # rules (except alice) stay in force.
    cp -- "$fixture_broken" "$rules"
    pos=$(awk '/^[[:space:]]*cpy[[:space:]]/ { print NR, index($0, "cpy"); exit }' "$fixture_broken")
    read -r line col <<<"$pos"
    mark=$(daemon_log_mark milter-h)
    kill -USR1 "${INST_PIDS[milter-h]}"
    if wait_daemon_log milter-h "keeping the previous rules" 10 "$mark"; then
        ok "h3 the daemon logged that it keeps the previous rules"
    else
        fail "h3 the daemon logged that it keeps the previous rules" "a line '... keeping the previous rules'" \
            "$(daemon_log_since milter-h "$mark")"
    fi
    expect_contains "h3 the error is logged with file:line:col" "$rules:$line:$col: error: unknown directive 'cpy'" \
        "$(daemon_log_since milter-h "$mark")"
    expect_no_match "h3 no 'reloaded' line" 'reloaded ' "$(daemon_log_since milter-h "$mark")"
    expect_daemon_alive milter-h "h3 the daemon still runs"
    send_alice_bob h3 || return
    expect_eq "h3 Google got only bob (the previous rules)" "<bob@gapps.example.org>" "$(sink_addrs google "$ID")"

    # SIGUSR2 is the daemon's own interruption of libmilter's accept loop; sent from outside, it
    # does nothing (its default action would end the process).
    kill -USR2 "${INST_PIDS[milter-h]}"
    sleep 0.2
    expect_daemon_alive milter-h "h3 SIGUSR2 did not stop the daemon"

    # h4, h5: SIGTERM stops the daemon: exit status 0, and it removes its socket. SIGHUP stops
    # it as well: libmilter's signal thread treats HUP like TERM (an orderly stop; see
    # docs/postfix-milter.md, "Signals"), so SIGHUP cannot mean "reload" for a libmilter daemon,
    # which is why the reload signal is SIGUSR1. Each stop is prompt: well under libmilter's own
    # (up to 5 s, its accept loop's poll), which STOP_SECONDS (3) would catch. An instrumented
    # daemon exits more slowly (the sanitizer's checks at exit): scripts/sanitize sets it to 8.
    local stop_seconds=${STOP_SECONDS:-3}
    milter_start milter-h-hup "$FIXTURES/reload-except.rules" "$SOCKDIR/milter-h-hup.sock" ||
        { fail "h5 a second daemon starts" "listening" "see above"; return; }
    if inst_signal milter-h TERM "$stop_seconds"; then ok "h4 SIGTERM stops the daemon within $stop_seconds s"; else
        fail "h4 SIGTERM stops the daemon within $stop_seconds s" "exited" "still running"; fi
    expect_eq "h4 exit status after SIGTERM" 0 "$INST_STATUS"
    expect_no_socket h4 "$sock"
    if inst_signal milter-h-hup HUP "$stop_seconds"; then ok "h5 SIGHUP stops the daemon within $stop_seconds s"; else
        fail "h5 SIGHUP stops the daemon within $stop_seconds s" "exited" "still running"; fi
    expect_eq "h5 exit status after SIGHUP" 0 "$INST_STATUS"
    expect_no_socket h5 "$SOCKDIR/milter-h-hup.sock"
}

# expect_no_socket CHECK PATH: the daemon removed its socket file.
expect_no_socket() {
    if [[ -e $2 ]]; then fail "$1 the socket is removed" "no $2" "$(ls -l -- "$2")"; else
        ok "$1 the socket is removed"; fi
}

# ---------------------------------------------------------------------------------------------
# Scenario i: hostile local parts through the real path

# Recipients whose local parts splitmilter must not place into a copy template, each a local
# mailbox of the MX (hostile_mailboxes): ADDRESS, mailbox, ERE for the reason in the warning.
# Postfix accepts all of these at RCPT and passes them to the milter as the client wrote them.
# "a b" is a virtual alias of the local user "quoted": local(8) looks it up unquoted, which a
# texthash key cannot hold. The source route is stripped by Postfix (delivered to alice).
LONG_LOCAL=$(printf 'l%.0s' {1..65})
HOSTILE_ADDR=('"a b"@example.org' "o'brien@example.org" 'x|y@example.org' 'a/b@example.org'
    'a..b@example.org' '.lead@example.org' 'jürgen@example.org' "$LONG_LOCAL@example.org"
    '@relay.example:alice@example.org')
HOSTILE_BOX=(quoted obrien pipe slash dots lead juergen long alice)
HOSTILE_WHY=('quoted' "'''" "'\|'" "'/'" 'dots' 'dot' '0xC3|non-ASCII' '65|64' 'source route')

# hostile_mailboxes: the aliases (and the virtual alias) behind HOSTILE_ADDR.
hostile_mailboxes() {
    local i box addr
    for i in "${!HOSTILE_ADDR[@]}"; do
        addr=${HOSTILE_ADDR[$i]} box=${HOSTILE_BOX[$i]}
        [[ $addr == \"* || $addr == @* ]] && continue
        printf '%s %s\n' "${addr%@*}" "$R/mail/$box.mbox"
    done >>"$R/pf/aliases"
    printf 'quoted %s\n' "$R/mail/quoted.mbox" >>"$R/pf/aliases"
    printf '%s\n' '"a b"@example.org quoted@example.org' >>"$R/pf/virtual"
}

scenario_i() {
    local p=${PORT[i]} i addr box id log mark
    mark=$(daemon_log_mark milter-i)

    # i1..i9: one message per hostile recipient: delivered to its mailbox, no copy, a warning
    # that names the recipient (as the client wrote it) and the reason.
    for i in "${!HOSTILE_ADDR[@]}"; do
        local n=i$((i + 1))
        addr=${HOSTILE_ADDR[$i]} box=${HOSTILE_BOX[$i]}
        id=$(msgid "$n")
        send "$p" sender@example.org "$addr" "$id"
        expect_queued "$n <$addr> accepted" || continue
        wait_done "$QID"
        expect_eq "$n <$addr> delivered once to $box.mbox" 1 "$(mbox_count "$box" "$id")"
        expect_eq "$n <$addr> no copy at Google" "" "$(sink_addrs google "$id")"
        expect_no_match "$n <$addr> maillog: no delivery to gapps" 'gapps' "$(pf_deliveries "$R" "$QID" "$MARK")"
        log=$(daemon_log_since milter-i "$mark" | grep -F -- "$QID: rcpt=<$addr> ")
        expect_match "$n <$addr> the daemon warned, naming the recipient and the reason" \
            "warning: .*(${HOSTILE_WHY[$i]})" "$log"
    done

    # i10: all of them in one message with bob: bob alone gets his copy.
    id=$(msgid i10)
    send "$p" sender@example.org "$(IFS=,; echo "${HOSTILE_ADDR[*]}"),bob@example.org" "$id"
    expect_queued "i10 all hostile recipients and bob in one message accepted" || return
    wait_done "$QID"
    expect_eq "i10 Google got exactly bob@gapps.example.org" "<bob@gapps.example.org>" "$(sink_addrs google "$id")"
    for i in "${!HOSTILE_BOX[@]}"; do
        box=${HOSTILE_BOX[$i]}
        # alice gets it once: the source route is her only address in this message.
        expect_eq "i10 $box.mbox holds the message once" 1 "$(mbox_count "$box" "$id")"
    done
    expect_eq "i10 the daemon warned once per hostile recipient" "${#HOSTILE_ADDR[@]}" \
        "$(daemon_log_since milter-i "$mark" | grep -cF -- "warning: $QID: rcpt=<")"

    # i11: x!y@ and a%b@ never reach the milter: with Postfix's defaults (swap_bangpath,
    # allow_percent_hack) they are routing syntax for other domains, which this MX does not
    # relay; smtpd answers 550 at RCPT itself. bob, in the same message, is copied as usual.
    id=$(msgid i11)
    send "$p" sender@example.org 'x!y@example.org,a%b@example.org,bob@example.org' "$id"
    expect_queued "i11 accepted for bob" || return
    expect_eq "i11 Postfix refused x!y@ and a%b@ with 550 at RCPT" 2 \
        "$(grep -cE '^<\*\* +550 .*<(x!y|a%b)@example\.org>' "$SWAKS_LOG")"
    wait_done "$QID"
    expect_eq "i11 Google got exactly bob@gapps.example.org" "<bob@gapps.example.org>" "$(sink_addrs google "$id")"
    expect_no_match "i11 the daemon never saw x!y@ or a%b@" 'x!y@|a%b@' "$(daemon_log_since milter-i "$mark")"

    # i12: the daemon is alive and serves the next message normally.
    expect_daemon_alive milter-i "i12 the daemon still runs"
    expect_copy_to_alice i12 "$p"
    expect_no_match "i12 the daemon logged no error" 'error|critical' "$(daemon_log_since milter-i "$mark")"
}

# ---------------------------------------------------------------------------------------------
# Scenarios j, k, l, m: guards at RCPT (allow-clients, known, spf: sources) and explain --client

DNS_ADDR=127.0.0.53
J_TEXT="mail for cache.example is accepted only through our provider"
L_TEXT="mail for cache.example is accepted only through provider.example"

# rcpt_reply RCPT: the server's reply to "RCPT TO:<RCPT>" in the last send, as swaks logged it
# ("250 2.1.5 Ok", "550 5.7.1 ..."). swaks does not pipeline: the reply is the next line.
rcpt_reply() {
    awk -v cmd="-> RCPT TO:<$1>" '
        found { sub(/^<(-|\*\*) +/, ""); print; exit }
        { line = $0; sub(/^ +/, "", line) }
        line == cmd { found = 1 }' "$SWAKS_LOG"
}

# guarded_send CHECK PORT CLIENT accept|reject [TEXT [SWAKS OPTION...]]: one message from CLIENT
# (swaks binds that 127.x address) to alice@cache.example and bob@example.org, a domain without
# guards. accept: both are delivered. reject: alice@ gets exactly "550 5.7.1 TEXT" at RCPT and
# nothing is delivered to her, while bob gets the message all the same. Sets ID.
guarded_send() {
    local check=$1 port=$2 client=$3 verdict=$4 text=${5:-}
    shift $(($# < 5 ? $# : 5))
    ID=$(msgid "$check")
    send "$port" sender@example.org alice@cache.example,bob@example.org "$ID" --local-interface "$client" "$@"
    if [[ $verdict == accept ]]; then
        expect_match "$check RCPT alice@cache.example from $client: 250" '^250 ' "$(rcpt_reply alice@cache.example)"
    else
        expect_eq "$check RCPT alice@cache.example from $client: refused" "550 5.7.1 $text" \
            "$(rcpt_reply alice@cache.example)"
    fi
    expect_match "$check RCPT bob@example.org from $client: 250" '^250 ' "$(rcpt_reply bob@example.org)"
    expect_queued "$check accepted" || return 1
    wait_done "$QID"
    expect_match "$check maillog: the client was $client" "\[${client//./\\.}\]" \
        "$(pf_log_since "$R" "$MARK" | grep -F " $QID: client=")"
    expect_eq "$check bob.mbox holds the message once" 1 "$(mbox_count bob "$ID")"
    if [[ $verdict == accept ]]; then
        expect_eq "$check alice.mbox holds the message once" 1 "$(mbox_count alice "$ID")"
    else
        expect_eq "$check alice.mbox does not have it" 0 "$(mbox_count alice "$ID")"
        expect_no_match "$check maillog: no delivery to alice" '^to=<alice@' "$(pf_deliveries "$R" "$QID" "$MARK")"
    fi
}

# raw_rcpt PORT CLIENT ARG: the reply to "RCPT TO:ARG" sent byte for byte from CLIENT (a 127.x
# address), in a transaction that is then reset: swaks writes RCPT TO:<...> itself and cannot send
# the spellings Postfix accepts in its default non-strict mode (a blank or tab before '>').
raw_rcpt() {
    python3 - "$1" "$2" "$3" <<'PY'
import socket, sys
port, client, arg = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(client, 0))
f = s.makefile("rb")
def reply():
    while True:
        line = f.readline().decode("latin-1").rstrip("\r\n")
        if len(line) < 4 or line[3] != "-":
            return line
def say(text):
    s.sendall(text.encode("latin-1") + b"\r\n")
    return reply()
reply()
say("EHLO raw.example")
say("MAIL FROM:<sender@example.org>")
print(say("RCPT TO:" + arg))
say("RSET")
say("QUIT")
PY
}

# expect_milter_reject CHECK CLIENT RCPT CODE: Postfix logged the milter's refusal of RCPT.
expect_milter_reject() {
    expect_match "$1 maillog: Postfix logged the milter's $4 for <$3>" \
        "milter-reject: RCPT from [^ ]*\[${2//./\\.}\]: ${4//./\\.} .*to=<${3//./\\.}>" "$(pf_log_since "$R" "$MARK")"
}

# rule_line FIXTURE ERE: the line number of the first line of the fixture matching ERE.
rule_line() { grep -nE -- "$2" "$FIXTURES/$1" | head -n 1 | cut -d: -f1; }

scenario_j() {
    local p=${PORT[j]} mark rules=$FIXTURES/${RULES[j]} line
    mark=$(daemon_log_mark milter-j)
    line=$(rule_line "${RULES[j]}" '^ *allow-clients')

    # j1: 127.0.0.2 is cache.example's allowed client; j2: 127.0.0.3 is not: alice@cache.example
    # is refused with the configured text, bob@example.org in the same transaction goes on.
    guarded_send j1 "$p" 127.0.0.2 accept
    guarded_send j2 "$p" 127.0.0.3 reject "$J_TEXT"
    expect_milter_reject j2 127.0.0.3 alice@cache.example "550 5.7.1"
    expect_contains "j2 the daemon logged the refusal and why" \
        "reject: rcpt=<alice@cache.example> 550 5.7.1 $J_TEXT (client 127.0.0.3 not in allow-clients ($rules:$line))" \
        "$(daemon_log_since milter-j "$mark")"

    # j3: postmaster@cache.example (allow-any) from 127.0.0.3: accepted (postmaster -> root).
    ID=$(msgid j3)
    send "$p" sender@example.org postmaster@cache.example "$ID" --local-interface 127.0.0.3
    expect_queued "j3 postmaster@cache.example from 127.0.0.3 accepted" || return
    wait_done "$QID"
    expect_eq "j3 root.mbox (postmaster) holds the message once" 1 "$(mbox_count root "$ID")"

    # j4: 127.0.0.4 is in trusted-networks: it may send to cache.example.
    guarded_send j4 "$p" 127.0.0.4 accept

    # j5: 127.0.0.5 is neither allowed nor trusted, but it logs in (AUTH PLAIN): Postfix passes
    # {auth_authen} to the milter, and trust-authenticated (the default) lets the client send.
    # (trust-authenticated no is covered by the unit tests, GuardTests.)
    guarded_send j5a "$p" 127.0.0.5 reject "$J_TEXT"
    guarded_send j5b "$p" 127.0.0.5 accept "" --auth PLAIN --auth-user carol --auth-password e2e-secret
    expect_match "j5b maillog: the client logged in as carol" "\[127\.0\.0\.5\], sasl_method=PLAIN, sasl_username=carol" \
        "$(pf_log_since "$R" "$MARK" | grep -F " $QID: client=")"
    # j6: spellings Postfix accepts and delivers to alice@cache.example (a blank or a tab before
    # '>', blanks inside the brackets, a comment) are refused from 127.0.0.3 all the same.
    local spelling
    for spelling in '<alice@cache.example >' $'<alice@cache.example\t>' '< alice@cache.example >' \
        '<alice@cache.example (c)>'; do
        expect_eq "j6 RCPT TO:$spelling from 127.0.0.3: refused" "550 5.7.1 $J_TEXT" \
            "$(raw_rcpt "$p" 127.0.0.3 "$spelling")"
    done
    expect_match "j6 the same spelling from the allowed client: 250" '^250 ' \
        "$(raw_rcpt "$p" 127.0.0.2 '<alice@cache.example >')"
    expect_no_match "j the daemon logged no error" 'error|critical' "$(daemon_log_since milter-j "$mark")"
}

scenario_k() {
    local p=${PORT[k]} mark rules=$FIXTURES/${RULES[k]} line qid log
    mark=$(daemon_log_mark milter-k)
    line=$(rule_line "${RULES[k]}" '^ *known')

    # k1: alice+tag and bob are known users of users.example, mallory is not: refused at RCPT with
    # 550 5.1.1; the others in the same transaction are delivered.
    ID=$(msgid k1)
    send "$p" sender@example.org alice+tag@users.example,mallory@users.example,bob@users.example "$ID" \
        --local-interface 127.0.0.2
    expect_match "k1 RCPT alice+tag@users.example: 250" '^250 ' "$(rcpt_reply alice+tag@users.example)"
    expect_eq "k1 RCPT mallory@users.example: refused" \
        "550 5.1.1 <mallory@users.example>: Recipient address rejected: User unknown" \
        "$(rcpt_reply mallory@users.example)"
    expect_match "k1 RCPT bob@users.example: 250" '^250 ' "$(rcpt_reply bob@users.example)"
    expect_queued "k1 accepted" || return
    qid=$QID
    wait_done "$qid"
    expect_eq "k1 alice.mbox holds the message once" 1 "$(mbox_count alice "$ID")"
    expect_eq "k1 bob.mbox holds the message once" 1 "$(mbox_count bob "$ID")"
    expect_milter_reject k1 127.0.0.2 mallory@users.example "550 5.1.1"
    expect_contains "k1 the daemon logged the refusal and why" \
        "reject: rcpt=<mallory@users.example> 550 5.1.1 <mallory@users.example>: Recipient address rejected: User unknown (not a known user ($rules:$line))" \
        "$(daemon_log_since milter-k "$mark")"
    # No backscatter: Postfix never queued anything for mallory, so it has nothing to bounce.
    log=$(pf_log_since "$R" "$MARK")
    expect_match "k1 maillog: the queued message has 2 recipients" " $qid: from=<sender@example\.org>, .*nrcpt=2 " "$log"
    expect_no_match "k1 maillog: no delivery attempt for mallory" '^to=<mallory@' "$(pf_deliveries "$R" "$qid" "$MARK")"
    expect_no_match "k1 maillog: no postfix/bounce line" 'postfix/bounce\[' "$log"
    expect_no_match "k1 maillog: no sender notification" 'sender (non-delivery|delivery status) notification' "$log"
    expect_eq "k1 no DSN about the message in sender.mbox" 0 "$(mbox_count sender "$ID")"
    if pf_queue_empty "$R"; then ok "k1 the queue is empty"; else
        fail "k1 the queue is empty" "Mail queue is empty" "$(pf_queue "$R")"; fi

    # k1b: mallory spelt as Postfix accepts it (blank or tab before '>') is refused all the same;
    # alice spelt so is accepted.
    local spelling
    for spelling in '<mallory@users.example >' $'<mallory@users.example\t>' '<mallory@USERS.example. >'; do
        expect_match "k1b RCPT TO:$spelling: 550 5.1.1" '^550 5\.1\.1 ' "$(raw_rcpt "$p" 127.0.0.2 "$spelling")"
    done
    expect_match "k1b RCPT TO:<alice@users.example >: 250" '^250 ' \
        "$(raw_rcpt "$p" 127.0.0.2 '<alice@users.example >')"
    # k1c: a bare CR inside the brackets reaches the milter (Postfix's tokenizer drops it as a blank):
    # refused like the plain address, and logged with the CR escaped, on one line that cannot be forged.
    expect_match "k1c RCPT TO:<mallory@users.example<CR>>: 550 5.1.1" '^550 5\.1\.1 ' \
        "$(raw_rcpt "$p" 127.0.0.2 $'<mallory@users.example\r>')"
    log=$(daemon_log_since milter-k "$mark")
    expect_contains "k1c the daemon logged the refusal with the CR escaped" \
        'reject: rcpt=<mallory@users.example\x0D> 550 5.1.1' "$log"
    expect_no_match "k1c no raw CR in the daemon's log" $'\r' "$log"

    # k2 (control; proves the checks above can see backscatter): the same recipient through a
    # listener without the milter is accepted by Postfix (the users.example catch-all) and then
    # bounced to the sender.
    ID=$(msgid k2)
    send "$PLAIN_PORT" sender@example.org mallory@users.example "$ID" --local-interface 127.0.0.2
    expect_queued "k2 control: Postfix alone accepts mallory@users.example" || return
    wait_done "$QID"
    pf_wait_log "$R" " to=<sender@example\.org>.*status=sent" 10 "$MARK" || true
    expect_match "k2 control: maillog has the bounce" " $QID: sender non-delivery notification" \
        "$(pf_log_since "$R" "$MARK")"
    expect_eq "k2 control: the DSN is in sender.mbox" 1 "$(mbox_count sender "$ID")"
}

# dns_records ALLOWED: the dnsmasq options for provider.example's SPF records and a loop, with
# ALLOWED (an IPv4 address) as the term that scenario l changes. Sets DNS_RECORDS.
#   provider.example      v=spf1 mx include:_spf.provider.example -all
#   _spf.provider.example v=spf1 ip4:192.0.2.0/24 include:_net2.provider.example ~all
#   _net2.provider.example v=spf1 ip4:ALLOWED a:mta.provider.example ip6:2001:db8:5::/48 -all
#   loop.example -> loop2.example -> loop.example
# Every name asked for an address has both an A and an AAAA record (see dns_start).
dns_records() {
    DNS_RECORDS=(
        "--txt-record=provider.example,v=spf1 mx include:_spf.provider.example -all"
        "--txt-record=_spf.provider.example,v=spf1 ip4:192.0.2.0/24 include:_net2.provider.example ~all"
        "--txt-record=_net2.provider.example,v=spf1 ip4:$1 a:mta.provider.example ip6:2001:db8:5::/48 -all"
        "--mx-host=provider.example,mx.provider.example,10"
        "--host-record=mx.provider.example,198.51.100.25,2001:db8::25"
        "--host-record=mta.provider.example,198.51.100.7,2001:db8::7"
        "--txt-record=loop.example,v=spf1 include:loop2.example -all"
        "--txt-record=loop2.example,v=spf1 ip4:203.0.113.0/24 include:loop.example -all"
    )
}

# provider_networks ALLOWED: the cache file line splitmilter must write for those records: the
# networks in the order the walk meets them.
provider_networks() {
    printf 'provider.example 198.51.100.25/32 2001:db8::25/128 192.0.2.0/24 %s/32 198.51.100.7/32 2001:db8::7/128 2001:db8:5::/48' "$1"
}

# dns_serve ALLOWED: (re)start the DNS server "dns" on DNS_ADDR:DNS_PORT with dns_records ALLOWED.
dns_serve() {
    dns_stop dns
    dns_records "$1"
    dns_start dns "$DNS_ADDR" "$DNS_PORT" "${DNS_RECORDS[@]}"
}

# start_spf_milter NAME REFRESH CACHE: a daemon with scenario l's rules on unix:ROOT/NAME.sock,
# asking the test's DNS server, refreshing every REFRESH s (0: on SIGUSR1 only), caching in CACHE.
start_spf_milter() {
    milter_spawn "$1" "$FIXTURES/${RULES[l]}" "unix:$SOCKDIR/$1.sock" --dns-server "$DNS_SPEC" --spf-refresh "$2" --spf-cache "$3"
}

# cache_line FILE: the provider.example line of a daemon's spf cache file.
cache_line() { grep -E '^provider\.example ' -- "$1" 2>&1; }

# usr1_and_wait CHECK NAME ERE: SIGUSR1 to daemon NAME, then wait (10 s) for ERE in its log.
usr1_and_wait() {
    local mark
    mark=$(daemon_log_mark "$2")
    kill -USR1 "${INST_PIDS[$2]}"
    if wait_daemon_log "$2" "$3" 10 "$mark"; then ok "$1"; else
        fail "$1" "a line matching /$3/" "$(daemon_log_since "$2" "$mark")"
        return 1
    fi
}

scenario_l() {
    local p=${PORT[l]} ps=$L_SCHED_PORT cache=$STATE/spf.cache log sched_mark mark
    local nets_a nets_b
    nets_a=$(provider_networks 127.0.0.2)
    nets_b=$(provider_networks 127.0.0.3)

    # l1: at start both daemons resolved spf:provider.example through the whole chain (mx, two
    # levels of include, ip4, a, ip6) and wrote it to their cache files.
    expect_contains "l1 the daemon logged the list it resolved" "info: spf:provider.example: 7 networks" \
        "$(cat "$(milter_log milter-l)")"
    expect_eq "l1 its cache file" "$nets_a" "$(cache_line "$cache")"
    expect_eq "l1 the scheduled daemon's cache file" "$nets_a" "$(cache_line "$STATE/spf-sched.cache")"

    # l2: 127.0.0.2 (an ip4: term two includes down) may send to cache.example; 127.0.0.3 may not.
    guarded_send l2a "$p" 127.0.0.2 accept
    guarded_send l2b "$p" 127.0.0.3 reject "$L_TEXT"
    expect_milter_reject l2b 127.0.0.3 alice@cache.example "550 5.7.1"

    # l3 (its own step: a fresh cache path, no socket shared): a second guarded domain whose spf:
    # source is an include loop, in neither DNS nor the cache: the daemon refuses to start and
    # names the domain and the loop.
    log=$R/logs/milter-l-loop.log
    daemon_once "$log" --rules "$FIXTURES/provider-loop.rules" --socket "unix:$SOCKDIR/milter-l-loop.sock" \
        --dns-server "$DNS_SPEC" --spf-refresh 0 --spf-cache "$STATE/spf-loop.cache"
    expect_refused "l3 the daemon refuses to start" "$log" "cannot start: no allowed-client list for spf:loop.example"
    expect_contains "l3 ... and logs the loop" "spf:loop.example: include loop: loop.example -> loop2.example -> loop.example" \
        "$(cat "$log")"
    expect_no_match "l3 ... provider.example is not missing" 'cannot start:.*provider\.example' "$(cat "$log")"
    if [[ -e $SOCKDIR/milter-l-loop.sock ]]; then
        fail "l3 ... and leaves no socket" "no $SOCKDIR/milter-l-loop.sock" "$(ls -l -- "$SOCKDIR/milter-l-loop.sock")"
    else ok "l3 ... and leaves no socket"; fi

    # l4: the record changes (127.0.0.3 in, 127.0.0.2 out) and SIGUSR1 refreshes: the daemon logs
    # the change, rewrites its cache, and the verdicts follow.
    sched_mark=$(daemon_log_mark milter-l-sched)
    dns_serve 127.0.0.3 || { fail "l4 the DNS server restarts" "dnsmasq on $DNS_SPEC" "see above"; return; }
    usr1_and_wait "l4 SIGUSR1: the daemon logged the change" milter-l \
        'info: spf:provider\.example: changed: added 127\.0\.0\.3/32 removed 127\.0\.0\.2/32$' || return
    expect_eq "l4 the cache file follows" "$nets_b" "$(cache_line "$cache")"
    guarded_send l4a "$p" 127.0.0.3 accept
    guarded_send l4b "$p" 127.0.0.2 reject "$L_TEXT"

    # l5: the daemon with --spf-refresh 2 picked the change up by itself, without a signal.
    if wait_daemon_log milter-l-sched 'info: spf:provider\.example: changed: added 127\.0\.0\.3/32 removed 127\.0\.0\.2/32$' \
        8 "$sched_mark"; then ok "l5 the scheduled daemon logged the change"; else
        fail "l5 the scheduled daemon logged the change" "a 'changed:' line within 8 s" \
            "$(daemon_log_since milter-l-sched "$sched_mark")"
    fi
    expect_no_match "l5 ... without any reload" 'reloaded ' "$(cat "$(milter_log milter-l-sched)")"
    expect_eq "l5 its cache file follows" "$nets_b" "$(cache_line "$STATE/spf-sched.cache")"
    guarded_send l5a "$ps" 127.0.0.3 accept
    guarded_send l5b "$ps" 127.0.0.2 reject "$L_TEXT"

    # l6: the DNS server stops; SIGUSR1: the lookup fails, the last good list stays in force (and
    # in the cache); so does the scheduled daemon's.
    dns_stop dns
    sched_mark=$(daemon_log_mark milter-l-sched)
    usr1_and_wait "l6 SIGUSR1 with DNS down: the daemon keeps the last good list" milter-l \
        'warning: spf:provider\.example: .*; keeping the last good list \(7 networks\)$' || return
    expect_eq "l6 the cache file is unchanged" "$nets_b" "$(cache_line "$cache")"
    guarded_send l6a "$p" 127.0.0.3 accept
    guarded_send l6b "$p" 127.0.0.2 reject "$L_TEXT"
    if wait_daemon_log milter-l-sched 'keeping the last good list \(7 networks\)$' 8 "$sched_mark"; then
        ok "l6 the scheduled daemon keeps its list too"; else
        fail "l6 the scheduled daemon keeps its list too" "a 'keeping the last good list' line within 8 s" \
            "$(daemon_log_since milter-l-sched "$sched_mark")"
    fi
    guarded_send l6c "$ps" 127.0.0.3 accept

    # l7: the daemon restarts with DNS still down: it starts from its cache file, verdicts unchanged.
    milter_stop milter-l
    expect_eq "l7 the daemon stops on SIGTERM" 0 "$?"
    mark=$(daemon_log_mark milter-l)
    start_spf_milter milter-l 0 "$cache" ||
        { fail "l7 the daemon starts with DNS down" "listening" "see above"; return; }
    ok "l7 the daemon starts with DNS down"
    expect_match "l7 ... from the cached list" \
        'warning: spf:provider\.example: .*; using the cached list \(7 networks\)$' "$(daemon_log_since milter-l "$mark")"
    guarded_send l7a "$p" 127.0.0.3 accept
    guarded_send l7b "$p" 127.0.0.2 reject "$L_TEXT"
}

# explain ARGS...: milter-test explain ARGS, asking the test's DNS server; stdout and stderr.
explain() { "$MILTER_TEST" explain "$@" --dns-server "$DNS_SPEC" 2>&1; }

scenario_m() {
    local out rules=$FIXTURES/${RULES[m]} line
    MILTER_TEST=$(dirname -- "$SPLITMILTER")/milter-test
    if [[ ! -x $MILTER_TEST ]]; then
        fail "m milter-test next to the daemon" "an executable $MILTER_TEST" "none"
        return
    fi
    line=$(rule_line "${RULES[m]}" '^ *allow-clients')
    dns_serve 127.0.0.2 || { fail "m the DNS server starts" "dnsmasq on $DNS_SPEC" "see above"; return; }

    # m1: 127.0.0.3 is outside provider.example's networks: the 550 5.7.1 reply and why.
    out=$(explain "$rules" --client 127.0.0.3 --rcpt x@cache.example)
    expect_contains "m1 --client 127.0.0.3: reject, the reply and the reason" \
        "reject 550 5.7.1 $L_TEXT (client 127.0.0.3 not in allow-clients ($rules:$line))" "$out"

    # m2: 127.0.0.2 is allowed: by which network of which source, and no refusal.
    out=$(explain "$rules" --client 127.0.0.2 --rcpt x@cache.example)
    expect_contains "m2 --client 127.0.0.2: allowed, and why" \
        "client: client 127.0.0.2 allowed by spf:provider.example 127.0.0.2/32 ($rules:$line)" "$out"
    expect_no_match "m2 ... no reject or tempfail" '^ *(reject|tempfail) ' "$out"

    # m3: allow-any: postmaster receives from 127.0.0.3.
    out=$(explain "$rules" --client 127.0.0.3 --rcpt postmaster@cache.example)
    expect_contains "m3 postmaster from 127.0.0.3: allowed (allow-any)" "client: user may receive from any client" "$out"
    expect_no_match "m3 ... no reject or tempfail" '^ *(reject|tempfail) ' "$out"

    # m4: scenario j's and k's rules: a trusted network; an unknown user.
    out=$(explain "$FIXTURES/${RULES[j]}" --client 127.0.0.4 --rcpt x@cache.example)
    expect_match "m4 --client 127.0.0.4 (trusted-networks): allowed, and why" \
        '^ *client: trusted network 127\.0\.0\.4/32 \(.*guard\.rules:[0-9]+\)$' "$out"
    out=$(explain "$FIXTURES/${RULES[k]}" --client 127.0.0.2 --rcpt mallory@users.example --rcpt bob+x@users.example)
    expect_match "m4 mallory@users.example: 550 5.1.1, and why" \
        '^ *reject 550 5\.1\.1 <mallory@users\.example>: Recipient address rejected: User unknown \(not a known user \(.*known\.rules:[0-9]+\)\)$' "$out"
    expect_eq "m4 bob+x@users.example is not refused" 1 "$(grep -cE '^ *(reject|tempfail) ' <<<"$out")"

    # m5: with the DNS server down explain says so, and the verdict is 451 4.7.1, never a 5xx.
    dns_stop dns
    out=$(explain "$rules" --client 127.0.0.2 --rcpt x@cache.example)
    expect_match "m5 DNS down: the failed lookup is reported" '^spf:provider\.example: DNS lookup for TXT provider\.example failed' "$out"
    expect_match "m5 DNS down: tempfail 451 4.7.1, and why" \
        '^ *tempfail 451 4\.7\.1 .*\(client 127\.0\.0\.2 not allowed, and spf:provider\.example has no list yet' "$out"
}

# ---------------------------------------------------------------------------------------------
# Scenario n: mail submitted with Postfix's own sendmail(1)

# submit FROM MSGID TO...: hand one message to the MX's sendmail(1), as root like a cron job or a
# script would: postdrop writes it to the maildrop queue, pickup and cleanup take it from there.
# Sets SENDMAIL_RC (sendmail exits 0 once the message is in the maildrop queue).
submit() {
    local from=$1 id=$2
    shift 2
    printf '%s\n' "From: $from" "To: $(IFS=,; echo "$*")" "Subject: e2e $id" "Message-Id: <$id>" "" "e2e $id" |
        sendmail -C "$R/pf" -f "$from" -i -- "$@" >"$R/logs/sendmail-${id%%@*}.log" 2>&1
    SENDMAIL_RC=$?
}

# picked_up MSGID OFFSET: wait (15 s) until cleanup queued the message (maillog after OFFSET);
# set QID to its queue id.
picked_up() {
    local ere="postfix/cleanup\[[0-9]+\]: [0-9A-Za-z]+: message-id=<${1//./\\.}>"
    QID=
    pf_wait_log "$R" "$ere" 15 "$2" || return 1
    QID=$(pf_log_since "$R" "$2" | grep -E -- "$ere" | sed -E 's/^.*\]: ([0-9A-Za-z]+): message-id=.*$/\1/' | tail -n 1)
}

# maildrop_files: how many messages wait in the MX's maildrop queue.
maildrop_files() { find "$R/q/maildrop" -type f 2>/dev/null | wc -l; }

# expect_local_copy CHECK MSGID: alice has the message once, Google has exactly one copy for
# alice@gapps.example.org (one transaction, one recipient) carrying X-Splitmilter-Copied, and the
# daemon logged the copy for QID.
expect_local_copy() {
    local check=$1 id=$2
    expect_eq "$check alice.mbox holds the message once" 1 "$(mbox_count alice "$id")"
    expect_eq "$check Google got it in exactly one transaction" 1 "$(sink_dumps google "$id" | grep -c .)"
    expect_eq "$check ... for exactly alice@gapps.example.org" "<alice@gapps.example.org>" "$(sink_addrs google "$id")"
    expect_match "$check the copy carries X-Splitmilter-Copied" '^X-Splitmilter-Copied:' \
        "$(sink_dumps google "$id" | xargs -r cat)"
    expect_match "$check the daemon logged the copy for $QID" "$QID: rcpt=<?alice@example\.org>? copy=alice@gapps\.example\.org " \
        "$(cat "$(milter_log milter-n)")"
}

scenario_n() {
    local id mark

    # n1: sendmail to alice (copied) and dave (excepted): pickup -> cleanup -> the daemon through
    # non_smtpd_milters (cleanup chrooted: unix:/splitmilter/milter-n.sock). Both are delivered;
    # alice's copy reaches Google exactly once.
    id=$(msgid n1)
    submit sender@example.org "$id" alice@example.org dave@example.org
    expect_eq "n1 sendmail exits 0" 0 "$SENDMAIL_RC"
    if ! picked_up "$id" "$MARK"; then
        fail "n1 pickup and cleanup queued it" "a cleanup line with message-id=<$id>" "$(pf_log_since "$R" "$MARK" | tail -n 5)"
        return
    fi
    wait_done "$QID"
    expect_match "n1 maillog: it came through pickup (uid 0), not smtpd" \
        "postfix/pickup\[[0-9]+\]: $QID: uid=0 from=<sender@example\.org>" "$(pf_log_since "$R" "$MARK")"
    expect_no_match "n1 maillog: no smtpd saw it" "postfix/smtpd\[[0-9]+\]: $QID:" "$(pf_log_since "$R" "$MARK")"
    expect_local_copy n1 "$id"
    expect_eq "n1 dave.mbox holds the message once" 1 "$(mbox_count dave "$id")"
    expect_match "n1 maillog: the copy was sent to Google" \
        "^to=<alice@gapps\.example\.org> .*relay=127\.0\.0\.1\[127\.0\.0\.1\]:$GOOGLE_PORT .*status=sent" \
        "$(pf_deliveries "$R" "$QID" "$MARK")"

    # n2: the daemon dies (kill -9: the socket stays, nobody listens). sendmail still exits 0 (the
    # message is in the maildrop queue); cleanup cannot reach the milter and, milter_default_action
    # being tempfail, refuses it for now: pickup leaves it in the maildrop queue. Nothing is
    # delivered, nothing bounces.
    inst_signal milter-n KILL 5
    mark=$(pf_log_mark "$R")
    id=$(msgid n2)
    submit sender@example.org "$id" alice@example.org
    expect_eq "n2 sendmail exits 0 while the daemon is down" 0 "$SENDMAIL_RC"
    if pf_wait_log "$R" 'milter-reject: CONNECT from localhost\[127\.0\.0\.1\]: 4\.7\.1 ' 15 "$mark"; then
        ok "n2 cleanup tempfailed it (4.7.1): the milter is unreachable"
    else
        fail "n2 cleanup tempfailed it (4.7.1): the milter is unreachable" "a milter-reject: CONNECT ... 4.7.1 line" \
            "$(pf_log_since "$R" "$mark" | tail -n 5)"
    fi
    expect_match "n2 maillog: cleanup could not connect to the daemon's socket" \
        'postfix/cleanup\[[0-9]+\]: warning: connect to Milter service unix:/splitmilter/milter-n\.sock' \
        "$(pf_log_since "$R" "$mark")"
    expect_eq "n2 the message waits in the maildrop queue" 1 "$(maildrop_files)"
    expect_match "n2 ... and postqueue -p lists it for alice" '^ +alice@example\.org$' "$(pf_queue "$R")"
    expect_eq "n2 nothing in alice.mbox yet" 0 "$(mbox_count alice "$id")"
    expect_eq "n2 nothing at Google yet" "" "$(sink_addrs google "$id")"

    # n3: the daemon is back; postqueue -f makes pickup scan the maildrop queue now (it would on
    # its own within pickup's 60 s wake-up time): delivered, copied exactly once, no bounce.
    milter_start milter-n "$FIXTURES/${RULES[n]}" "$SOCKDIR/milter-n.sock" ||
        { fail "n3 the daemon restarts" "listening" "see above"; return; }
    pf_flush "$R" >/dev/null
    if ! picked_up "$id" "$mark"; then
        fail "n3 pickup queued it once the daemon was back" "a cleanup line with message-id=<$id>" \
            "$(pf_log_since "$R" "$mark" | tail -n 5)"
        return
    fi
    wait_done "$QID"
    expect_eq "n3 the maildrop queue is empty" 0 "$(maildrop_files)"
    expect_local_copy n3 "$id"
    expect_eq "n3 no DSN about it in sender.mbox" 0 "$(mbox_count sender "$id")"

    scenario_n_guards
}

# scenario_n_guards: n4, n5. cleanup's emulated session for a sendmail(1) submission (localhost,
# 127.0.0.1, port 0) cannot take a refusal at RCPT ("milter configuration error: can't reject
# recipient in non-smtpd(8) submission": the message would stay in the maildrop queue, retried
# every 60 s for ever), so no guard refuses it; over SMTP from 127.0.0.1 (the same address and
# name, a real port) the same recipients are refused at RCPT.
scenario_n_guards() {
    local id mark dmark log dlog qid rules=$FIXTURES/${RULES[n]} aline kline
    aline=$(rule_line "${RULES[n]}" '^ *allow-clients')
    kline=$(rule_line "${RULES[n]}" '^ *known')

    # n4: sendmail to alice@cache.example (allow-clients 127.0.0.2 only; 127.0.0.1 is not trusted)
    # and mallory@users.example (not a known user). Both are accepted: alice@cache.example is
    # delivered (the catch-all: alice@example.org); mallory gets the Google copy of users.example,
    # and the local delivery is Postfix's own business: local(8) has no such user and bounces it to
    # the sender. Nothing waits in the maildrop queue.
    mark=$(pf_log_mark "$R")
    dmark=$(daemon_log_mark milter-n)
    id=$(msgid n4)
    submit sender@example.org "$id" alice@cache.example mallory@users.example
    expect_eq "n4 sendmail exits 0" 0 "$SENDMAIL_RC"
    if ! picked_up "$id" "$mark"; then
        fail "n4 pickup and cleanup queued it" "a cleanup line with message-id=<$id>" \
            "$(pf_log_since "$R" "$mark" | grep -E "cleanup|pickup" | tail -n 5)"
        return
    fi
    qid=$QID
    wait_done "$qid"
    pf_wait_log "$R" " to=<sender@example\.org>.*status=sent" 10 "$mark" || true
    log=$(pf_log_since "$R" "$mark")
    expect_eq "n4 the maildrop queue is empty" 0 "$(maildrop_files)"
    expect_no_match "n4 maillog: no milter-reject, no \"can't reject recipient\"" "milter-reject|can't reject recipient" "$log"
    expect_eq "n4 alice.mbox holds the message once (alice@cache.example)" 1 "$(mbox_count alice "$id")"
    expect_eq "n4 Google got mallory's copy, and only that" "<mallory@gapps.example.org>" "$(sink_addrs google "$id")"
    expect_match "n4 maillog: local(8) bounced mallory itself" \
        '^to=<mallory@example\.org> orig_to=<mallory@users\.example> relay=local .*status=bounced' \
        "$(pf_deliveries "$R" "$qid" "$mark")"
    expect_eq "n4 the sender got Postfix's DSN about mallory" 1 "$(mbox_count sender "$id")"
    dlog=$(daemon_log_since milter-n "$dmark")
    expect_contains "n4 the daemon logged alice@cache.example: guard not applied, and what it would have said" \
        "info: $qid: rcpt=alice@cache.example guard not applied: local submission (sendmail), Postfix cannot refuse it here; otherwise 550 5.7.1 (client 127.0.0.1 not in allow-clients ($rules:$aline))" \
        "$dlog"
    expect_contains "n4 ... and mallory@users.example" \
        "info: $qid: rcpt=mallory@users.example guard not applied: local submission (sendmail), Postfix cannot refuse it here; otherwise 550 5.1.1 (not a known user ($rules:$kline))" \
        "$dlog"
    expect_no_match "n4 the daemon refused nothing" 'reject:|error' "$dlog"

    # n5: the same recipients, and bob@users.example, over SMTP from 127.0.0.1 to scenario n's
    # listener (the same daemon): refused at RCPT as always; bob is delivered with his copy.
    dmark=$(daemon_log_mark milter-n)
    id=$(msgid n5)
    send "${PORT[n]}" sender@example.org alice@cache.example,mallory@users.example,bob@users.example "$id" \
        --local-interface 127.0.0.1
    expect_eq "n5 RCPT alice@cache.example from 127.0.0.1: refused" "550 5.7.1 $J_TEXT" "$(rcpt_reply alice@cache.example)"
    expect_eq "n5 RCPT mallory@users.example from 127.0.0.1: refused" \
        "550 5.1.1 <mallory@users.example>: Recipient address rejected: User unknown" "$(rcpt_reply mallory@users.example)"
    expect_match "n5 RCPT bob@users.example: 250" '^250 ' "$(rcpt_reply bob@users.example)"
    expect_queued "n5 accepted for bob" || return
    wait_done "$QID"
    expect_eq "n5 bob.mbox holds the message once" 1 "$(mbox_count bob "$id")"
    expect_eq "n5 alice.mbox does not have it" 0 "$(mbox_count alice "$id")"
    expect_eq "n5 Google got bob's copy only" "<bob@gapps.example.org>" "$(sink_addrs google "$id")"
    expect_milter_reject n5 127.0.0.1 alice@cache.example "550 5.7.1"
    expect_milter_reject n5 127.0.0.1 mallory@users.example "550 5.1.1"
    dlog=$(daemon_log_since milter-n "$dmark")
    expect_contains "n5 the daemon logged the refusal of alice@cache.example and why" \
        "reject: rcpt=<alice@cache.example> 550 5.7.1 $J_TEXT (client 127.0.0.1 not in allow-clients ($rules:$aline))" "$dlog"
    expect_no_match "n5 no guard was waived" 'guard not applied' "$dlog"
}

# ---------------------------------------------------------------------------------------------
# Scenario o: --log syslog, beside Postfix's own lines

# syslog(3) writes to /dev/log, always: a private rsyslogd gets it only through a private mount
# namespace (bind-mounted over /dev/log there), which also leaves a desktop's journald alone.
# in_mount_namespace ARGS...: run this script again in one, with ARGS; exit with its status. An
# empty file serves as the mount point when /dev/log does not exist (CI), removed afterwards.
# When no namespace can be made, carry on here: scenario o then fails, saying why (O_UNAVAILABLE).
in_mount_namespace() {
    local placeholder=0 rc err
    if ! err=$(unshare --mount --propagation private true 2>&1); then
        O_UNAVAILABLE="unshare --mount failed (${err:-no message}): scenario o needs a private mount namespace"
        return 0
    fi
    if [[ ! -e /dev/log && ! -L /dev/log ]]; then : >/dev/log && placeholder=1; fi
    E2E_MOUNT_NS=1 unshare --mount --propagation private -- bash "$0" "$@"
    rc=$?
    if ((placeholder)) && [[ -f /dev/log && ! -s /dev/log ]]; then rm -f /dev/log; fi
    exit "$rc"
}

# syslog_instance: scenario o's MX, R/syslog: as the main one (Debian's chroots, the daemon's socket
# in R/syslog/q/splitmilter, smtpd_milters = unix:/splitmilter/milter-o.sock in main.cf) but with
# no maillog_file: Postfix logs to syslog, as a stock Debian Postfix does. Its listener is PORT[o].
# Before it, rsyslogd (-n, private config and pid file) on R/syslog/rsyslog/log.sock, bind-mounted
# over /dev/log, and on q/dev/log (what Debian's /etc/rsyslog.d/postfix.conf adds for chrooted
# Postfix daemons): every message, as "facility.severity tag: message", to R/syslog/mail.log.
syslog_instance() {
    local d=$R/syslog c
    if [[ -n ${O_UNAVAILABLE:-} ]]; then return 0; fi
    for c in rsyslogd mount; do
        command -v "$c" >/dev/null || { O_UNAVAILABLE="$c not found (apt-get install rsyslog mount)" && return 1; }
    done
    mkdir -p "$d/rsyslog" "$d/q/dev" || return 1
    cat >"$d/rsyslog/rsyslog.conf" <<EOF
global(workDirectory="$d/rsyslog")
module(load="imuxsock" SysSock.Name="$d/rsyslog/log.sock" SysSock.RateLimit.Interval="0")
input(type="imuxsock" Socket="$d/q/dev/log" RateLimit.Interval="0")
template(name="e2e" type="string"
    string="%syslogfacility-text%.%syslogseverity-text% %syslogtag%%msg:::sp-if-no-1st-sp%%msg:::drop-last-lf%\n")
*.* action(type="omfile" file="$d/mail.log" template="e2e")
EOF
    inst_spawn rsyslog "$R/logs/rsyslog.log" rsyslogd -n -f "$d/rsyslog/rsyslog.conf" -i "$d/rsyslog/rsyslogd.pid"
    if ! inst_wait 10 "rsyslogd's socket $d/rsyslog/log.sock" test -S "$d/rsyslog/log.sock"; then
        inst_tail "$R/logs/rsyslog.log" 10 >&2
        O_UNAVAILABLE="rsyslogd did not create its socket (see above)"
        return 1
    fi
    mount --bind "$d/rsyslog/log.sock" /dev/log || { O_UNAVAILABLE="mount --bind over /dev/log failed" && return 1; }
    pf_init "$d" syslog.e2e.test --chroot || return 1
    pf_set "$d" "maillog_file =" || return 1
    milter_socket_dir "$d" >/dev/null || return 1
    pf_split_mx "$d" /splitmilter/milter-o.sock "$GOOGLE_PORT" "$PRIMARY_PORT" || return 1
    pf_listen "$d" "${PORT[o]}" --chroot
}

scenario_o() {
    local log=$R/syslog/mail.log pid id qid all
    if [[ -n ${O_UNAVAILABLE:-} ]]; then
        fail "o what it needs is there" "a private mount namespace, rsyslogd" "$O_UNAVAILABLE"
        return
    fi
    pid=${INST_PIDS[milter-o]:-none}

    # o1: one message to alice through the instance that logs to syslog: the daemon's copy
    # decision, facility mail, ident splitmilter with its pid, the queue id, lands in the same
    # file as Postfix's cleanup, qmgr and smtp lines for that queue id.
    id=$(msgid o1)
    send "${PORT[o]}" sender@example.org alice@example.org "$id"
    expect_queued "o1 accepted" || return
    qid=$QID
    inst_wait 15 "'$qid: removed' in $log" grep -qF -- " $qid: removed" "$log" || true
    all=$(cat -- "$log" 2>&1)
    expect_match "o1 the daemon's decision: mail.info splitmilter[$pid]: $qid: rcpt=<alice@example.org> copy=..." \
        "^mail\.info splitmilter\[$pid\]: $qid: rcpt=<alice@example\.org> copy=alice@gapps\.example\.org " "$all"
    expect_match "o1 ... in one file with Postfix's cleanup line for $qid" \
        "^mail\.info postfix/cleanup\[[0-9]+\]: $qid: message-id=<${id//./\\.}>" "$all"
    expect_match "o1 ... qmgr's" "^mail\.info postfix/qmgr\[[0-9]+\]: $qid: from=<sender@example\.org>" "$all"
    expect_match "o1 ... and the copy's delivery" \
        "^mail\.info postfix/smtp\[[0-9]+\]: $qid: to=<alice@gapps\.example\.org>, .*status=sent" "$all"
    expect_match "o1 the daemon's start line is there too" \
        "^mail\.info splitmilter\[$pid\]: listening on unix:.*/milter-o\.sock as user $MILTER_USER " "$all"
    expect_eq "o1 the daemon wrote nothing to standard error" "" "$(cat -- "$(milter_log milter-o)")"
    expect_eq "o1 alice's mailbox holds the message once" 1 "$(grep -cixF -- "Message-Id: <$id>" "$R/syslog/mail/alice.mbox" 2>/dev/null)"
    expect_eq "o1 Google got exactly alice@gapps.example.org" "<alice@gapps.example.org>" "$(sink_addrs google "$id")"
}

# ---------------------------------------------------------------------------------------------
# Main

# scrape PATH: the body of http://127.0.0.1:METRICS_PORT/PATH, or "HTTP CODE" for an error status.
scrape() {
    python3 - "http://127.0.0.1:$METRICS_PORT/$1" <<'PY'
import sys, urllib.error, urllib.request
try:
    sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())
except urllib.error.HTTPError as error:
    print("HTTP", error.code)
except OSError as error:
    print("unreachable:", error)
PY
}

# metric PAGE NAME LABEL...: the value of the series NAME{...} whose labels include every LABEL
# (written name="value"), in whatever order the page has them; 0 when the page has no such series.
metric() {
    local page=$1 name=$2
    shift 2
    printf '%s\n' "$page" | awk -v name="$name" -v labels="$*" '
        BEGIN { n = split(labels, want, " ") }
        index($0, name "{") == 1 || (n == 0 && $1 == name) {
            for (i = 1; i <= n; i++) if (index($0, want[i]) == 0) next
            print $NF; found = 1; exit
        }
        END { if (!found) print 0 }'
}

# p_outcome PAGE OUTCOME MODE: splitmilter_recipient_outcomes_total for one outcome and mode.
p_outcome() { metric "$1" splitmilter_recipient_outcomes_total "outcome=\"$2\"" "mode=\"$3\""; }

scenario_p() {
    local p=${PORT[p]} rules=$R/observe.rules mark page qids=() qid log copies rewrites refused delivered

    # p0: the page is served, promtool accepts it, the rules' hash is sha256sum of the file.
    page=$(scrape metrics)
    expect_contains "p0 the page names the rule file's sha256sum" \
        "splitmilter_rules_info{sha256=\"$(sha256sum "$rules" | cut -d' ' -f1)\"} 1" "$page"
    expect_eq "p0 /ready" ready "$(scrape ready)"
    if command -v promtool >/dev/null; then
        expect_eq "p0 promtool check metrics accepts the page" "" "$(printf '%s\n' "$page" | promtool check metrics 2>&1)"
    else
        fail "p0 promtool check metrics accepts the page" "promtool (Debian package prometheus)" "not installed"
    fi

    # p1-p3: copied, excepted, rewritten, refused and unlisted recipients, from 127.0.0.1.
    ID=$(msgid p1)
    send "$p" sender@example.org alice@example.org,dave@example.org,carol.smith@users.example "$ID"
    expect_queued "p1 accepted" && qids+=("$QID")
    ID=$(msgid p2)
    send "$p" sender@example.org mallory@users.example,alice@users.example,bob@example.org "$ID"
    expect_eq "p2 RCPT mallory@users.example: refused" \
        "550 5.1.1 <mallory@users.example>: Recipient address rejected: User unknown" \
        "$(rcpt_reply mallory@users.example)"
    expect_queued "p2 accepted" && qids+=("$QID")
    # p3: the shadow section: alice and bob of cache.example are delivered (Postfix's catch-all to
    # example.org), nothing reaches Google, bob is not refused; the log says what would have been.
    mark=$(daemon_log_mark milter-p)
    ID=$(msgid p3)
    send "$p" sender@example.org alice@cache.example,bob@cache.example "$ID"
    expect_match "p3 RCPT bob@cache.example: 250 (the shadow guard refuses nobody)" '^250 ' \
        "$(rcpt_reply bob@cache.example)"
    expect_queued "p3 accepted" && qids+=("$QID")
    for qid in "${qids[@]}"; do wait_done "$qid"; done
    expect_eq "p3 Google got nothing for the shadow section" "" "$(sink_addrs google "$ID")"
    log=$(daemon_log_since milter-p "$mark")
    expect_contains "p3 the daemon logged the shadow copy" "rcpt=<alice@cache.example> shadow copy=alice@gapps.example.org" "$log"
    expect_contains "p3 the daemon logged the shadow refusal" "shadow reject: rcpt=<bob@cache.example> 550 5.1.1" "$log"

    # p4: the counters equal what Postfix did, counted from its maillog and the Google sink.
    log=$(pf_log_since "$R" "$MARK")
    delivered=$(for qid in "${qids[@]}"; do pf_deliveries "$R" "$qid" "$MARK"; done)
    copies=$(grep -c '^to=<[^>]*@gapps\.example\.org> .*status=sent' <<<"$delivered")
    # The rewritten recipient is delivered as carol, and nothing to carol.smith (nobody else sent to carol).
    rewrites=$(grep -c '^to=<carol@example\.org> .*status=sent' <<<"$delivered")
    expect_no_match "p4 no delivery to carol.smith" '^to=<carol\.smith@' "$delivered"
    refused=$(grep -c 'milter-reject: RCPT from .*: 550 5\.1\.1 ' <<<"$log")
    page=$(scrape metrics)
    expect_eq "p4 Google got alice and bob of example.org" $'<alice@gapps.example.org>\n<bob@gapps.example.org>' \
        "$({ sink_addrs google "$(msgid p1)"; sink_addrs google "$(msgid p2)"; } | sort)"
    expect_eq "p4 copies: as delivered to Google" "$copies" "$(p_outcome "$page" copy live)"
    expect_eq "p4 carol.smith was delivered to carol" 1 "$rewrites"
    expect_eq "p4 rewrites: as delivered to carol for carol.smith" "$rewrites" "$(p_outcome "$page" rewrite live)"
    expect_eq "p4 refusals: as Postfix logged them" "$refused" "$(p_outcome "$page" refused_unknown_user live)"
    expect_eq "p4 messages: as Postfix queued them" "${#qids[@]}" "$(metric "$page" splitmilter_messages_total)"
    expect_eq "p4 recipients: every RCPT" 8 "$(metric "$page" splitmilter_recipients_total)"
    expect_eq "p4 none: dave, alice@users.example (and the shadow section's two)" 4 "$(p_outcome "$page" none live)"
    # bob would be refused by the shadow guard, so the shadow rules would copy alice only.
    expect_eq "p4 shadow copies: alice of cache.example" 1 "$(p_outcome "$page" copy shadow)"
    expect_eq "p4 shadow refusals: bob of cache.example" 1 "$(p_outcome "$page" refused_unknown_user shadow)"

    # p5: the `shadow` line deleted and SIGUSR1: the same message now copies alice to Google and
    # bob is refused; the page has the new hash and one good reload.
    sed -i '/^ *shadow$/d' "$rules"
    mark=$(daemon_log_mark milter-p)
    kill -USR1 "${INST_PIDS[milter-p]}"
    if ! wait_daemon_log milter-p "reloaded .*observe\.rules" 10 "$mark"; then
        fail "p5 the daemon logged the reload" "a line 'reloaded $rules: ...'" "$(daemon_log_since milter-p "$mark")"
        return
    fi
    MARK=$(pf_log_mark "$R")
    ID=$(msgid p5)
    send "$p" sender@example.org alice@cache.example,bob@cache.example "$ID"
    expect_eq "p5 RCPT bob@cache.example: refused now" \
        "550 5.1.1 <bob@cache.example>: Recipient address rejected: User unknown" "$(rcpt_reply bob@cache.example)"
    expect_queued "p5 accepted" || return
    wait_done "$QID"
    expect_eq "p5 Google got alice of cache.example" "<alice@gapps.example.org>" "$(sink_addrs google "$ID")"
    page=$(scrape metrics)
    expect_eq "p5 copies: one more, as delivered" \
        "$((copies + $(pf_deliveries "$R" "$QID" "$MARK" | grep -c '^to=<alice@gapps\.example\.org> .*status=sent')))" \
        "$(p_outcome "$page" copy live)"
    expect_eq "p5 refusals: one more, as Postfix logged it" \
        "$((refused + $(pf_log_since "$R" "$MARK" | grep -c 'milter-reject: RCPT from .*: 550 5\.1\.1 ')))" \
        "$(p_outcome "$page" refused_unknown_user live)"
    expect_eq "p5 shadow counts unchanged" "1 1" \
        "$(p_outcome "$page" copy shadow) $(p_outcome "$page" refused_unknown_user shadow)"
    expect_eq "p5 one good reload" 1 "$(metric "$page" splitmilter_reloads_total 'result="ok"')"
    expect_contains "p5 the page names the new file's sha256sum" \
        "splitmilter_rules_info{sha256=\"$(sha256sum "$rules" | cut -d' ' -f1)\"} 1" "$page"
}

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
    if selected o && [[ -z ${E2E_MOUNT_NS:-} ]]; then in_mount_namespace "${SELECTED[@]}"; fi
    if [[ -z ${SPLITMILTER:-} ]]; then
        # As the checkout's owner, with swift from their PATH under sudo (scripts/lib/swift.sh).
        swift_find && SPLITMILTER=$(swift_run build --show-bin-path 2>/dev/null)/splitmilter
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
        say "e2e: Postfix in $R, scenario ports ${PORT[${ALL_SCENARIOS[0]}]}-${PORT[${ALL_SCENARIOS[-1]}]}, set-up took $((SECONDS - t0))s"
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
