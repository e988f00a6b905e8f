# shellcheck shell=bash
# scripts/lib/swift.sh: find the Swift toolchain, and build as the owner of the checkout.
#
# `sudo scripts/test` (or demo, bench-latency, Tests/EndToEnd/run.sh) runs as root with sudo's
# secure_path, which lacks a toolchain unpacked under /opt or installed by swiftly in a home
# directory; and a build as root would leave root-owned .build/ and .swiftpm/ in the user's
# checkout, which the user then cannot remove. Source this file (functions only), then:
#
#   swift_find       set SWIFT to the swift executable, the first of: $SWIFT if set; swift on
#                    PATH; on the login PATH of the build user and of SUDO_USER (their login shell,
#                    run as them); /opt/swift/usr/bin, /usr/share/swift/usr/bin,
#                    ~/.local/share/swiftly/bin of those users. Fails with a message naming the fix.
#   swift_run ARG... run "$SWIFT" ARG... in the repository as SWIFT_USER: when root runs it in a
#                    checkout that a user owns, that user (with their HOME, their groups, the
#                    toolchain's directory first on PATH); else the current user.
#
# The e2e tests themselves stay root (a private Postfix); only the compiler changes user.

SWIFT_REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)

swift_say() { printf '%s: %s\n' "${SWIFT_TAG:-$(basename -- "$0")}" "$*" >&2; }

# swift_build_user: set SWIFT_USER to the user builds run as: the owner of the checkout when
# root runs this in a checkout a user owns, else the current user.
swift_build_user() {
    local owner
    SWIFT_USER=$(id -un)
    ((EUID == 0)) || return 0
    owner=$(stat -c %U -- "$SWIFT_REPO") || return 0
    [[ $owner != root ]] || return 0
    if [[ $owner == UNKNOWN ]] || ! getent passwd "$owner" >/dev/null; then
        swift_say "the checkout's owner (uid $(stat -c %u -- "$SWIFT_REPO")) has no passwd entry; building as root"
        return 0
    fi
    SWIFT_USER=$owner
}

# swift_as_user USER CMD...: run CMD as USER (root: as is) with USER's HOME, USER and LOGNAME,
# its groups, and none of the caller's per-user directories.
swift_as_user() {
    local user=$1 home
    shift
    if [[ $user == "$(id -un)" ]]; then
        "$@"
        return
    fi
    home=$(getent passwd "$user" | cut -d: -f6)
    setpriv --reuid="$user" --regid="$(id -g "$user")" --init-groups \
        env -u XDG_CACHE_HOME -u XDG_CONFIG_HOME -u XDG_DATA_HOME -u XDG_RUNTIME_DIR -u TMPDIR \
        HOME="$home" USER="$user" LOGNAME="$user" "$@"
}

# swift_login_path USER: where USER's login shell (with its profile and rc files) finds swift.
swift_login_path() {
    local user=$1 shell flags out
    shell=$(getent passwd "$user" | cut -d: -f7)
    [[ -x $shell ]] || shell=/bin/sh
    # A login shell first (~/.profile); then an interactive one too (PATH set in ~/.bashrc).
    for flags in -lc -lic; do
        out=$(swift_as_user "$user" timeout 10 env TERM=dumb "$shell" "$flags" 'command -v swift' \
            </dev/null 2>/dev/null | grep '^/' | tail -n 1)
        [[ -n $out && -x $out ]] && { printf '%s\n' "$out"; return 0; }
    done
    return 1
}

swift_find() {
    local users=() u found dir home
    swift_build_user
    if [[ -n ${SWIFT:-} ]]; then
        [[ -x $SWIFT ]] && return 0
        swift_say "SWIFT=$SWIFT is not an executable"
        return 1
    fi
    if found=$(command -v swift); then SWIFT=$found; return 0; fi
    [[ $SWIFT_USER != "$(id -un)" ]] && users+=("$SWIFT_USER")
    [[ -n ${SUDO_USER:-} && $SUDO_USER != root && $SUDO_USER != "$SWIFT_USER" ]] && users+=("$SUDO_USER")
    if ((EUID == 0)); then
        for u in "${users[@]}"; do
            if found=$(swift_login_path "$u"); then SWIFT=$found; return 0; fi
        done
    fi
    local dirs=(/opt/swift/usr/bin /usr/share/swift/usr/bin)
    [[ -n ${HOME:-} ]] && dirs+=("$HOME/.local/share/swiftly/bin")
    for u in "${users[@]}"; do
        home=$(getent passwd "$u" | cut -d: -f6) && dirs+=("$home/.local/share/swiftly/bin")
    done
    for dir in "${dirs[@]}"; do
        if [[ -x $dir/swift ]]; then SWIFT=$dir/swift; return 0; fi
    done
    swift_say "swift not found: not on PATH (${PATH:-}), ${users[*]:+nor on the login PATH of ${users[*]}, }nor in ${dirs[*]}."
    swift_say "If Swift is installed for your user, sudo hid it (sudo resets PATH to its secure_path): run"
    # shellcheck disable=SC2016 # the user's shell expands $PATH
    swift_say '    sudo env PATH="$PATH" '"$0"
    swift_say "or name it: sudo env SWIFT=/path/to/usr/bin/swift $0"
    swift_say "Otherwise install a Swift 6 toolchain first: https://www.swift.org/install/linux/"
    return 1
}

# swift_give_back: an earlier build as root left .build/, .swiftpm/ or Package.resolved root-owned
# in a checkout that SWIFT_USER owns: hand them back, or the build as that user cannot write them.
swift_give_back() {
    local d
    [[ $SWIFT_USER != "$(id -un)" ]] || return 0
    for d in "$SWIFT_REPO/.build" "$SWIFT_REPO/.swiftpm" "$SWIFT_REPO/Package.resolved"; do
        [[ -e $d ]] || continue
        if [[ -n $(find "$d" ! -user "$SWIFT_USER" -print -quit 2>/dev/null) ]]; then
            swift_say "giving $d back to $SWIFT_USER (an earlier build ran as root)"
            chown -R "$SWIFT_USER:$(id -g "$SWIFT_USER")" -- "$d" || return 1
        fi
    done
}

swift_run() {
    [[ -n ${SWIFT_USER:-} && -n ${SWIFT:-} ]] || swift_find || return 1
    swift_give_back || return 1
    (cd -- "$SWIFT_REPO" &&
        swift_as_user "$SWIFT_USER" env PATH="$(dirname -- "$SWIFT"):${PATH:-/usr/bin:/bin}" "$SWIFT" "$@")
}
