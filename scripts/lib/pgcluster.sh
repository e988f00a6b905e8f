# shellcheck shell=bash
# scripts/lib/pgcluster.sh: a private PostgreSQL cluster for tests and benchmarks.
#
# Source this file; it defines functions only (no traps: the caller stops its cluster, e.g. in its
# EXIT trap). Safe under `set -u`; every command reads no stdin unless said, every wait is bounded.
#
#   pg_cluster_start DIR PORT   make DIR (absent or empty), initdb, start a server on
#                               127.0.0.1:PORT only, create the database `mail`, the roles
#                               splitmilter_admin (owns `mail` and the schema; no superuser) and
#                               splitmilter_reader (LOGIN, password $PG_READER_PASSWORD, default
#                               reader-secret; USAGE on the schema and SELECT on its tables only),
#                               and load docs/postgresql/schema.sql as splitmilter_admin.
#   pg_cluster_stop DIR         fast shutdown, waits (immediate if fast takes over 60 s); nothing
#                               to do when the server is not running.
#   pg_cluster_restart DIR      stop if running, start again: same data, port and settings.
#   pg_cluster_tls DIR off|on|only [CERT KEY [CLIENT_CA]]
#                               the server's TLS, in force at once (a running server restarts).
#                               on: ssl = on with CERT and KEY (copied into DIR/data, the key
#                               mode 0600 and the server's own); TCP takes TLS and plain
#                               connections. only: the same, but TCP takes only TLS (pg_hba
#                               `hostssl`: a plain connection finds no pg_hba.conf entry). With
#                               CLIENT_CA (either mode): TLS only, and a TCP connection must
#                               also show a client certificate that CLIENT_CA signed for the
#                               role's name (clientcert=verify-full) besides the password. off:
#                               ssl = off, plain TCP only (as pg_cluster_start leaves it). Each
#                               mode turns log_connections on: the server's log says of each
#                               connection whether it used TLS.
#   pg_test_pki DIR             make, with openssl, a throwaway PKI in DIR (made if absent, mode
#                               0755): ca.crt (a CA, key ca.key); server.crt and server.key (CN
#                               and only subjectAltName DNS:localhost, signed by ca.crt: under
#                               sslmode=verify-full it matches host=localhost, not 127.0.0.1);
#                               client.crt and client.key (CN splitmilter_reader, signed by
#                               ca.crt); other-ca.crt (a CA that signed nothing here). EC P-256,
#                               valid for 2 days; keys mode 0600, certificates 0644.
#   pg_admin_sql DIR PORT SQL...
#                               run each SQL (one `psql -c` each, so each its own transaction
#                               unless it says BEGIN) as splitmilter_admin on `mail`, with
#                               -v ON_ERROR_STOP=1 -qAt: prints the rows, fails on an error.
#                               Without SQL, reads the SQL from stdin.
#   pg_free_port [FIRST [LAST]] print the first port in FIRST..LAST (25432..25531) where nothing
#                               listens on 127.0.0.1.
#
# Layout of DIR:  DIR/data (the cluster)  DIR/run (the unix socket directory: the socket is
# DIR/run/.s.PGSQL.PORT; mode 0700, so only the cluster's owner and root connect through it;
# anybody connects over TCP)  DIR/postgresql.log (the server's log)  DIR/initdb.log  DIR/port.
#
# Authentication (DIR/data/pg_hba.conf): over the unix socket the bootstrap superuser `postgres`
# and splitmilter_admin are trusted, any other role gives its password; over TCP (127.0.0.1)
# every role gives its password (scram-sha-256), so splitmilter_admin, who has none, cannot.
#
# Settings: fsync, full_page_writes and synchronous_commit off (a crash may lose the cluster: it
# is a scratch one), track_commit_timestamp on (tests check commit order with
# pg_xact_commit_timestamp). DIR/data/pgcluster-tls.conf, included last, is empty (ssl off) until
# pg_cluster_tls writes it.
#
# Users: initdb and the server refuse to run as root. As root (a CI run), the server tools run as
# PG_CLUSTER_USER (default postgres) through `runuser -u`, DIR is given to that user, and DIR's
# parent directories must let that user through (mktemp -d makes a 0700 directory: chmod 755 it).
# psql itself runs as the caller. As another user, everything runs as that user.
#
# Binaries: PG_BINDIR if set, else `pg_config --bindir` when it holds initdb, else the newest
# /usr/lib/postgresql/*/bin (Debian's layout; the server package is postgresql-15 or postgresql).

PG_CLUSTER_REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)
PG_SCHEMA_SQL=${PG_SCHEMA_SQL:-$PG_CLUSTER_REPO/docs/postgresql/schema.sql}

pg_say() { printf '%s: %s\n' "${PG_TAG:-pgcluster}" "$*" >&2; }

# pg_find_bindir: set PG_BINDIR to the directory of initdb, pg_ctl and psql.
pg_find_bindir() {
    local dir
    if [[ -n ${PG_BINDIR:-} ]]; then
        [[ -x $PG_BINDIR/initdb ]] && return 0
        pg_say "PG_BINDIR=$PG_BINDIR has no initdb"
        return 1
    fi
    if command -v pg_config >/dev/null 2>&1; then
        dir=$(pg_config --bindir 2>/dev/null) || dir=
        if [[ -n $dir && -x $dir/initdb ]]; then
            PG_BINDIR=$dir
            return 0
        fi
    fi
    dir=$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/initdb' 2>/dev/null |
        sort -V | tail -n 1)
    if [[ -n $dir ]]; then
        PG_BINDIR=${dir%/initdb}
        return 0
    fi
    pg_say "no PostgreSQL server binaries (initdb): install postgresql (Debian: apt-get install postgresql)"
    return 1
}

# _pg_owner: the OS user that runs the server tools (empty: the caller).
_pg_owner() {
    if ((EUID == 0)); then
        printf '%s\n' "${PG_CLUSTER_USER:-postgres}"
    fi
}

# _pg_as_owner DIR CMD...: run CMD in DIR as the cluster's OS user, stdin from /dev/null.
_pg_as_owner() {
    local dir=$1 owner
    shift
    owner=$(_pg_owner)
    if [[ -n $owner ]]; then
        (cd -- "$dir" && runuser -u "$owner" -- "$@" </dev/null)
    else
        (cd -- "$dir" && "$@" </dev/null)
    fi
}

# _pg_psql DIR PORT USER DB ARG...: psql over DIR's unix socket, no psqlrc, no inherited options.
_pg_psql() {
    local dir port=$2 user=$3 db=$4 psql=psql
    dir=$(cd -- "$1" && pwd) || return 1
    shift 4
    [[ -x ${PG_BINDIR:-}/psql ]] && psql=$PG_BINDIR/psql
    env -u PGOPTIONS -u PGSERVICE PGCONNECT_TIMEOUT="${PGCONNECT_TIMEOUT:-10}" \
        "$psql" -X -h "$dir/run" -p "$port" -U "$user" -d "$db" -v ON_ERROR_STOP=1 -qAt "$@"
}

# _pg_server_start DIR: pg_ctl start with the log in DIR, waiting up to 60 s.
_pg_server_start() {
    local dir=$1
    if ! _pg_as_owner "$dir" "$PG_BINDIR/pg_ctl" -D "$dir/data" -l "$dir/postgresql.log" \
        -w -t 60 start >/dev/null; then
        pg_say "$dir: the server did not start; the end of $dir/postgresql.log:"
        tail -n 20 -- "$dir/postgresql.log" >&2 2>/dev/null
        return 1
    fi
}

pg_cluster_start() {
    if (($# != 2)); then
        pg_say "usage: pg_cluster_start DIR PORT"
        return 2
    fi
    local dir=$1 port=$2 owner socket
    pg_find_bindir || return 1
    if ! [[ $port =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
        pg_say "bad port: $port"
        return 2
    fi
    mkdir -p -- "$dir" || return 1
    dir=$(cd -- "$dir" && pwd) || return 1
    if [[ -n $(ls -A -- "$dir") ]]; then
        pg_say "$dir: not empty (pg_cluster_restart starts an existing cluster)"
        return 1
    fi
    if [[ $dir == *[\'\\]* ]]; then
        pg_say "$dir: a quote or backslash in the path"
        return 1
    fi
    socket=$dir/run/.s.PGSQL.$port
    if ((${#socket} > 107)); then
        pg_say "$socket: too long for a unix socket (107 bytes at most): use a shorter DIR"
        return 1
    fi
    owner=$(_pg_owner)
    if [[ -n $owner ]]; then
        if ! id -u -- "$owner" >/dev/null 2>&1; then
            pg_say "no user $owner to run the server as (set PG_CLUSTER_USER, or install postgresql)"
            return 1
        fi
        chown -- "$owner:" "$dir" || return 1
        if ! runuser -u "$owner" -- test -w "$dir" -a -x "$dir"; then
            pg_say "$dir: $owner cannot write it (a parent directory closed to $owner? chmod 755 it)"
            return 1
        fi
    fi
    chmod 755 "$dir" || return 1
    _pg_as_owner "$dir" mkdir -m 700 -- "$dir/run" || return 1

    if ! _pg_as_owner "$dir" "$PG_BINDIR/initdb" -D "$dir/data" -U postgres -A trust \
        --auth-host=scram-sha-256 -E UTF8 --no-locale -N >"$dir/initdb.log" 2>&1; then
        pg_say "$dir: initdb failed:"
        tail -n 20 -- "$dir/initdb.log" >&2
        return 1
    fi
    # Written by the caller: root may, and appending or truncating keeps the files' owner.
    cat >>"$dir/data/postgresql.conf" <<EOF || return 1

# pgcluster.sh (a private scratch cluster)
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir/run'
fsync = off
full_page_writes = off
synchronous_commit = off
track_commit_timestamp = on
password_encryption = 'scram-sha-256'
log_line_prefix = '%m [%p] %q%u@%d '
include_if_exists = 'pgcluster-tls.conf'
EOF
    _pg_as_owner "$dir" touch -- "$dir/data/pgcluster-tls.conf" || return 1
    _pg_write_hba "$dir" host || return 1
    printf '%s\n' "$port" >"$dir/port" || return 1
    _pg_server_start "$dir" || return 1
    if ! _pg_cluster_setup "$dir" "$port"; then
        pg_cluster_stop "$dir"
        return 1
    fi
}

# _pg_write_hba DIR TYPE [OPTION]: DIR's pg_hba.conf, with TYPE (host, hostssl) and OPTION for the
# TCP line.
_pg_write_hba() {
    # Written by the caller: root may, and truncating keeps the file's owner.
    cat >"$1/data/pg_hba.conf" <<EOF
# pgcluster.sh: TYPE  DATABASE  USER  [ADDRESS]  METHOD
local   all   postgres                           trust
local   all   splitmilter_admin                  trust
local   all   all                                scram-sha-256
$(printf '%-7s' "$2") all   all                 127.0.0.1/32   scram-sha-256${3:+ $3}
EOF
}

# _pg_cluster_setup DIR PORT: the roles, the database and the schema in a new cluster.
_pg_cluster_setup() {
    local dir=$1 port=$2
    _pg_psql "$dir" "$port" postgres postgres -v pw="${PG_READER_PASSWORD:-reader-secret}" \
        -f - <<'EOF' || return 1
CREATE ROLE splitmilter_admin LOGIN;
CREATE ROLE splitmilter_reader LOGIN PASSWORD :'pw';
CREATE DATABASE mail OWNER splitmilter_admin;
EOF
    if ! _pg_psql "$dir" "$port" splitmilter_admin mail -f - <"$PG_SCHEMA_SQL"; then
        pg_say "$PG_SCHEMA_SQL: loading it failed"
        return 1
    fi
    pg_admin_sql "$dir" "$port" \
        'GRANT USAGE ON SCHEMA splitmilter TO splitmilter_reader' \
        'GRANT SELECT ON ALL TABLES IN SCHEMA splitmilter TO splitmilter_reader'
}

pg_cluster_stop() {
    if (($# != 1)); then
        pg_say "usage: pg_cluster_stop DIR"
        return 2
    fi
    local dir
    dir=$(cd -- "$1" 2>/dev/null && pwd) || return 0
    [[ -f $dir/data/postmaster.pid ]] || return 0
    pg_find_bindir || return 1
    _pg_as_owner "$dir" "$PG_BINDIR/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop \
        >/dev/null 2>&1 && return 0
    # Not running after all (a stale pid file), or a fast shutdown that hangs.
    _pg_as_owner "$dir" "$PG_BINDIR/pg_ctl" -D "$dir/data" status >/dev/null 2>&1 || return 0
    pg_say "$dir: fast shutdown failed, shutting down immediately"
    _pg_as_owner "$dir" "$PG_BINDIR/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null
}

pg_cluster_restart() {
    if (($# != 1)); then
        pg_say "usage: pg_cluster_restart DIR"
        return 2
    fi
    local dir
    dir=$(cd -- "$1" 2>/dev/null && pwd) || dir=$1
    if [[ ! -f $dir/data/PG_VERSION ]]; then
        pg_say "$dir: no cluster (pg_cluster_start makes one)"
        return 1
    fi
    pg_find_bindir || return 1
    pg_cluster_stop "$dir" || return 1
    _pg_server_start "$dir"
}

pg_cluster_tls() {
    local dir mode=${2:-} owner ssl=on type=host option=
    if ! { { (($# == 2)) && [[ $mode == off ]]; } || { (($# == 4 || $# == 5)) && [[ $mode == on || $mode == only ]]; }; }; then
        pg_say "usage: pg_cluster_tls DIR off|on|only [CERT KEY [CLIENT_CA]]"
        return 2
    fi
    dir=$(cd -- "$1" 2>/dev/null && pwd) || dir=$1
    if [[ ! -f $dir/data/PG_VERSION ]]; then
        pg_say "$dir: no cluster (pg_cluster_start makes one)"
        return 1
    fi
    if [[ $mode == off ]]; then
        ssl=off
    else
        owner=$(_pg_owner)
        # The server refuses a key that others may read, or (unless root's) that is not its own.
        install -m 644 ${owner:+-o "$owner"} -- "$3" "$dir/data/server.crt" &&
            install -m 600 ${owner:+-o "$owner"} -- "$4" "$dir/data/server.key" || return 1
        [[ $mode == only ]] && type=hostssl
        if [[ -n ${5:-} ]]; then
            install -m 644 ${owner:+-o "$owner"} -- "$5" "$dir/data/client-ca.crt" || return 1
            type=hostssl option=clientcert=verify-full
        fi
    fi
    # Written by the caller: truncating keeps the files' owner.
    cat >"$dir/data/pgcluster-tls.conf" <<EOF || return 1
# pgcluster.sh: pg_cluster_tls $mode${5:+ with a client CA}
ssl = $ssl
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
ssl_ca_file = '${5:+client-ca.crt}'
log_connections = on
EOF
    _pg_write_hba "$dir" "$type" "$option" || return 1
    if [[ -f $dir/data/postmaster.pid ]]; then
        pg_cluster_restart "$dir"
    fi
}

pg_test_pki() {
    if (($# != 1)); then
        pg_say "usage: pg_test_pki DIR"
        return 2
    fi
    local dir=$1 name
    if ! command -v openssl >/dev/null 2>&1; then
        pg_say "no openssl (Debian: apt-get install openssl; postgresql's ssl-cert depends on it)"
        return 1
    fi
    mkdir -p -- "$dir" && chmod 755 -- "$dir" || return 1
    local new=(openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2)
    if ! (
        umask 077
        for name in ca other-ca; do
            "${new[@]}" -keyout "$dir/$name.key" -out "$dir/$name.crt" -subj "/CN=splitmilter test $name" ||
                exit 1
        done
        "${new[@]}" -keyout "$dir/server.key" -out "$dir/server.crt" -subj /CN=localhost \
            -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -addext subjectAltName=DNS:localhost \
            -addext basicConstraints=critical,CA:FALSE -addext extendedKeyUsage=serverAuth || exit 1
        "${new[@]}" -keyout "$dir/client.key" -out "$dir/client.crt" -subj /CN=splitmilter_reader \
            -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
            -addext basicConstraints=critical,CA:FALSE -addext extendedKeyUsage=clientAuth || exit 1
        chmod 644 -- "$dir"/*.crt
    ) >"$dir/openssl.log" 2>&1; then
        pg_say "$dir: openssl failed:"
        tail -n 20 -- "$dir/openssl.log" >&2
        return 1
    fi
}

pg_admin_sql() {
    if (($# < 2)); then
        pg_say "usage: pg_admin_sql DIR PORT [SQL...]"
        return 2
    fi
    local dir=$1 port=$2 sql args=()
    shift 2
    if (($# == 0)); then
        _pg_psql "$dir" "$port" splitmilter_admin mail -f -
        return
    fi
    for sql in "$@"; do
        args+=(-c "$sql")
    done
    _pg_psql "$dir" "$port" splitmilter_admin mail "${args[@]}" </dev/null
}

pg_free_port() {
    local port=${1:-25432} last=${2:-$((${1:-25432} + 99))}
    for ((; port <= last; port++)); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            printf '%s\n' "$port"
            return 0
        fi
    done
    pg_say "no free port in ${1:-25432}..$last"
    return 1
}
