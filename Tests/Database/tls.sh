# shellcheck shell=bash
# Tests/Database/tls.sh: the database settings' TLS, proved through the real daemon against a real
# server. Sourced by Tests/Database/run.sh, which calls tls_checks last (`run.sh tls`: only these)
# and gives it say, pass, fail, check, check_match, since and ROOT; its EXIT trap stops TLS_D's
# cluster and kills TLS_PIDS.
#
# A cluster of its own (scripts/lib/pgcluster.sh) on 127.0.0.1 serves a certificate for
# DNS:localhost only, signed by a throwaway CA (pg_test_pki: openssl). The daemon binary
# (SPLITMILTER, default `swift build --show-bin-path`/splitmilter) reads the rows of the lists its
# rule file names, with `--check --database` and as a running daemon: as root, started as root
# with `--user nobody`, as the README's "Never as root" says. Checks:
#
#   1  host=localhost, sslmode=verify-full, sslrootcert=the CA: --check reads the rows, and the
#      server logged its connection as TLS; a running daemon's follower (after the switch to
#      nobody) holds a TLS connection (the server's log for that backend's pid) and applies an
#      INSERT made after it started.
#   2  refused, no rows read, "not starting" with no cache: verify-full with a CA that did not
#      sign the server's certificate (by --check, and by a daemon that then exits; the server
#      logged the client's "unknown ca"); verify-full to a name the certificate does not carry
#      (host=127.0.0.1), while verify-ca to the same 127.0.0.1 reads the rows (so the refusal
#      was the name).
#   3  the defaults: a host the settings cannot know is this machine (2130706433, 127.0.0.1
#      written as one number; only loopback exists here) gets verify-full with the system's CA
#      bundle (refused: the bundle does not know the test CA), and with the test CA it is still
#      refused for the name (verify-full, not verify-ca); host=localhost gets prefer, which takes
#      TLS when the server offers it; a server that takes only TLS (pg_hba hostssl) refuses
#      sslmode=disable.
#   4  client certificates (the server then demands one signed by the CA for the role's name):
#      sslcert and sslkey get through, also to the running daemon's follower after the switch
#      (the key root's, mode 0640, group the daemon's); without them, refused.
#   5  the server with ssl=off: sslmode=require is refused, and so is a host elsewhere with the
#      default sslmode; host=localhost's default (prefer) reads the rows without TLS.
#
#   6  (as root) started with a HOME only root may enter (as from a root shell): the follower,
#      after the switch to the daemon's user, still connects over TLS (it failed on
#      $HOME/.postgresql/postgresql.crt: Permission denied, and under prefer went without TLS,
#      before the daemon set HOME to its user's).

TLS_D=
declare -a TLS_PIDS=()

# tls_sql SQL...: as splitmilter_admin on the TLS cluster (its unix socket).
tls_sql() { pg_admin_sql "$TLS_D" "$TLS_PORT" "$@" 2>&1; }

# tls_conf NAME LINE...: the settings file T/NAME.conf: the reader, its password file, a cache
# of its own (never written by --check), then LINEs.
tls_conf() {
    local name=$1
    shift
    printf '%s\n' "port = $TLS_PORT" "dbname = mail" "user = splitmilter_reader" \
        "password_file = $T/reader.password" "cache = $T/state/$name.cache" "$@" >"$T/$name.conf"
}

# tls_check NAME: `splitmilter --check --database T/NAME.conf`; TLS_RC, TLS_OUT (both streams).
tls_check() {
    TLS_OUT=$(HOME=$T/home timeout -k 3 30 "$SPLITMILTER" --check --rules "$T/tls.rules" \
        --database "$T/$1.conf" </dev/null 2>&1)
    TLS_RC=$?
}

# tls_reads WHAT NAME TRANSPORT: --check of NAME read the rows, said it did so TRANSPORT (an ERE:
# over TLSv1.3, without TLS), and found the rules good.
tls_reads() {
    tls_check "$2"
    check_match "$1" "^rc=0 .*database postgresql://splitmilter_reader@[^ ]+ \(sslmode=[a-z-]+\): [0-9]+ list rows and [0-9]+ rule rows up to change [0-9]+, read in [0-9]+ ms $3 .* ok: 1 domain, 3 listed users" \
        "rc=$TLS_RC $(tr '\n' ' ' <<<"$TLS_OUT")"
}

# tls_refused WHAT PLACE MODE ERROR: TLS_OUT/TLS_RC (--check or a daemon) say that the database
# at PLACE (sslmode=MODE) refused with ERROR (an ERE), no rows read, no cache: not starting (a daemon) or no rows to check with (--check).
tls_refused() {
    local said
    said="rc=$TLS_RC $(tr '\n' ' ' <<<"$TLS_OUT")"
    if [[ $said == *"list rows"* || $said == *" ok: "* ]]; then
        fail "$1"
        say "    rows were read: $said"
        return
    fi
    check_match "$1" "^rc=1 .*cannot reach the database postgresql://splitmilter_reader@$2/mail \(sslmode=$3\) \(.*$4.*\), and no cache to serve from: $T/state/[a-z0-9-]+\.cache: No such file or directory; (not starting|no rows to check the rules with)" \
        "$said"
}

# tls_log_mark: the server log's size now; tls_log_since MARK: what it logged since.
tls_log_mark() { stat -c %s "$TLS_D/postgresql.log"; }
tls_log_since() { tail -c +"$(($1 + 1))" "$TLS_D/postgresql.log"; }

# tls_authorized MARK [PID]: the server's "connection authorized" lines for the reader as
# splitmilter since MARK (of backend PID only, if given).
tls_authorized() {
    tls_log_since "$1" | grep -E "\[${2:-[0-9]+}\] splitmilter_reader@mail LOG: +connection authorized: user=splitmilter_reader database=mail application_name=splitmilter"
}

# tls_daemon NAME HOME: start the daemon on T/NAME.conf with HOME (as root: --user nobody), its
# log in T/NAME.log, TLS_PID its pid; true once it listens; false (TLS_RC, TLS_OUT) when it
# exits first or does not listen within 15 s.
tls_daemon() {
    # Not the socket's default group (postfix): a user that is not root may not be its member.
    local user=(--socket-group "$(id -gn)") deadline=$((SECONDS + 15))
    ((EUID != 0)) || user+=(--user nobody)
    : >"$T/$1.log"
    HOME=$2 setsid "$SPLITMILTER" --rules "$T/tls.rules" --database "$T/$1.conf" --socket "unix:$T/$1.sock" \
        --log stderr "${user[@]}" </dev/null >>"$T/$1.log" 2>&1 &
    TLS_PID=$!
    TLS_PIDS+=("$TLS_PID")
    until grep -q 'listening on' "$T/$1.log"; do
        if ! kill -0 "$TLS_PID" 2>/dev/null || ((SECONDS >= deadline)); then
            kill -KILL "$TLS_PID" 2>/dev/null
            wait "$TLS_PID" 2>/dev/null
            TLS_RC=$?
            TLS_OUT=$(cat "$T/$1.log")
            return 1
        fi
        sleep 0.05
    done
}

tls_daemon_stop() {
    kill -KILL "$TLS_PID" 2>/dev/null
    wait "$TLS_PID" 2>/dev/null
}

# tls_wait CMD...: CMD succeeds within 10 s (tried every 0.05 s).
tls_wait() {
    local deadline=$((SECONDS + 10))
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.05
    done
}

# tls_follower: true when the running daemon's follower is connected (the one session of the
# reader as splitmilter); TLS_BACKEND its backend's pid.
tls_follower() {
    TLS_BACKEND=$(tls_sql "SELECT pid FROM pg_stat_activity WHERE usename = 'splitmilter_reader'
                               AND application_name = 'splitmilter'")
    [[ $TLS_BACKEND =~ ^[0-9]+$ ]]
}

# tls_following WHAT NAME HOME: a daemon on NAME.conf with HOME follows: the server logged its
# follower's connection as TLS, and a list row INSERTed after the start is in force (then
# deleted again).
tls_following() {
    local mark last
    mark=$(tls_log_mark)
    if ! tls_daemon "$2" "$3"; then
        fail "$1: the daemon started"
        say "    $TLS_OUT"
        return
    fi
    if tls_wait tls_follower && tls_authorized "$mark" "$TLS_BACKEND" |
        grep -Eq "application_name=splitmilter SSL enabled \(protocol=TLSv1\.[23],"; then
        pass "$1: the server logged the follower's connection (backend $TLS_BACKEND) as TLS"
    else
        fail "$1: the server logged the follower's connection as TLS"
        say "    backend: ${TLS_BACKEND:-none}; the server logged:"
        tls_authorized "$mark" | sed 's/^/    /'
        sed 's/^/    daemon: /' "$T/$2.log"
    fi
    tls_sql "INSERT INTO splitmilter.list_members VALUES ('tls_google', 'dave-$2')" >/dev/null
    last=$(tls_sql 'SELECT last FROM splitmilter.change_counter')
    if tls_wait grep -q "database change $last in force" "$T/$2.log"; then
        pass "$1: an INSERT after the start (change $last) is in force"
    else
        fail "$1: an INSERT after the start (change $last) is in force"
        sed 's/^/    daemon: /' "$T/$2.log"
    fi
    tls_daemon_stop
    tls_sql "DELETE FROM splitmilter.list_members WHERE name = 'dave-$2'" >/dev/null
}

tls_checks() {
    local started=$EPOCHREALTIME mark nobody_group
    T=$ROOT/tls
    say "tls: TLS between the daemon and a PostgreSQL server with a certificate"
    if [[ -z ${SPLITMILTER:-} ]]; then
        # shellcheck source=scripts/lib/swift.sh
        source "$REPO/scripts/lib/swift.sh"
        swift_find && SPLITMILTER=$(swift_run build --show-bin-path 2>/dev/null)/splitmilter
    fi
    if [[ ! -x ${SPLITMILTER:-} ]]; then
        fail "tls: no daemon binary at '${SPLITMILTER:-}' (build it, or set SPLITMILTER)"
        return
    fi
    mkdir -m 755 -- "$T" "$T/home" "$T/state" || return
    ((EUID != 0)) || chown nobody -- "$T/state" || return
    (umask 077 && printf '%s\n' "$PG_READER_PASSWORD" >"$T/reader.password") || return
    cat >"$T/tls.rules" <<'EOF' || return
domain example.org
    copy %u@gapps.example.org
    only pgsql:tls_google
    user pgsql:tls_people
EOF
    TLS_PORT=$(pg_free_port) || return
    TLS_D=$T/pg
    if ! pg_test_pki "$T/pki" || ! pg_cluster_start "$TLS_D" "$TLS_PORT" ||
        ! pg_cluster_tls "$TLS_D" only "$T/pki/server.crt" "$T/pki/server.key"; then
        fail "tls: a cluster with TLS on 127.0.0.1:$TLS_PORT"
        return
    fi
    tls_sql "INSERT INTO splitmilter.list_members VALUES ('tls_google', 'alice'), ('tls_google', 'bob')" \
        "INSERT INTO splitmilter.user_rules VALUES ('tls_people', 'carol', 'copy', 'carol@gapps.example.org')" \
        >/dev/null
    local ca="sslrootcert = $T/pki/ca.crt" place="localhost:$TLS_PORT" elsewhere="2130706433:$TLS_PORT"

    # 1 verify-full to the name on the certificate.
    tls_conf full "host = localhost" "sslmode = verify-full" "$ca"
    mark=$(tls_log_mark)
    tls_reads "1 verify-full to localhost with the test CA: --check reads the rows" full "over TLSv1\.[23]"
    check_match "1 ... and the server logged that connection as TLS" \
        "application_name=splitmilter SSL enabled \(protocol=TLSv1\.[23]," "$(tls_authorized "$mark")"
    tls_following "1 a running daemon with verify-full" full "$T/home"

    # 2 refusals.
    tls_conf other-ca "host = localhost" "sslmode = verify-full" "sslrootcert = $T/pki/other-ca.crt"
    tls_check other-ca
    tls_refused "2 verify-full with a CA that did not sign the server's certificate: refused (--check)" \
        "$place" verify-full 'SSL error: certificate verify failed'
    mark=$(tls_log_mark)
    if tls_daemon other-ca "$T/home"; then
        fail "2 ... a daemon with that CA does not start"
        tls_daemon_stop
    else
        tls_refused "2 ... a daemon with that CA does not start" "$place" verify-full \
            'SSL error: certificate verify failed'
    fi
    check_match "2 ... the server saw the client refuse its certificate" \
        'could not accept SSL connection: .*unknown ca' "$(tls_log_since "$mark")"
    tls_conf by-address "host = 127.0.0.1" "sslmode = verify-full" "$ca"
    tls_check by-address
    tls_refused "2 verify-full to 127.0.0.1, a name the certificate does not carry: refused" \
        "127\.0\.0\.1:$TLS_PORT" verify-full \
        'server certificate for "localhost".* does not match host name "127\.0\.0\.1"'
    tls_conf by-address-ca "host = 127.0.0.1" "sslmode = verify-ca" "$ca"
    tls_reads "2 ... while verify-ca to 127.0.0.1 reads the rows (the refusal was the name)" by-address-ca "over TLSv1\.[23]"

    # 3 defaults.
    tls_conf elsewhere "host = 2130706433"
    tls_check elsewhere
    tls_refused "3 a host elsewhere by default: verify-full with the system's CA bundle, refused" \
        "$elsewhere" verify-full 'SSL error: certificate verify failed'
    tls_conf elsewhere-ca "host = 2130706433" "$ca"
    tls_check elsewhere-ca
    tls_refused "3 ... with the test CA, refused for the name (the default is verify-full, not verify-ca)" \
        "$elsewhere" verify-full 'server certificate for "localhost".* does not match host name "2130706433"'
    tls_conf local "host = localhost"
    mark=$(tls_log_mark)
    tls_reads "3 localhost by default (prefer): reads the rows" local "over TLSv1\.[23]"
    check_match "3 ... over TLS, which the server offers" \
        "application_name=splitmilter SSL enabled \(protocol=TLSv1\.[23]," "$(tls_authorized "$mark")"
    tls_conf plain "host = localhost" "sslmode = disable"
    tls_check plain
    tls_refused "3 a server that takes only TLS (hostssl) refuses sslmode=disable" "$place" disable \
        'FATAL: no pg_hba.conf entry for host "127\.0\.0\.1", user "splitmilter_reader", database "mail", no encryption'

    # 4 client certificates. As root the daemon opens the key as root at start and as nobody
    # after the switch: root's, group nobody's, mode 0640 (libpq takes that of a key root owns).
    if pg_cluster_tls "$TLS_D" only "$T/pki/server.crt" "$T/pki/server.key" "$T/pki/ca.crt"; then
        install -m 600 -- "$T/pki/client.key" "$T/client.key"
        if ((EUID == 0)); then
            nobody_group=$(id -gn nobody) && chgrp -- "$nobody_group" "$T/client.key" && chmod 640 -- "$T/client.key"
        fi
        tls_conf client "host = localhost" "sslmode = verify-full" "$ca" "sslcert = $T/pki/client.crt" \
            "sslkey = $T/client.key"
        tls_reads "4 a client certificate (sslcert, sslkey) the server demands: --check reads the rows" client "over TLSv1\.[23]"
        tls_following "4 a running daemon with the client certificate" client "$T/home"
        tls_conf no-client "host = localhost" "sslmode = verify-full" "$ca"
        tls_check no-client
        tls_refused "4 ... without sslcert and sslkey: refused" "$place" verify-full \
            'FATAL: connection requires a valid client certificate'
    else
        fail "4 the server demands client certificates"
    fi

    # Started as root with a HOME that only root may enter (/root, as from a root shell): after
    # the switch to the daemon's user, HOME is that user's, and the follower connects over TLS.
    if ((EUID == 0)) && pg_cluster_tls "$TLS_D" only "$T/pki/server.crt" "$T/pki/server.key"; then
        mkdir -m 700 -- "$T/root-home"
        tls_following "6 started as root with HOME only root may enter: the follower" full "$T/root-home"
    fi

    # 5 a server without TLS.
    if pg_cluster_tls "$TLS_D" off; then
        tls_conf require "host = localhost" "sslmode = require"
        tls_check require
        tls_refused "5 sslmode=require to a server with ssl=off: refused" "$place" require \
            'server does not support SSL, but SSL was required'
        tls_check elsewhere
        tls_refused "5 ... and a host elsewhere by default" "$elsewhere" verify-full \
            'server does not support SSL, but SSL was required'
        mark=$(tls_log_mark)
        tls_reads "5 localhost by default (prefer) reads the rows, and says: without TLS" local "without TLS"
        check "5 ... without TLS" "application_name=splitmilter" \
            "$(tls_authorized "$mark" | grep -o 'application_name=splitmilter.*')"
    else
        fail "5 the server with ssl=off"
    fi
    say "    the TLS checks took $(since "$started") s"
}
