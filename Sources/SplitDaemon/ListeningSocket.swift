/// The socket Postfix connects to, created here rather than by libmilter.
///
/// libmilter reports socket errors only to syslog and hides the listening fd, so the daemon opens
/// it itself and hands libmilter the ready descriptor (`fd:N`, Debian's socket-activation patch).
/// That lets it (a) print bind errors on stderr, (b) set the unix socket's mode and group before
/// Postfix can connect, (c) replace a stale socket but never steal a live one, and (d) set
/// TCP_NODELAY, which accepted connections inherit: without it each message over TCP waits on
/// Nagle + delayed ACK for ~40–90 ms (docs/postfix-milter.md, "Delayed ACK").

import Glibc
import MilterProtocol

struct SocketError: Error, CustomStringConvertible {
    let description: String
}

struct ListeningSocket {
    let fd: Int32
    let spec: MilterEndpoint
    /// The unix socket's inode, so shutdown removes only the file this process created.
    let unixInode: ino_t?

    static let backlog: Int32 = 128

    static func errnoText() -> String { String(cString: strerror(errno)) }

    static func open(_ spec: MilterEndpoint, mode: mode_t, group: gid_t?) throws -> ListeningSocket {
        switch spec {
        case .unix(let path): return try openUnix(path, spec: spec, mode: mode, group: group)
        case .inet(let host, let port): return try openInet(host, port, spec: spec)
        }
    }

    /// Removes the unix socket file if it is still the one this process created.
    func removeFile() {
        guard case .unix(let path) = spec, let unixInode else { return }
        var info = stat()
        if lstat(path, &info) == 0, info.st_ino == unixInode { unlink(path) }
    }

    static func openUnix(_ path: String, spec: MilterEndpoint, mode: mode_t, group: gid_t?) throws -> ListeningSocket {
        var info = stat()
        if lstat(path, &info) == 0 {
            guard (info.st_mode & S_IFMT) == S_IFSOCK else {
                throw SocketError(description: "'\(path)' exists and is not a socket; not touching it")
            }
            // A socket someone still accepts on belongs to a live daemon: never steal it.
            let probe = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard probe >= 0 else { throw SocketError(description: "socket(): \(errnoText())") }
            let connected = try UnixSocketAddress.with(path) { connect(probe, $0, $1) }
            let reason = errno
            close(probe)
            if connected == 0 {
                throw SocketError(description: "another process is listening on '\(path)'; refusing to replace it")
            }
            guard reason == ECONNREFUSED else {
                throw SocketError(description: "cannot probe '\(path)': \(String(cString: strerror(reason)))")
            }
            guard unlink(path) == 0 else {
                throw SocketError(description: "cannot remove stale socket '\(path)': \(errnoText())")
            }
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError(description: "socket(): \(errnoText())") }
        // Created owner-only, then opened up to `mode`: no moment where the wrong user can connect.
        let oldMask = umask(0o177)
        let bound = try UnixSocketAddress.with(path) { bind(fd, $0, $1) }
        let bindError = errno
        umask(oldMask)
        guard bound == 0 else {
            close(fd)
            throw SocketError(description: "cannot bind '\(path)': \(String(cString: strerror(bindError)))")
        }
        var made = stat()
        let found = lstat(path, &made) == 0
        // In a setgid directory of group postfix (the packaged layout) the socket has its group
        // already, and an unprivileged daemon needs no chown.
        if let group, !(found && made.st_gid == group), chown(path, uid_t.max, group) != 0 {
            let text = errnoText()
            close(fd)
            unlink(path)
            throw SocketError(
                description:
                    "cannot set group of '\(path)': \(text) (make its directory setgid with that group, or run as a member)"
            )
        }
        guard chmod(path, mode) == 0, listen(fd, backlog) == 0 else {
            let text = errnoText()
            close(fd)
            unlink(path)
            throw SocketError(description: "cannot prepare '\(path)': \(text)")
        }
        return ListeningSocket(fd: fd, spec: spec, unixInode: found ? made.st_ino : nil)
    }

    /// The address family follows from `host` (an IPv4 or IPv6 literal, or a name).
    static func openInet(_ host: String, _ port: UInt16, spec: MilterEndpoint) throws -> ListeningSocket {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>? = nil
        let rc = getaddrinfo(host, String(port), &hints, &list)
        guard rc == 0, let first = list else {
            throw SocketError(description: "cannot resolve '\(host)': \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(list) }
        let fd = socket(first.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError(description: "socket(): \(errnoText())") }
        var one: Int32 = 1
        let size = socklen_t(MemoryLayout<Int32>.size)
        guard setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, size) == 0,
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, size) == 0
        else {
            let text = errnoText()
            close(fd)
            throw SocketError(description: "setsockopt(): \(text)")
        }
        guard bind(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0 else {
            let text = errnoText()
            close(fd)
            throw SocketError(description: "cannot bind \(spec): \(text)")
        }
        guard listen(fd, backlog) == 0 else {
            let text = errnoText()
            close(fd)
            throw SocketError(description: "cannot listen on \(spec): \(text)")
        }
        return ListeningSocket(fd: fd, spec: spec, unixInode: nil)
    }
}
