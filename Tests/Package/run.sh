#!/usr/bin/env bash
# Tests/Package/run.sh [DEB]: the installed package behind Debian's own Postfix, deployed as an
# administrator would (needs root; changes this machine's system Postfix and restores it after).
#
#   1. install the .deb (built with scripts/package unless DEB is given): user, directories,
#      conffile, unit, `--version` equal to the package's;
#   2. configure the system Postfix as Debian ships it ("Local only": chroot on,
#      inet_interfaces = loopback-only) plus the README's main.cf lines for the milter, and route
#      the copy domain to an smtp-sink on 127.0.0.1;
#   3. start the daemon as the unit would (PID 1 is not systemd here): the unit's ExecStart line,
#      its EnvironmentFile, as its User, with a NOTIFY_SOCKET whose listener checks that READY=1
#      comes only once the socket accepts;
#   4. mail through Postfix on 127.0.0.1:25 and through sendmail(1): local delivery plus exactly
#      one copy at the sink;
#   5. `systemctl reload` (the unit's ExecReload lines) with a broken rule file: fails, the old
#      rules stay; with a good one: RELOADING=1 … READY=1 and the new rules apply;
#   6. lists and per-user rules from PostgreSQL, set up as README.Debian says (a private cluster from
#      scripts/lib/pgcluster.sh; the password file, database.conf, SPLITMILTER_OPTIONS, a restart):
#      the rows are read and copy mail, the cache is written, a committed UPDATE reaches the
#      daemon without a reload, the unit's reload checks with the database, and a password file
#      that others may read stops the start;
#   7. reinstalling keeps the edited conffile; purge leaves nothing of the package behind.
#
# Prints "package: N passed, M failed" and exits non-zero on any failure.

set -uo pipefail

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd -- "$HERE/../.." && pwd)
# shellcheck source=scripts/lib/instance.sh
source "$REPO/scripts/lib/instance.sh"
# shellcheck source=scripts/lib/pgcluster.sh
source "$REPO/scripts/lib/pgcluster.sh"

UNIT=/lib/systemd/system/splitmilter.service
RULES=/etc/splitmilter/splitmilter.rules
SOCKET_DIR=/var/spool/postfix/splitmilter
SOCKET=$SOCKET_DIR/splitmilter.sock
LOCAL_USER=smpkgtest
COPY_DOMAIN=gapps.example.org
# Postfix's maillog_file must be under one of maillog_file_prefixes (default /var, /dev/stdout).
MAILLOG=/var/log/splitmilter-package-test.log
DEFAULTS=/etc/default/splitmilter
DB_CONF=/etc/splitmilter/database.conf
DB_PASSWORD=/etc/splitmilter/database.password
DB_CACHE=/var/lib/splitmilter/database.cache

PASSED=0 FAILED=0
say() { printf '%s\n' "$*"; }
pass() { PASSED=$((PASSED + 1)); say "  ok   $1"; }
# fail NAME DETAIL...: one failed check, with what explains it.
fail() {
    FAILED=$((FAILED + 1))
    say "  FAIL $1"
    shift
    local line
    for line in "$@"; do printf '%s\n' "$line" | sed 's/^/       | /'; done
}
check() { # check NAME CMD...: pass when CMD succeeds.
    local name=$1
    shift
    if "$@" >/dev/null 2>&1; then pass "$name"; else fail "$name" "command failed: $*"; fi
}
expect_eq() { if [[ $2 == "$3" ]]; then pass "$1"; else fail "$1" "expected: $2" "found:    $3"; fi; }

# ---------------------------------------------------------------------------------------------
# The machine's state before, restored after

POSTFIX_CONFIGURED=0
restore_machine() {
    /etc/init.d/postfix stop >/dev/null 2>&1
    if [[ -n ${DAEMON_PID:-} ]]; then kill -TERM "$DAEMON_PID" 2>/dev/null; fi
    if [[ -n ${PG_DIR:-} ]]; then PG_TAG=package pg_cluster_stop "$PG_DIR"; fi
    # Files an administrator adds under /etc/splitmilter stay on purge: the test's go here.
    rm -f "$DB_CONF" "$DB_PASSWORD"
    if ((POSTFIX_CONFIGURED)); then
        # Back to "No configuration" (or to what was there): no main.cf, nothing on port 25.
        rm -f /etc/postfix/main.cf /etc/postfix/splitmilter-test-transport
        [[ -f $INST_ROOT/main.cf.before ]] && cp -p "$INST_ROOT/main.cf.before" /etc/postfix/main.cf
        echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    fi
    dpkg-query -W splitmilter >/dev/null 2>&1 && apt-get purge -y splitmilter >/dev/null 2>&1
    id "$LOCAL_USER" >/dev/null 2>&1 && userdel "$LOCAL_USER" 2>/dev/null
    rm -f "/var/mail/$LOCAL_USER"
    if [[ ${KEEP:-0} == 1 ]]; then cp -p "$MAILLOG" "$INST_ROOT/" 2>/dev/null; fi
    rm -f "$MAILLOG"
    inst_cleanup
}

# ---------------------------------------------------------------------------------------------
# Steps

install_package() {
    say "[install] $DEB"
    if dpkg-query -W splitmilter >/dev/null 2>&1; then
        fail "no splitmilter installed before the test" "$(dpkg-query -W splitmilter)"
        return 1
    fi
    local out
    if ! out=$(DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$DEB" 2>&1); then
        fail "apt-get install ./splitmilter.deb" "$(tail -n 15 <<<"$out")"
        return 1
    fi
    pass "apt-get install $(basename "$DEB")"
    check "system user splitmilter" id splitmilter
    expect_eq "socket directory: setgid, splitmilter:postfix, 2750" "splitmilter postfix 2750" \
        "$(stat -c '%U %G %a' "$SOCKET_DIR" 2>&1)"
    expect_eq "state directory for the spf: cache" "splitmilter" "$(stat -c '%U' /var/lib/splitmilter 2>&1)"
    local conffiles
    conffiles=$(dpkg-query -W -f='${Conffiles}\n' splitmilter)
    if grep -qx " *$RULES .*" <<<"$conffiles"; then pass "$RULES is a conffile"; else
        fail "$RULES is a conffile" "$conffiles"
    fi
    if out=$(runuser -u splitmilter -- /usr/sbin/splitmilter --check --rules "$RULES" 2>&1); then
        pass "the packaged rule file checks clean and does nothing ($out)"
    else
        fail "the packaged rule file checks clean" "$out"
    fi
    expect_eq "splitmilter --version is the package version" "$(dpkg-query -W -f='${Version}' splitmilter)" \
        "$(/usr/sbin/splitmilter --version 2>&1)"
    expect_eq "milter-test --version is the package version" "$(dpkg-query -W -f='${Version}' splitmilter)" \
        "$(/usr/bin/milter-test --version 2>&1)"
    local libs
    libs=$(ldd /usr/sbin/splitmilter /usr/bin/milter-test 2>&1)
    if grep -q 'libswift\|libFoundation\|not found\|/opt/swift' <<<"$libs"; then
        fail "the binaries need no Swift toolchain" "$libs"
    else
        pass "the binaries need no Swift toolchain"
    fi
    if command -v systemd-analyze >/dev/null; then
        out=$(systemd-analyze verify "$UNIT" 2>&1)
        if [[ -z $out ]]; then pass "systemd-analyze verify $UNIT"; else fail "systemd-analyze verify $UNIT" "$out"; fi
    fi
}

# configure_postfix: Debian's "Local only" configuration, then the README's milter lines.
configure_postfix() {
    say "[postfix] Debian's \"Local only\" configuration, chroot on, milter on the packaged socket"
    [[ -f /etc/postfix/main.cf ]] && cp -p /etc/postfix/main.cf "$INST_ROOT/main.cf.before"
    POSTFIX_CONFIGURED=1
    debconf-set-selections <<EOF
postfix postfix/main_mailer_type select Local only
postfix postfix/mailname string mx.example.test
EOF
    DEBIAN_FRONTEND=noninteractive dpkg-reconfigure -f noninteractive postfix >"$INST_ROOT/logs/reconfigure.log" 2>&1 ||
        { fail "dpkg-reconfigure postfix" "$(tail -n 10 "$INST_ROOT/logs/reconfigure.log")"; return 1; }
    useradd --no-create-home --shell /usr/sbin/nologin "$LOCAL_USER" || return 1
    printf '%s smtp:[127.0.0.1]:%s\n' "$COPY_DOMAIN" "$SINK_PORT" >/etc/postfix/splitmilter-test-transport
    postconf -e \
        'mydestination = $myhostname, localhost, example.org' \
        'smtpd_milters = unix:/splitmilter/splitmilter.sock' \
        'non_smtpd_milters = $smtpd_milters' \
        'milter_default_action = tempfail' \
        'transport_maps = texthash:/etc/postfix/splitmilter-test-transport' \
        "maillog_file = $MAILLOG" || return 1
    expect_eq "smtpd runs chrooted (master.cf as Debian ships it)" "y" \
        "$(postconf -M smtp/inet | awk '{print $5}')"
    /etc/init.d/postfix start >"$INST_ROOT/logs/postfix-start.log" 2>&1 ||
        { fail "start Postfix" "$(cat "$INST_ROOT/logs/postfix-start.log")"; return 1; }
    inst_wait 15 "Postfix on 127.0.0.1:25" inst_port_busy 25 ||
        { fail "Postfix listens on 127.0.0.1:25" "$(tail -n 10 "$MAILLOG" 2>&1)"; return 1; }
}

# unit_value KEY: the value of the unit's KEY= line (the last one).
unit_value() { sed -n "s/^$1=//p" "$UNIT" | tail -n 1; }

# unit_environment: the unit's EnvironmentFile(s), read into this shell as systemd reads them
# for its Exec lines.
unit_environment() {
    local file
    for file in $(sed -n 's/^EnvironmentFile=-\{0,1\}//p' "$UNIT"); do
        # shellcheck disable=SC1090
        [[ -r $file ]] && { set -a; . "$file"; set +a; }
    done
    return 0
}

# unit_command LINE: the words of an Exec line as systemd runs it: "${VAR}" one word, "$VAR"
# split on blanks, the prefixes (-@:+!) dropped. Sets CMD=().
unit_command() {
    local line=${1#[-@:+!]}
    line=$(sed -E 's/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/"${\1}"/g' <<<"$line")
    eval "CMD=($line)"
}

start_daemon() {
    say "[unit] ExecStart as User=$(unit_value User), Type=$(unit_value Type), with a NOTIFY_SOCKET"
    expect_eq "unit type" "notify" "$(unit_value Type)"
    UNIT_USER=$(unit_value User)
    expect_eq "unit user" "splitmilter" "$UNIT_USER"
    NOTIFY_LOG=$INST_ROOT/logs/notify.log
    : >"$NOTIFY_LOG"
    inst_spawn notify "$INST_ROOT/logs/notify-listener.log" \
        python3 "$HERE/notify-listener.py" "$INST_ROOT/notify.sock" "$SOCKET" "$NOTIFY_LOG"
    inst_wait 10 "the notify listener" test -S "$INST_ROOT/notify.sock" || return 1
    unit_environment
    unit_command "$(unit_value ExecStart)"
    say "       ${CMD[*]}"
    # As systemd would: the unit's user and group, its environment, no terminal, and standard error
    # marked as the journal's stream (JOURNAL_STREAM=device:inode), so lines carry priorities.
    : >"$INST_ROOT/logs/daemon.log"
    JOURNAL_STREAM=$(stat -c '%d:%i' "$INST_ROOT/logs/daemon.log") NOTIFY_SOCKET=$INST_ROOT/notify.sock \
        setsid setpriv --reuid "$UNIT_USER" --regid "$(unit_value Group)" --init-groups -- "${CMD[@]}" \
        </dev/null >>"$INST_ROOT/logs/daemon.log" 2>&1 &
    DAEMON_PID=$!
    if inst_wait 15 "READY=1 from the daemon" grep -q '^READY=1' "$NOTIFY_LOG"; then
        pass "READY=1 sent"
    else
        fail "READY=1 sent" "$(cat "$NOTIFY_LOG")" "$(tail -n 10 "$INST_ROOT/logs/daemon.log")"
        return 1
    fi
    inst_wait 5 "the ready check" grep -q '^ready-check' "$NOTIFY_LOG"
    expect_eq "the socket accepts when READY=1 arrives" "ready-check: accepted" \
        "$(grep -m1 '^ready-check' "$NOTIFY_LOG")"
    expect_eq "the daemon runs as splitmilter" "splitmilter" "$(ps -o user= -p "$DAEMON_PID" | tr -d ' ')"
    expect_eq "socket: group postfix, mode 660" "postfix 660" "$(stat -c '%G %a' "$SOCKET" 2>&1)"
}

# The mail itself

RUN_ID=$(date +%H%M%S)-$$
COUNT=0
# send_smtp TO: one message through Postfix's smtpd on 127.0.0.1:25; sets MSGID and QID.
send_smtp() {
    COUNT=$((COUNT + 1))
    MSGID=pkg-$COUNT-$RUN_ID@example.test
    local log=$INST_ROOT/logs/swaks-$COUNT.log
    swaks --server 127.0.0.1:25 --timeout 15 --ehlo client.example.test --from sender@example.test \
        --to "$1" --header "Message-Id: <$MSGID>" >"$log" 2>&1
    QID=$(sed -n 's/^<-  250 .*queued as \([0-9A-Za-z]*\).*/\1/p' "$log" | tail -n 1)
    [[ -n $QID ]] || fail "Postfix accepts the message to $1" "$(tail -n 6 "$log")"
}
# send_local TO: one message with sendmail(1), through pickup and non_smtpd_milters.
send_local() {
    COUNT=$((COUNT + 1))
    MSGID=pkg-$COUNT-$RUN_ID@example.test
    printf 'From: cron@example.test\nTo: %s\nSubject: local\nMessage-Id: <%s>\n\nsubmitted locally\n' "$1" "$MSGID" |
        /usr/sbin/sendmail -f cron@example.test "$1"
}
# count_above N PATTERN FILE: more than N lines of FILE match PATTERN (inst_wait runs it again).
count_above() { (($(grep -c -- "$2" "$3") > $1)); }
mailbox_has() { grep -qF "Message-Id: <$MSGID>" "/var/mail/$LOCAL_USER" 2>/dev/null; }
sink_count() { sink_rcpts sink "$MSGID" | grep -c "<$1>"; }
# sink_at_least N ADDRESS: N copies of the last message for ADDRESS at the sink (for inst_wait,
# which runs it again: a "$(sink_count …)" argument would be counted once, before the wait).
sink_at_least() { (($(sink_count "$2") >= $1)); }
delivered() { mailbox_has && postqueue -p 2>/dev/null | grep -q 'Mail queue is empty'; }

# expect_copies HOW ADDRESS=N...: the last message reached the local mailbox and the sink holds N
# copies of it for each ADDRESS.
expect_copies() {
    local how=$1 pair address want
    shift
    if inst_wait 20 "delivery of $MSGID" delivered; then
        pass "$how: delivered to the local mailbox"
    else
        fail "$how: delivered to the local mailbox" "$(tail -n 12 "$MAILLOG" 2>&1)" \
            "$(tail -n 5 "$INST_ROOT/logs/daemon.log")"
        return
    fi
    for pair in "$@"; do
        want=${pair##*=}
        ((want > 0)) && inst_wait 10 "the copy for ${pair%=*} at the sink" sink_at_least "$want" "${pair%=*}"
    done
    sleep 0.5
    for pair in "$@"; do
        address=${pair%=*} want=${pair##*=}
        expect_eq "$how: copies for $address at the sink" "$want" "$(sink_count "$address")"
    done
}

# expect_delivery HOW COPIES: the last message is in the local mailbox and COPIES copies of it
# reached the sink for the local user.
expect_delivery() { expect_copies "$1" "$LOCAL_USER@$COPY_DOMAIN=$2"; }

mail_flows() {
    say "[mail] through the chrooted smtpd and through sendmail(1)"
    printf 'domain example.org\n    copy %%u@%s\n' "$COPY_DOMAIN" >"$RULES"
    run_reload || { fail "reload the first rules"; return 1; }
    send_smtp "$LOCAL_USER@example.org"
    expect_delivery "smtp" 1
    send_local "$LOCAL_USER@example.org"
    expect_delivery "sendmail" 1
    if grep -qE "^<6>[0-9A-Za-z]+: rcpt=<?$LOCAL_USER@example.org>? copy=$LOCAL_USER@$COPY_DOMAIN" \
        "$INST_ROOT/logs/daemon.log"; then
        pass "the daemon logs the copy, with the journal's priority <6>"
    else
        fail "the daemon logs the copy, with the journal's priority <6>" "$(tail -n 5 "$INST_ROOT/logs/daemon.log")"
    fi
}

# run_reload: the unit's ExecReload lines in order, as its user, as `systemctl reload` would;
# stops at the first that fails. RELOAD_OUT holds their output.
run_reload() {
    local line status=0
    RELOAD_OUT=
    # shellcheck disable=SC2034 # expanded by unit_command in "kill -USR1 $MAINPID"
    MAINPID=$DAEMON_PID
    while IFS= read -r line; do
        [[ -n $line ]] || continue
        unit_command "$line"
        RELOAD_OUT+=$(setpriv --reuid "$UNIT_USER" --regid "$(unit_value Group)" --init-groups -- "${CMD[@]}" 2>&1)
        status=$?
        ((status == 0)) || break
    done < <(sed -n 's/^ExecReload=//p' "$UNIT")
    return $status
}

reloads() {
    say "[reload] systemctl reload: a broken file fails and keeps the rules; a good one applies"
    local before
    before=$(grep -c '^READY=1' "$NOTIFY_LOG")
    printf 'domain example.org\n    copy\n' >"$RULES"
    if run_reload; then
        fail "reload with a broken rule file fails" "it succeeded: $RELOAD_OUT"
    else
        pass "reload with a broken rule file fails"
    fi
    if grep -qE "^$RULES:2:[0-9]+: error:" <<<"$RELOAD_OUT"; then
        pass "the reload prints file:line:col: error:"
    else
        fail "the reload prints file:line:col: error:" "$RELOAD_OUT"
    fi
    send_smtp "$LOCAL_USER@example.org"
    expect_delivery "after the failed reload (old rules)" 1
    # The next rules: everybody but the local user is copied.
    printf 'domain example.org\n    copy %%u@%s\n    except %s\n' "$COPY_DOMAIN" "$LOCAL_USER" >"$RULES"
    if run_reload; then pass "reload with a good rule file"; else fail "reload with a good rule file" "$RELOAD_OUT"; fi
    inst_wait 10 "READY=1 after the reload" count_above "$before" '^READY=1' "$NOTIFY_LOG"
    if grep -A1 '^RELOADING=1' "$NOTIFY_LOG" | tail -n 1 | grep -q '^READY=1'; then
        pass "RELOADING=1 then READY=1 around the reload"
    else
        fail "RELOADING=1 then READY=1 around the reload" "$(cat "$NOTIFY_LOG")"
    fi
    send_smtp "$LOCAL_USER@example.org"
    expect_delivery "after the good reload (new rules)" 0
    # Rules without spf: sources write no spf cache (each reload wrote one, or warned that it could
    # not), so the reloads leave neither a file nor a word about one.
    if grep -q 'spf cache' "$INST_ROOT/logs/daemon.log"; then
        fail "no spf cache line without spf: rules" "$(grep 'spf cache' "$INST_ROOT/logs/daemon.log")"
    else
        pass "no spf cache line without spf: rules"
    fi
    if [[ -e /var/lib/splitmilter/spf.cache ]]; then
        fail "no spf cache file without spf: rules" "$(ls -l /var/lib/splitmilter/spf.cache)"
    else
        pass "no spf cache file without spf: rules"
    fi
}

# restart_daemon: `systemctl restart`: stop (SIGTERM), then start as the unit does.
restart_daemon() {
    stop_daemon
    start_daemon_again
}

# db_sql SQL...: as the database's administrator (pg_admin_sql).
db_sql() { PG_TAG=package pg_admin_sql "$PG_DIR" "$PG_PORT" "$@" >>"$INST_ROOT/logs/db-sql.log" 2>&1; }

# database: lists and per-user rules from PostgreSQL, set up as README.Debian says.
database() {
    say "[database] pgsql: lists from a PostgreSQL cluster, as README.Debian sets it up"
    local rules_before defaults_before out status
    rules_before=$(cat "$RULES")
    cp -p "$DEFAULTS" "$INST_ROOT/defaults.before" || return 1
    PG_DIR=$INST_ROOT/pg
    PG_PORT=$(pg_free_port) || { fail "a free port for PostgreSQL"; return 1; }
    if ! PG_TAG=package pg_cluster_start "$PG_DIR" "$PG_PORT" 2>"$INST_ROOT/logs/pg-start.log"; then
        fail "start a PostgreSQL cluster" "$(tail -n 10 "$INST_ROOT/logs/pg-start.log")"
        PG_DIR=
        return 1
    fi
    pass "a private PostgreSQL cluster on 127.0.0.1:$PG_PORT"
    if ! db_sql "INSERT INTO splitmilter.list_members VALUES ('google', 'alice'), ('google', '$LOCAL_USER')" \
        "INSERT INTO splitmilter.user_rules VALUES ('people', 'carol', 'copy', 'carol@$COPY_DOMAIN')"; then
        fail "insert the first rows" "$(tail -n 5 "$INST_ROOT/logs/db-sql.log")"
    fi

    # README.Debian: the password in a file only the daemon's user reads, the settings, the option.
    install -o splitmilter -g splitmilter -m 600 /dev/null "$DB_PASSWORD"
    printf '%s\n' "${PG_READER_PASSWORD:-reader-secret}" >"$DB_PASSWORD"
    cat >"$DB_CONF" <<CONF
host = 127.0.0.1
port = $PG_PORT
dbname = mail
user = splitmilter_reader
password_file = $DB_PASSWORD
sslmode = disable
connect_timeout = 5
CONF
    printf 'domain example.org\n    copy %%u@%s\n    only pgsql:google\n    user pgsql:people\n' \
        "$COPY_DOMAIN" >"$RULES"
    sed -i "s|^SPLITMILTER_OPTIONS=.*|SPLITMILTER_OPTIONS=\"--database $DB_CONF\"|" "$DEFAULTS"
    if restart_daemon; then
        database_checks
    else
        fail "the daemon starts with --database" "$(tail -n 10 "$INST_ROOT/logs/daemon.log")"
    fi

    # A password file that its group or others may read: the daemon refuses to start.
    [[ -n ${DAEMON_PID:-} ]] && stop_daemon
    chmod 644 "$DB_PASSWORD"
    unit_environment
    unit_command "$(unit_value ExecStart)"
    out=$(timeout 20 setpriv --reuid "$UNIT_USER" --regid "$(unit_value Group)" --init-groups -- "${CMD[@]}" \
        </dev/null 2>&1)
    status=$?
    if ((status != 0 && status != 124)); then pass "a password file with mode 0644: no start (status $status)"; else
        fail "a password file with mode 0644: no start" "status $status" "$out"
    fi
    if grep -q 'chmod 600' <<<"$out"; then pass "the refusal names chmod 600"; else
        fail "the refusal names chmod 600" "$out"
    fi
    chmod 600 "$DB_PASSWORD"

    # Back to the rules and options the rest of the script expects, and the daemon on them.
    PG_TAG=package pg_cluster_stop "$PG_DIR"
    PG_DIR=
    rm -f "$DB_CONF" "$DB_PASSWORD"
    printf '%s\n' "$rules_before" >"$RULES"
    cp -p "$INST_ROOT/defaults.before" "$DEFAULTS"
    defaults_before=$(cat "$INST_ROOT/defaults.before")
    expect_eq "$DEFAULTS restored" "$defaults_before" "$(cat "$DEFAULTS")"
    start_daemon_again || fail "the daemon starts again without --database" "$(tail -n 10 "$INST_ROOT/logs/daemon.log")"
}

# start_daemon_again: start_daemon after a stop, with a new notify listener (start_daemon waits
# for its socket to exist: the old one's must be gone).
start_daemon_again() {
    inst_kill notify 3
    rm -f "$INST_ROOT/notify.sock"
    start_daemon
}

database_checks() {
    local line
    line=$(grep -m1 "database .*: 2 list rows and 1 rule rows up to change [0-9]*, read in" "$INST_ROOT/logs/daemon.log")
    if [[ -n $line ]]; then pass "the daemon logs the rows it read ($line)"; else
        fail "the daemon logs the rows it read from the database" "$(tail -n 10 "$INST_ROOT/logs/daemon.log")"
    fi
    # The list from the database: the local user is in pgsql:google, so the domain's copy.
    send_smtp "$LOCAL_USER@example.org"
    expect_copies "pgsql:google" "$LOCAL_USER@$COPY_DOMAIN=1"
    inst_wait 10 "the database cache" test -e "$DB_CACHE"
    expect_eq "$DB_CACHE: splitmilter, 600" "splitmilter 600" "$(stat -c '%U %a' "$DB_CACHE" 2>&1)"
    # Committed changes reach the daemon without a reload: a per-user rule, then its new target.
    local applied
    applied=$(grep -c 'database: applied' "$INST_ROOT/logs/daemon.log")
    db_sql "INSERT INTO splitmilter.user_rules VALUES ('people', '$LOCAL_USER', 'copy', 'carol@$COPY_DOMAIN')" ||
        fail "insert a user rule" "$(tail -n 5 "$INST_ROOT/logs/db-sql.log")"
    inst_wait 10 "the daemon applies the INSERT" count_above "$applied" 'database: applied' "$INST_ROOT/logs/daemon.log"
    send_smtp "$LOCAL_USER@example.org"
    expect_copies "INSERT into pgsql:people, no reload" "carol@$COPY_DOMAIN=1" "$LOCAL_USER@$COPY_DOMAIN=0"
    applied=$(grep -c 'database: applied' "$INST_ROOT/logs/daemon.log")
    db_sql "UPDATE splitmilter.user_rules SET targets = 'carol-new@$COPY_DOMAIN' WHERE list = 'people' AND name = '$LOCAL_USER'" ||
        fail "update the user rule" "$(tail -n 5 "$INST_ROOT/logs/db-sql.log")"
    if inst_wait 10 "the daemon applies the UPDATE" count_above "$applied" 'database: applied' "$INST_ROOT/logs/daemon.log"; then
        pass "the daemon logs the UPDATE ($(grep 'database: applied' "$INST_ROOT/logs/daemon.log" | tail -n 1))"
    else
        fail "the daemon logs the UPDATE" "$(tail -n 5 "$INST_ROOT/logs/daemon.log")"
    fi
    send_smtp "$LOCAL_USER@example.org"
    expect_copies "UPDATE of the target, no reload" "carol-new@$COPY_DOMAIN=1" "carol@$COPY_DOMAIN=0"
    # The unit's reload: --check with $SPLITMILTER_OPTIONS reads the database too, then SIGUSR1.
    local before
    before=$(grep -c '^READY=1' "$NOTIFY_LOG")
    if run_reload; then pass "reload with --database in SPLITMILTER_OPTIONS ($RELOAD_OUT)"; else
        fail "reload with --database in SPLITMILTER_OPTIONS" "$RELOAD_OUT"
    fi
    if inst_wait 10 "READY=1 after the reload" count_above "$before" '^READY=1' "$NOTIFY_LOG"; then
        pass "READY=1 after the reload with --database"
    else
        fail "READY=1 after the reload with --database" "$(cat "$NOTIFY_LOG")" "$(tail -n 5 "$INST_ROOT/logs/daemon.log")"
    fi
    send_smtp "$LOCAL_USER@example.org"
    expect_copies "after the reload" "carol-new@$COPY_DOMAIN=1"
}

upgrade_keeps_conffile() {
    say "[upgrade] reinstalling keeps the edited rule file"
    local edited
    edited=$(cat "$RULES")
    local out
    out=$(DEBIAN_FRONTEND=noninteractive apt-get install -y --reinstall -o Dpkg::Options::=--force-confold "$DEB" 2>&1) ||
        fail "reinstall" "$(tail -n 10 <<<"$out")"
    expect_eq "the edited conffile survives" "$edited" "$(cat "$RULES")"
}

stop_daemon() {
    say "[stop] SIGTERM"
    kill -TERM "$DAEMON_PID"
    local deadline=$((SECONDS + 10))
    while kill -0 "$DAEMON_PID" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    if kill -0 "$DAEMON_PID" 2>/dev/null; then
        fail "the daemon stops on SIGTERM"
        kill -KILL "$DAEMON_PID"
    else
        pass "the daemon stops on SIGTERM"
    fi
    wait "$DAEMON_PID" 2>/dev/null
    DAEMON_PID=
    grep -q '^STOPPING=1' "$NOTIFY_LOG" && pass "STOPPING=1 sent" || fail "STOPPING=1 sent" "$(cat "$NOTIFY_LOG")"
    [[ ! -e $SOCKET ]] && pass "the socket is removed" || fail "the socket is removed" "$(ls -l "$SOCKET")"
}

purge() {
    say "[purge] dpkg --purge leaves nothing of the package"
    /etc/init.d/postfix stop >/dev/null 2>&1
    local out
    out=$(dpkg --purge splitmilter 2>&1) || fail "dpkg --purge splitmilter" "$out"
    local left=()
    local path
    for path in /usr/sbin/splitmilter /usr/bin/milter-test /etc/splitmilter /etc/default/splitmilter "$UNIT" \
        "$SOCKET_DIR" /var/lib/splitmilter /usr/share/doc/splitmilter /usr/lib/sysusers.d/splitmilter.conf \
        /usr/lib/tmpfiles.d/splitmilter.conf /usr/share/man/man8/splitmilter.8.gz; do
        [[ -e $path ]] && left+=("$path")
    done
    if ((${#left[@]} == 0)); then pass "nothing left"; else fail "nothing left" "${left[@]}"; fi
    local status
    status=$(dpkg-query -W -f='${db:Status-Status}' splitmilter 2>/dev/null)
    if [[ -z $status || $status == not-installed ]]; then pass "dpkg forgot the package"; else
        fail "dpkg forgot the package" "status: $status"
    fi
}

main() {
    if ((EUID != 0)); then
        say "package: run as root (installs a package, configures the system Postfix)" >&2
        exit 1
    fi
    local t0=$SECONDS
    inst_init splitmilter-pkg || exit 1
    trap restore_machine EXIT
    DEB=${1:-}
    if [[ -z $DEB ]]; then
        say "[build] scripts/package"
        DEB=$(bash "$REPO/scripts/package" "$INST_ROOT/dist" | tail -n 1) || { say "package: build failed"; exit 1; }
        say "[build] took $((SECONDS - t0))s"
    fi
    DEB=$(cd -- "$(dirname -- "$DEB")" && pwd)/$(basename -- "$DEB")
    inst_pick_ports 1 20000 29999 || exit 1
    SINK_PORT=$INST_PORT_BASE
    sink_start sink "$SINK_PORT" || exit 1
    if install_package && configure_postfix && start_daemon; then
        mail_flows
        reloads
        database
        upgrade_keeps_conffile
        stop_daemon
    fi
    purge
    say "package: total time $((SECONDS - t0))s" >&2
    say "package: $PASSED passed, $FAILED failed"
    ((FAILED == 0))
}

main "$@"
