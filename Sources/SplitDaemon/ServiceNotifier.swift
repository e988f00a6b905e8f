/// systemd's readiness protocol (sd_notify(3)), without libsystemd: one datagram per state change
/// to the socket named by `NOTIFY_SOCKET`, when the service manager set it.
///
/// The daemon says READY=1 only once its socket listens (a connection from Postfix is then queued
/// and served), RELOADING=1 … READY=1 around a reload, and STOPPING=1 when it stops. Without
/// `NOTIFY_SOCKET` every call does nothing.

import Glibc

struct ServiceNotifier: Sendable {
    /// The socket path (`@` for the abstract namespace), or nil when not run by systemd.
    let path: String?

    static let fromEnvironment = ServiceNotifier(path: getenv("NOTIFY_SOCKET").map { String(cString: $0) })

    func ready(status: String) { send("READY=1\nSTATUS=\(status)") }

    /// MONOTONIC_USEC lets systemd ≥ 253 match the reload with this notification.
    func reloading() {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        send("RELOADING=1\nMONOTONIC_USEC=\(Int(now.tv_sec) * 1_000_000 + now.tv_nsec / 1000)")
    }

    func stopping() { send("STOPPING=1") }

    /// Best effort, like sd_notify: a failure here must never stop the daemon.
    func send(_ message: String) {
        guard let path, !path.isEmpty else { return }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return }
        defer { close(fd) }
        _ = try? UnixSocketAddress.with(path) { address, length in
            message.withCString { text in
                sendto(fd, text, strlen(text), Int32(MSG_NOSIGNAL), address, length)
            }
        }
    }
}
