# shellcheck shell=bash
# scripts/lib/instance.sh: bring up a private Postfix instance with splitmilter and smtp-sink next hops.
#
# Source this file; it defines functions only. Scripts/tests call inst_init first, which makes
# the scratch directory and installs an EXIT trap that stops everything the run started (by PID
# or by the instance's own `postfix stop`) and removes the scratch directory unless KEEP=1.
#
# Everything binds 127.0.0.1 only, every wait is bounded, and nothing leaves the box: the
# private Postfix sends what it does not deliver itself to `error:`.
#
# Layout of one Postfix instance in directory D (the main one is the scratch root itself):
#   D/pf/ config (main.cf, master.cf, texthash maps)   D/q/ queue   D/data/   D/maillog
#   D/mail/<user>.mbox local deliveries (mode 1777; local(8) writes as nobody)
#   D/q/splitmilter/ the daemons' sockets, laid out as the package lays out
#       /var/spool/postfix/splitmilter (milter_socket_dir); a chrooted smtpd names them
#       unix:/splitmilter/NAME.sock
# Sinks dump into ROOT/<name>/, daemon and sink logs go to ROOT/logs/<name>.log.
# The daemons run unprivileged: started as root, each is given --user MILTER_USER (default nobody).
#
# Naming: inst_* generic, pf_* Postfix, sink_* smtp-sink, milter_* the splitmilter daemon.

# ---------------------------------------------------------------------------------------------
# Generic

# inst_init PREFIX [DIR]: create the scratch root (mktemp, or DIR made empty) and install traps.
inst_init() {
    local prefix=${1:-splitmilter} dir=${2:-}
    if [[ -n $dir ]]; then
        rm -rf -- "$dir" && mkdir -p -- "$dir" || return 1
        INST_ROOT=$(cd -- "$dir" && pwd)
    else
        INST_ROOT=$(mktemp -d "${TMPDIR:-/tmp}/$prefix.XXXXXX") || return 1
    fi
    # Postfix (user postfix), local(8) and pipe(8) (user nobody) must traverse it.
    chmod 755 "$INST_ROOT"
    mkdir -p "$INST_ROOT/logs"
    INST_TAG=${INST_TAG:-$prefix}
    declare -gA INST_PIDS=()
    declare -ga INST_POSTFIX=()
    trap inst_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
}

inst_say() { printf '%s: %s\n' "${INST_TAG:-instance}" "$*" >&2; }

# inst_alive PID: true while PID runs (not a zombie).
inst_alive() {
    local pid=$1 state
    [[ -n $pid ]] && [[ -r /proc/$pid/stat ]] || return 1
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ -n $state && $state != Z ]]
}

# inst_wait TIMEOUT DESCRIPTION CMD...: run CMD every 0.1 s until it succeeds or TIMEOUT s pass.
inst_wait() {
    local timeout=$1 what=$2
    shift 2
    local deadline=$((SECONDS + timeout))
    while :; do
        "$@" && return 0
        if ((SECONDS >= deadline)); then
            inst_say "timed out after ${timeout}s waiting for $what"
            return 1
        fi
        sleep 0.1
    done
}

# inst_spawn NAME LOG CMD...: start CMD in the background, detached from our stdio, record its PID.
# Must be called in the main shell (not in $(...)), so that the cleanup trap can kill and reap it.
inst_spawn() {
    local name=$1 log=$2
    shift 2
    # setsid: a Ctrl-C in the terminal reaches only the script, whose trap stops the children
    # in order. (A background child of a non-interactive shell is no group leader, so setsid
    # does not fork and $! is the command's own PID.)
    setsid "$@" </dev/null >"$log" 2>&1 &
    INST_PIDS[$name]=$!
}

# inst_kill NAME [GRACE]: SIGTERM, wait up to GRACE s (default INST_GRACE, else 10), then SIGKILL.
# Reaps the child. Returns 0 if it exited on SIGTERM, 2 if SIGKILL was needed. splitmilter stops
# within milliseconds; other libmilter milters about 5 s after SIGTERM (libmilter's accept loop
# polls every 5 s), more under a sanitizer or on a loaded machine: the default leaves room for that.
inst_kill() {
    local name=$1 grace=${2:-${INST_GRACE:-10}} pid=${INST_PIDS[$1]:-} rc=0
    [[ -n $pid ]] || return 0
    if inst_alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null
        local deadline=$((SECONDS + grace))
        while inst_alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
        if inst_alive "$pid"; then
            inst_say "$name (pid $pid) still running ${grace}s after SIGTERM; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null
            rc=2
        fi
    fi
    wait "$pid" 2>/dev/null
    unset "INST_PIDS[$name]"
    return $rc
}

# inst_signal NAME SIGNAL [TIMEOUT]: send SIGNAL (TERM, HUP, KILL, ...) to NAME, then inst_reap.
inst_signal() {
    local pid=${INST_PIDS[$1]:-}
    INST_STATUS=
    [[ -n $pid ]] || { inst_say "inst_signal: no process named $1"; return 1; }
    kill -"$2" "$pid" 2>/dev/null
    inst_reap "$1" "${3:-8}"
}

# inst_reap NAME [TIMEOUT]: wait up to TIMEOUT s (default 8) for NAME to exit; then reap it and
# set INST_STATUS to its exit status (128+N when signal N killed it). Returns 1, leaving it to the
# cleanup trap, if it still runs.
inst_reap() {
    local name=$1 timeout=${2:-8} pid=${INST_PIDS[$1]:-}
    INST_STATUS=
    [[ -n $pid ]] || { inst_say "inst_reap: no process named $name"; return 1; }
    local deadline=$((SECONDS + timeout))
    # stderr to /dev/null throughout: bash may reap the child while this loop runs a command and
    # then prints "PID Killed ..." for a job that a signal ended, which is the expected outcome here.
    {
        while inst_alive "$pid" && ((SECONDS < deadline)); do sleep 0.05; done
        inst_alive "$pid" && return 1
        wait "$pid"
        # shellcheck disable=SC2034 # the caller's output
        INST_STATUS=$?
    } 2>/dev/null
    unset "INST_PIDS[$name]"
}

# inst_cleanup: the EXIT trap. Stops Postfix instances, then all spawned processes (in parallel:
# a libmilter milter may take ~5 s to honour SIGTERM), then removes the scratch root unless KEEP=1.
inst_cleanup() {
    local rc=$? dir name pid
    trap - EXIT INT TERM HUP
    [[ -n ${INST_ROOT:-} ]] || return $rc
    for dir in "${INST_POSTFIX[@]}"; do pf_stop "$dir" >/dev/null 2>&1; done
    for name in "${!INST_PIDS[@]}"; do
        pid=${INST_PIDS[$name]}
        inst_alive "$pid" && kill -TERM "$pid" 2>/dev/null
    done
    local deadline=$((SECONDS + 6)) busy=1
    while ((busy && SECONDS < deadline)); do
        busy=0
        for name in "${!INST_PIDS[@]}"; do inst_alive "${INST_PIDS[$name]}" && busy=1; done
        ((busy)) && sleep 0.1
    done
    for name in "${!INST_PIDS[@]}"; do
        pid=${INST_PIDS[$name]}
        if inst_alive "$pid"; then
            inst_say "$name (pid $pid) ignored SIGTERM for 6s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null
        fi
        wait "$pid" 2>/dev/null
    done
    INST_PIDS=()
    if [[ ${KEEP:-0} == 1 ]]; then
        inst_say "KEEP=1: leaving $INST_ROOT"
    else
        rm -rf -- "$INST_ROOT"
    fi
    return $rc
}

# inst_port_busy PORT: true if anything listens on TCP PORT (any address).
inst_port_busy() {
    [[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]]
}

# inst_pick_ports COUNT [LOW] [HIGH]: set INST_PORT_BASE so that BASE..BASE+COUNT-1 are all free.
# The base is random, so a stale process from an earlier run (smtp-sink binds with SO_REUSEPORT
# and would silently share a port) is avoided rather than joined.
inst_pick_ports() {
    local count=$1 low=${2:-20000} high=${3:-29999} base p ok
    for _ in $(seq 1 50); do
        base=$((low + (RANDOM * 32768 + RANDOM) % (high - low - count + 2)))
        ok=1
        for ((p = base; p < base + count; p++)); do
            if inst_port_busy "$p"; then ok=0; break; fi
        done
        # shellcheck disable=SC2034 # the caller's output
        if ((ok)); then INST_PORT_BASE=$base; return 0; fi
    done
    inst_say "no block of $count free ports in $low-$high"
    return 1
}

# inst_wait_port PORT [TIMEOUT]: wait until something listens on 127.0.0.1:PORT.
inst_wait_port() { inst_wait "${2:-10}" "a listener on 127.0.0.1:$1" inst_port_busy "$1"; }

inst_unix_listening() { [[ -n $(ss -Hxl src "$1" 2>/dev/null) ]]; }

# inst_tail FILE [N]: last N lines of FILE, indented, for failure reports.
inst_tail() {
    local file=$1 n=${2:-15}
    if [[ -s $file ]]; then
        printf '    --- last %s lines of %s\n' "$n" "$file"
        tail -n "$n" -- "$file" | sed 's/^/    | /'
    else
        printf '    --- %s is empty or missing\n' "$file"
    fi
}

# ---------------------------------------------------------------------------------------------
# Postfix

# pf_tty CMD...: run a Postfix command on a pseudo-terminal. Postfix commands print their
# errors only when stderr is a tty (they log to the maillog otherwise, which may not be running
# yet), so without this a failing `postfix check` in CI exits 1 silently. Output goes to stdout
# with the CRs removed; the exit status is the command's.
pf_tty() {
    local cmd
    cmd=$(printf '%q ' "$@")
    SHELL=/bin/sh script -qec "$cmd" /dev/null </dev/null | tr -d '\r'
    return "${PIPESTATUS[0]}"
}

# pf_cli DIR ARGS...: `postfix -c DIR/pf ARGS`, printing output and the maillog tail on failure.
pf_cli() {
    local dir=$1 out rc
    shift
    out=$(pf_tty postfix -c "$dir/pf" "$@")
    rc=$?
    if ((rc != 0)); then
        inst_say "postfix -c $dir/pf $* failed (exit $rc):"
        printf '%s\n' "$out" | sed 's/^/    | /' >&2
        inst_tail "$dir/maillog" 20 >&2
    fi
    return $rc
}

# pf_postconf DIR ARGS...: postconf -c DIR/pf ARGS, failing loudly.
pf_postconf() {
    local dir=$1 out rc
    shift
    out=$(pf_tty postconf -c "$dir/pf" "$@")
    rc=$?
    # postconf warns (exit 0) about unknown parameters: a typo here is a harness bug.
    if ((rc != 0)) || [[ $out == *warning:* || $out == *fatal:* ]]; then
        inst_say "postconf -c $dir/pf $* failed (exit $rc):"
        printf '%s\n' "$out" | sed 's/^/    | /' >&2
        return 1
    fi
    [[ -z $out ]] || printf '%s\n' "$out"
}

# pf_init DIR HOSTNAME [--chroot]: lay out an instance in DIR with a base config that delivers
# nothing and relays nothing (default/relay transport = error). Add settings with pf_set,
# listeners with pf_listen, maps with pf_map, then pf_start. No service runs chrooted, so absolute
# paths just work; with --chroot master.cf keeps Debian's chroot column (smtpd, cleanup, pickup,
# smtp, ... chrooted to DIR/q; local, pipe, qmgr not): paths those open at run time, such as
# unix: milter sockets, must then be relative to DIR/q, as on a Debian server.
pf_init() {
    local dir=$1 host=$2 chroot=${3:-}
    mkdir -p "$dir/pf" "$dir/q" "$dir/data" "$dir/mail" || return 1
    chmod 755 "$dir" "$dir/pf"
    chmod 1777 "$dir/mail"
    chown postfix:postfix "$dir/data" && chmod 700 "$dir/data"
    cat >"$dir/pf/main.cf" <<EOF
# Private Postfix instance written by scripts/lib/instance.sh. Loopback only, nothing leaves.
compatibility_level = 3.6
queue_directory = $dir/q
data_directory = $dir/data
maillog_file = $dir/maillog
maillog_file_prefixes = $dir
myhostname = $host
mydomain = e2e.test
myorigin = \$myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
smtp_bind_address = 127.0.0.1
mynetworks = 127.0.0.0/8
biff = no
alias_maps =
alias_database =
default_transport = error:5.7.1 no external delivery from the test instance
relay_transport = error:5.7.1 no external delivery from the test instance
smtpd_banner = \$myhostname ESMTP
EOF
    cp /usr/share/postfix/master.cf.dist "$dir/pf/master.cf" || return 1
    pf_postconf "$dir" -MX smtp/inet || return 1      # no listener on :25
    [[ $chroot == --chroot ]] || pf_postconf "$dir" -F '*/*/chroot = n' || return 1
}

# pf_set DIR 'name = value'...: edit main.cf.
pf_set() {
    local dir=$1
    shift
    pf_postconf "$dir" -e "$@" >/dev/null
}

# pf_listen DIR PORT [--chroot] [-o name=value]...: an smtpd listener on 127.0.0.1:PORT. With
# --chroot it runs chrooted to the queue directory, as Debian's master.cf runs smtpd: the paths it
# opens after start (unix: milter sockets, smtpd_sasl_path) are then relative to D/q.
pf_listen() {
    local dir=$1 port=$2 chroot=n
    shift 2
    if [[ ${1:-} == --chroot ]]; then chroot=y && shift; fi
    pf_postconf "$dir" -M -e "127.0.0.1:$port/inet = 127.0.0.1:$port inet n - $chroot - - smtpd $*" >/dev/null
}

# pf_service DIR 'name/type = master.cf line': add or replace a master.cf service.
pf_service() { pf_postconf "$1" -M -e "$2" >/dev/null; }

# pf_map DIR FILE 'key value'...: write the texthash table DIR/pf/FILE (no colons: texthash wants
# "key value"). Tables are read once per process: pf_reload after changing one on a live instance.
pf_map() {
    local dir=$1 file=$2
    shift 2
    printf '%s\n' "$@" >"$dir/pf/$file"
}

# pf_mx_config DIR MILTER_SOCKET_PATH: the split-delivery MX of the tests and the demo.
#   example.org, localhost local (alias_maps pf/aliases: users delivered to DIR/mail/<user>.mbox);
#       only those users exist (local_recipient_maps = $alias_maps, not the Unix passwd file),
#       and a milter-added Unix user's mailbox would be DIR/mail/<user>, not /var/mail
#   example.net a relay domain; transport_maps pf/transport routes it (and the copy domains)
#   smtpd_milters = unix:MILTER_SOCKET_PATH, tempfail when it is down
pf_mx_config() {
    local dir=$1 sock=$2
    pf_set "$dir" \
        "mydestination = example.org, localhost" \
        "myorigin = example.org" \
        "alias_maps = texthash:$dir/pf/aliases" \
        "local_recipient_maps = \$alias_maps" \
        "mail_spool_directory = $dir/mail" \
        "relay_domains = example.net" \
        "transport_maps = texthash:$dir/pf/transport" \
        "virtual_alias_maps = texthash:$dir/pf/virtual" \
        "recipient_delimiter = +" \
        "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination" \
        "smtpd_milters = unix:$sock" \
        "milter_default_action = tempfail" || return 1
    : >>"$dir/pf/aliases"
    : >>"$dir/pf/transport"
    : >>"$dir/pf/virtual"
}

# pf_aliases DIR USER...: local users, each delivered to DIR/mail/USER.mbox; USER=TARGET makes
# an alias of another local user instead.
pf_aliases() {
    local dir=$1 u
    shift
    for u in "$@"; do
        if [[ $u == *=* ]]; then
            printf '%s %s\n' "${u%%=*}" "${u#*=}"
        else
            printf '%s %s\n' "$u" "$dir/mail/$u.mbox"
        fi
    done >"$dir/pf/aliases"
    printf 'postmaster root\nroot %s\n' "$dir/mail/root.mbox" >>"$dir/pf/aliases"
}

# pf_split_mx DIR MILTER_SOCKET_PATH GOOGLE_PORT PRIMARY_PORT [TRANSPORT_LINE...]: the MX of the
# tests and the demo, on top of pf_mx_config:
#   users alice bob carol dave eve frank sender (allie is an alias of alice) -> DIR/mail/USER.mbox
#   gapps.example.org (the Google copies) -> smtp-sink on 127.0.0.1:GOOGLE_PORT
#   example.net (relay domain; its primary MX) -> smtp-sink on 127.0.0.1:PRIMARY_PORT
#   mda.example.test -> the pipe(8) service "mda" (Tests/EndToEnd/mda-store as nobody) -> DIR/mda/
pf_split_mx() {
    local dir=$1 sock=$2 google=$3 primary=$4
    shift 4
    local agent
    agent=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../../Tests/EndToEnd" && pwd)/mda-store
    pf_mx_config "$dir" "$sock" || return 1
    pf_aliases "$dir" alice bob carol dave eve frank sender allie=alice
    pf_map "$dir" transport \
        "gapps.example.org smtp:[127.0.0.1]:$google" \
        "example.net smtp:[127.0.0.1]:$primary" \
        "mda.example.test mda:" \
        "$@"
    # The agent runs as nobody: give it a copy it can read and a 1777 directory to write.
    mkdir -p "$dir/bin" "$dir/mda" && chmod 1777 "$dir/mda"
    install -m 755 "$agent" "$dir/bin/mda-store" || return 1
    pf_service "$dir" "mda/unix = mda unix - n n - - pipe flags=Rq user=nobody argv=$dir/bin/mda-store $dir/mda \${recipient}" || return 1
    pf_set "$dir" "mda_destination_recipient_limit = 1"
}

# pf_start DIR: start the instance (runs Postfix's own checks, waits until master is up; the
# listeners follow within ~0.3 s). Postfix waits ~1.5-2 s when main.cf is less than 2 s old, so
# write every instance's config before starting the first one.
pf_start() {
    local dir=$1
    pf_chroot_files "$dir" || return 1
    pf_cli "$dir" start || return 1
    INST_POSTFIX+=("$dir")
}

# pf_chroot_files DIR: what Debian's init does before every start: when a service of master.cf
# runs chrooted, copy into the queue directory the files it needs there (etc/hosts, resolv.conf,
# services, ..., the NSS libraries). Debian's own script, pointed at the instance by MAIL_CONFIG.
pf_chroot_files() {
    local dir=$1 script=/usr/lib/postfix/configure-instance.sh out
    grep -Eq '^[^#[:space:]]+[[:space:]]+([^[:space:]]+[[:space:]]+){3}y[[:space:]]' "$dir/pf/master.cf" || return 0
    if [[ ! -x $script ]]; then
        inst_say "$dir/pf/master.cf chroots a service, and $script (Debian's postfix package) is missing"
        return 1
    fi
    if ! out=$(MAIL_CONFIG=$dir/pf sh "$script" - 2>&1); then
        inst_say "MAIL_CONFIG=$dir/pf $script failed:"
        printf '%s\n' "$out" | sed 's/^/    | /' >&2
        return 1
    fi
}

# pf_stop DIR: stop the instance. `postfix stop` is SIGTERM to master plus a wait; when it cannot
# run (a broken main.cf) or master outlives 5 s, signal master by its pid file directly.
pf_stop() {
    local dir=$1 pid
    pid=$(tr -dc 0-9 <"$dir/q/pid/master.pid" 2>/dev/null)
    [[ -n $pid ]] && inst_alive "$pid" || return 0
    pf_cli "$dir" stop >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null
    local deadline=$((SECONDS + 5))
    while inst_alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
    if inst_alive "$pid"; then
        inst_say "Postfix master (pid $pid) of $dir still running 5s after stop; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null
    fi
    return 0
}

pf_reload() { pf_cli "$1" reload >/dev/null; }

# pf_queue DIR: the queue listing (postqueue -p).
pf_queue() { postqueue -c "$1/pf" -p 2>&1; }
pf_queue_empty() { [[ $(pf_queue "$1") == *"Mail queue is empty"* ]]; }
pf_wait_queue_empty() {
    inst_wait "${2:-15}" "the queue of $1 to drain" pf_queue_empty "$1" && return 0
    pf_queue "$1" | sed 's/^/    | /' >&2
    return 1
}
pf_flush() { postqueue -c "$1/pf" -f 2>&1; }
# pf_clear_queue DIR: delete every queued message.
pf_clear_queue() { postsuper -c "$1/pf" -d ALL >/dev/null 2>&1; }

# Maillog helpers. A scenario remembers pf_log_mark and looks only at what came after it.
pf_log_mark() { stat -c %s "$1/maillog" 2>/dev/null || echo 0; }
# pf_log_since DIR OFFSET
pf_log_since() { tail -c +"$((${2:-0} + 1))" "$1/maillog" 2>/dev/null; }
# grep reads to the end (no -q): a writer cut off by SIGPIPE would fail the pipeline under pipefail.
pf_log_has() { pf_log_since "$1" "$3" | grep -E -- "$2" >/dev/null; }
# pf_wait_log DIR ERE [TIMEOUT] [OFFSET]: wait for a maillog line matching ERE after OFFSET.
pf_wait_log() {
    inst_wait "${3:-15}" "maillog line /$2/ in $1/maillog" pf_log_has "$1" "$2" "${4:-0}"
}
# pf_deliveries DIR QID [OFFSET]: one line per delivery attempt of QID: "to=<..> [orig_to=<..>]
# relay=.. status=.. (detail)".
pf_deliveries() {
    pf_log_since "$1" "${3:-0}" | grep -F -- " $2: to=<" |
        sed -E 's/^.*: to=</to=</; s/, delay=[^,]*, delays=[^,]*, dsn=[^,]*,/,/; s/, / /g'
}

# ---------------------------------------------------------------------------------------------
# smtp-sink next hops

# sink_start NAME PORT [smtp-sink options...]: an SMTP server on 127.0.0.1:PORT that dumps each
# transaction to ROOT/NAME/<time>.<random> (headers X-Mail-Args, X-Rcpt-Args, ... then the message).
sink_start() {
    local name=$1 port=$2
    shift 2
    local dir=$INST_ROOT/$name
    if inst_port_busy "$port"; then
        inst_say "port $port is already in use (a stale smtp-sink would share it via SO_REUSEPORT):"
        ss -ltnp "sport = :$port" | sed 's/^/    | /' >&2
        return 1
    fi
    mkdir -p "$dir" && chown nobody "$dir"
    inst_spawn "sink-$name" "$INST_ROOT/logs/sink-$name.log" \
        smtp-sink -u nobody "$@" -d "$dir/%Y%m%d%H%M%S." "127.0.0.1:$port" 100
    if ! inst_wait_port "$port" 10 || ! inst_alive "${INST_PIDS[sink-$name]}"; then
        inst_say "smtp-sink $name did not come up on 127.0.0.1:$port"
        inst_tail "$INST_ROOT/logs/sink-$name.log" >&2
        return 1
    fi
}

sink_stop() { inst_kill "sink-$1" 3; }
sink_clear() { find "$INST_ROOT/$1" -mindepth 1 -delete 2>/dev/null; return 0; }
# sink_dumps NAME [MESSAGE-ID]: the dump files (of the message with that Message-ID).
sink_dumps() {
    local dir=$INST_ROOT/$1
    [[ -d $dir ]] || return 0
    if [[ -n ${2:-} ]]; then
        grep -rliF -- "Message-ID: <$2>" "$dir" 2>/dev/null | sort
    else
        find "$dir" -type f | sort
    fi
}
# sink_rcpts NAME MESSAGE-ID: the envelope recipients that reached the sink, one per line, from
# every dump of that message ("<addr> NOTIFY=... ORCPT=...", i.e. the X-Rcpt-Args value).
sink_rcpts() {
    local f
    sink_dumps "$1" "$2" | while IFS= read -r f; do
        sed -n '/^X-Rcpt-Args: /{s/^X-Rcpt-Args: //;p}; /^$/q' "$f"
    done
}

# ---------------------------------------------------------------------------------------------
# The splitmilter daemon

# The user the daemons run as. Started as root (as here), the daemon opens its socket and then
# becomes --user; the packaged unit starts it as that user instead. Either way it must be able to
# read its rule file (SIGUSR1 reloads it unprivileged), create and remove sockets in the socket
# directory and write its spf cache: see milter_socket_dir, milter_state_dir.
MILTER_USER=${MILTER_USER:-nobody}

# milter_socket_dir INSTANCE_DIR: make INSTANCE_DIR/q/splitmilter as the package makes
# /var/spool/postfix/splitmilter: owner MILTER_USER (it creates and removes the sockets), group
# postfix, mode 2750. The setgid bit gives every socket group postfix at birth, so Postfix may
# connect (mode 0660) without any chown by the daemon. Prints the directory.
milter_socket_dir() {
    local d=$1/q/splitmilter
    { mkdir -p "$d" && chown "$MILTER_USER:postfix" "$d" && chmod 2750 "$d"; } || return 1
    printf '%s\n' "$d"
}

# milter_state_dir DIR: a directory MILTER_USER may write (for spf caches), as the package's
# /var/lib/splitmilter. Prints it.
milter_state_dir() {
    { mkdir -p "$1" && chown "$MILTER_USER:" "$1" && chmod 0755 "$1"; } || return 1
    printf '%s\n' "$1"
}

# milter_start NAME RULES SOCKET_PATH: run "$SPLITMILTER" on unix:SOCKET_PATH with the packaged
# defaults (mode 0660, group postfix: Postfix connects as postfix), log to ROOT/logs/NAME.log;
# wait until it listens.
milter_start() {
    milter_spawn "$1" "$2" "unix:$3"
}

# milter_spawn NAME RULES SOCKET_SPEC [DAEMON OPTION...]: run "$SPLITMILTER" --rules RULES
# --socket SOCKET_SPEC (--user MILTER_USER when root) with the given options in the background,
# log appended to
# ROOT/logs/NAME.log; wait until it listens (unix:PATH, local:PATH, inet:PORT@HOST,
# inet6:PORT@HOST or inet:HOST:PORT; for other specs it only waits 0.5 s and checks it runs).
milter_spawn() {
    local name=$1 rules=$2 spec=$3
    shift 3
    local log=$INST_ROOT/logs/$name.log listening port
    if [[ ! -x ${SPLITMILTER:-} ]]; then
        inst_say "SPLITMILTER='${SPLITMILTER:-}' is not an executable"
        return 1
    fi
    case $spec in
    unix:* | local:*) listening=(inst_unix_listening "${spec#*:}") ;;
    inet:*@* | inet6:*@*) port=${spec#*:} && listening=(inst_port_busy "${port%@*}") ;;
    inet:*:*) listening=(inst_port_busy "${spec##*:}") ;;
    *) listening=(sleep 0.5) ;;
    esac
    # Append: a restarted daemon keeps the earlier run's log above its own.
    milter_user_args
    setsid "$SPLITMILTER" --rules "$rules" --socket "$spec" "${MILTER_USER_ARGS[@]}" "$@" </dev/null >>"$log" 2>&1 &
    INST_PIDS[$name]=$!
    local pid=$!
    local deadline=$((SECONDS + 15))
    until "${listening[@]}"; do
        if ! inst_alive "$pid"; then
            wait "$pid" 2>/dev/null
            inst_say "splitmilter $name exited (status $?) before listening on $spec"
            inst_tail "$log" 20 >&2
            unset "INST_PIDS[$name]"
            return 1
        fi
        if ((SECONDS >= deadline)); then
            inst_say "splitmilter $name not listening on $spec after 15s"
            inst_tail "$log" 20 >&2
            return 1
        fi
        sleep 0.05
    done
    if ! inst_alive "$pid"; then
        wait "$pid" 2>/dev/null
        inst_say "splitmilter $name exited (status $?) right after starting on $spec"
        inst_tail "$log" 20 >&2
        unset "INST_PIDS[$name]"
        return 1
    fi
}

# milter_user_args: set MILTER_USER_ARGS to the --user (and --engine) options of a daemon started from here
# (none unless root).
milter_user_args() {
    MILTER_USER_ARGS=()
    ((EUID != 0)) || MILTER_USER_ARGS=(--user "$MILTER_USER")
    # MILTER_ENGINE: run every daemon with that --engine (scripts/test runs the scenarios once more
    # with libmilter, the fallback engine).
    [[ -z ${MILTER_ENGINE:-} ]] || MILTER_USER_ARGS+=(--engine "$MILTER_ENGINE")
}

# milter_stop NAME [GRACE]: SIGTERM, SIGKILL after GRACE (6) s.
milter_stop() { inst_kill "$1" "${2:-6}"; }

# milter_log NAME: path of the daemon's log.
milter_log() { printf '%s\n' "$INST_ROOT/logs/$1.log"; }

# ---------------------------------------------------------------------------------------------
# A local DNS server (dnsmasq) that serves fixed records, for `spf:` sources

# inst_udp_listening ADDRESS PORT: true if a UDP socket is bound to ADDRESS:PORT.
inst_udp_listening() { [[ -n $(ss -Hlun "src $1 and sport = :$2" 2>/dev/null) ]]; }

# dns_start NAME ADDRESS PORT RECORD-OPTION...: dnsmasq on ADDRESS:PORT (UDP and TCP), answering
# only from the records given as dnsmasq options (--txt-record=NAME,TEXT, --host-record=NAME,IPv4,IPv6,
# --mx-host=NAME,HOST,PREF, ...): no upstream, no /etc/hosts, no config file, no pid file. Its
# queries are logged to ROOT/logs/NAME.log (appended: a restarted server keeps the earlier log
# above); waits until it listens. With no upstream, dnsmasq answers REFUSED (a server failure to
# the resolver) for a record type a name does not have, e.g. the AAAA of a host record with only an
# IPv4 address, or the MX of a name that has only TXT: give host records both addresses. A TEXT
# holds no commas (dnsmasq splits it into character-strings there) and no quotes (kept as is).
dns_start() {
    local name=$1 address=$2 port=$3
    shift 3
    local log=$INST_ROOT/logs/$name.log pid
    if ! command -v dnsmasq >/dev/null; then
        inst_say "dnsmasq not found (apt-get install dnsmasq-base)"
        return 1
    fi
    if inst_udp_listening "$address" "$port"; then
        inst_say "$address:$port (UDP) is already in use:"
        ss -Hlunp "src $address and sport = :$port" | sed 's/^/    | /' >&2
        return 1
    fi
    # -k: foreground, so the PID is dnsmasq's own (it still drops root for user nobody).
    setsid dnsmasq --keep-in-foreground --conf-file=/dev/null --pid-file= \
        --listen-address="$address" --port="$port" --bind-interfaces --no-resolv --no-hosts \
        --log-facility=- --log-queries "$@" </dev/null >>"$log" 2>&1 &
    pid=$!
    INST_PIDS[$name]=$pid
    local deadline=$((SECONDS + 10))
    until inst_udp_listening "$address" "$port"; do
        if ! inst_alive "$pid" || ((SECONDS >= deadline)); then
            inst_say "dnsmasq $name did not come up on $address:$port"
            inst_tail "$log" 10 >&2
            inst_kill "$name" 2
            return 1
        fi
        sleep 0.05
    done
}

# dns_stop NAME: stop the DNS server NAME (if it runs); afterwards its address answers nothing
# (ICMP port unreachable: a resolver fails at once instead of timing out).
dns_stop() { inst_kill "$1" 3; }
