/// Giving up root before the first message.
///
/// Started as root (by hand, or by an init script), the daemon does what may need root first —
/// load the rules, read the spf cache, bind the socket in a directory only root may write — and
/// then becomes `--user` (default `splitmilter`) for good, before libmilter starts a thread or
/// reads a byte from Postfix. Mail is never handled as root: a missing user, or one whose uid is
/// 0, stops the daemon instead. Started as any other user, it stays that user.
///
/// The environment follows the user: `HOME`, `USER` and `LOGNAME` become the target's, set before any
/// thread starts. libpq looks for `$HOME/.postgresql/` on every connection; with root's `HOME` it
/// could not enter `/root` once the daemon was `splitmilter`, and its follower then never connected
/// under `sslmode=verify-full`, and under `prefer` fell back to plain text (Tests/Database/tls.sh).

import Glibc

struct PrivilegeError: Error, CustomStringConvertible {
    let description: String
}

enum Privileges {
    static let defaultUser = "splitmilter"

    /// The account to switch to, looked up before anything is opened so that a wrong `--user`
    /// fails at once. nil: stay as we are (not root, and `--user` absent or naming ourselves).
    struct Target {
        let name: String
        let uid: uid_t
        let gid: gid_t
        /// The account's home directory (`pw_dir`), for `HOME`.
        let home: String
    }

    static func target(_ requested: String?) throws -> Target? {
        let name = requested ?? defaultUser
        guard geteuid() == 0 else {
            guard let requested else { return nil }
            guard let entry = getpwnam(requested), entry.pointee.pw_uid == geteuid() else {
                throw PrivilegeError(description: "cannot become user '\(requested)': not running as root")
            }
            return nil
        }
        guard let entry = getpwnam(name) else {
            throw PrivilegeError(
                description: requested == nil
                    ? "started as root, and user '\(name)' does not exist: create it (the package does) or name an unprivileged user with --user"
                    : "unknown user '\(name)'")
        }
        guard entry.pointee.pw_uid != 0 else {
            throw PrivilegeError(description: "--user \(name) is uid 0: splitmilter does not handle mail as root")
        }
        return Target(
            name: name, uid: entry.pointee.pw_uid, gid: entry.pointee.pw_gid,
            home: String(cString: entry.pointee.pw_dir))
    }

    /// Becomes `target` for the rest of the process: supplementary groups, group, then user (the
    /// order matters: after setuid nothing else may change), and checks that root cannot come back.
    static func become(_ target: Target) throws {
        func fail(_ call: String) -> PrivilegeError {
            PrivilegeError(description: "\(call) for user '\(target.name)': \(String(cString: strerror(errno)))")
        }
        guard initgroups(target.name, target.gid) == 0 else { throw fail("initgroups") }
        guard setgid(target.gid) == 0 else { throw fail("setgid") }
        guard setuid(target.uid) == 0 else { throw fail("setuid") }
        guard setuid(0) != 0, geteuid() == target.uid, getegid() == target.gid else {
            throw PrivilegeError(description: "still able to regain root after switching to '\(target.name)'")
        }
        guard setenv("HOME", target.home, 1) == 0, setenv("USER", target.name, 1) == 0,
            setenv("LOGNAME", target.name, 1) == 0
        else { throw fail("setenv") }
    }
}
