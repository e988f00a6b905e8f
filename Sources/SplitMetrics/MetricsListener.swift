/// The metrics' HTTP listener: `GET /metrics` (Prometheus text format 0.0.4), `GET /ready` (200
/// `ready`, or 503 and what is missing), `GET /health` (200 while the process serves), 404 for any
/// other path, 405 for another method, 400 for a request line that is not HTTP/1; `HEAD` of a path
/// answers as `GET` without the body. Every answer closes the connection. Our own, on poll(2), no
/// Foundation: three fixed paths for a scraper need no HTTP library.
///
/// Invariants:
/// - One thread of its own (a pthread, like the reload and refresh threads; no Swift concurrency,
///   no Dispatch), never one of libmilter's. The page is rendered on it: the registry, whose lock
///   only the loading threads share (to add or replace a series), and the lock-free histogram;
///   `/ready` reads `DaemonMetrics.unready`, under `state`'s lock, which the message path never
///   takes. It takes no lock a message takes, touches no file, and logs only at debug level.
/// - `start` returns once the socket listens, or throws (the port in use, an address not on this
///   host, a port below 1024 without root): the daemon binds it before giving up root, like the
///   milter socket, and reports a failure before libmilter starts.
/// - Bounded: at most `maximumConnections` (16) connections are open. While 16 are, the listening
///   socket is not polled: later clients wait in the kernel's backlog (`backlog`, 16; beyond it the
///   kernel drops their SYNs and they retry) and are accepted as slots free, which takes at most
///   `deadline`. Each connection has `deadline` (5 s) from its accept for everything: reading its
///   head (at most `maximumHead`, 8 KiB, up to the blank line; headers and any body are never
///   parsed) and writing the answer. Past the deadline, past 8 KiB without a blank line, when the
///   peer closes first, or on any error, it is closed without (the rest of) an answer. Memory: 16
///   heads and 16 answers at most.
/// - Every socket is non-blocking: the thread waits only in poll(2), and never past the nearest
///   deadline.

import Glibc
import Logging
import SplitSystem
import SystemCall

public enum MetricsListener {
    public static let maximumConnections = 16
    public static let maximumHead = 8_192
    public static let deadlineSeconds = 5
    static let deadline = UInt64(deadlineSeconds) * 1_000_000_000
    static let backlog: Int32 = 16
    /// How long accepting rests after accept(2) ran out of descriptors or memory, rather than spin.
    static let acceptPause: UInt64 = 1_000_000_000

    public struct StartError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Binds `address` and serves `metrics` there, on a thread of its own, for the life of the process.
    public static func start(_ address: MetricsAddress, metrics: DaemonMetrics, logger: Logger) throws {
        let fd: Int32
        do {
            fd = try listeningSocket(address)
        } catch {
            throw StartError(description: "cannot serve metrics on \(address): \(error)")
        }
        let server = MetricsServer(listening: fd, metrics: metrics, logger: logger)
        let rc = DetachedThread.start { server.run() }
        guard rc == 0 else {
            close(fd)
            throw StartError(
                description: "cannot serve metrics on \(address): pthread_create: \(SystemCallError.text(rc))")
        }
    }

    /// A non-blocking socket listening on `address` (a numeric address: no lookup).
    static func listeningSocket(_ address: MetricsAddress) throws(SystemCallError) -> Int32 {
        var hints = addrinfo()
        hints.ai_family = address.family == .ipv6 ? AF_INET6 : AF_INET
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>? = nil
        let rc = getaddrinfo(address.host, String(address.port), &hints, &list)
        guard rc == 0, let first = list else {
            throw SystemCallError(call: "getaddrinfo", text: String(cString: gai_strerror(rc)))
        }
        defer { freeaddrinfo(list) }
        let fd = try SystemCallError.check("socket") {
            socket(
                first.pointee.ai_family,
                Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        do {
            var one: Int32 = 1
            try SystemCallError.check("setsockopt(SO_REUSEADDR)") {
                setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            }
            try SystemCallError.check("bind") { bind(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) }
            try SystemCallError.check("listen") { listen(fd, backlog) }
        } catch {
            close(fd)
            throw error
        }
        return fd
    }

    // MARK: Answers

    static let exposition = "text/plain; version=0.0.4; charset=utf-8"
    static let plain = "text/plain; charset=utf-8"

    /// The whole answer to `request`, head and body, rendered now.
    static func answer(to request: HTTPRequestHead, metrics: DaemonMetrics) -> [UInt8] {
        switch request {
        case .malformed:
            return text("400 Bad Request", "bad request", headOnly: false)
        case .badMethod:
            return text("405 Method Not Allowed", "method not allowed", headOnly: false, extra: "Allow: GET, HEAD\r\n")
        case .path(let path, let method):
            let headOnly = method == .head
            switch path {
            case "/metrics":
                return answer("200 OK", type: exposition, body: metrics.page(), headOnly: headOnly)
            case "/ready":
                guard let missing = metrics.unready else { return text("200 OK", "ready", headOnly: headOnly) }
                return text("503 Service Unavailable", missing, headOnly: headOnly)
            case "/health":
                return text("200 OK", "ok", headOnly: headOnly)
            default:
                return text("404 Not Found", "not found", headOnly: headOnly)
            }
        }
    }

    static func text(_ status: String, _ line: String, headOnly: Bool, extra: String = "") -> [UInt8] {
        answer(status, type: plain, body: Array((line + "\n").utf8), headOnly: headOnly, extra: extra)
    }

    /// `HEAD` gets the same head, Content-Length included, and no body.
    static func answer(_ status: String, type: String, body: [UInt8], headOnly: Bool, extra: String = "") -> [UInt8] {
        var bytes = Array(
            "HTTP/1.1 \(status)\r\nContent-Type: \(type)\r\nContent-Length: \(body.count)\r\n\(extra)Connection: close\r\n\r\n"
                .utf8)
        if !headOnly { bytes += body }
        return bytes
    }
}

/// The listener's thread: its socket, its connections and its one read buffer, touched by no other.
final class MetricsServer {
    struct Connection {
        let fd: Int32
        /// Monotonic nanoseconds (`LatencyHistogram.now()`): closed when reached.
        let deadline: UInt64
        var head: [UInt8] = []
        /// Where the search for the head's blank line resumes.
        var searched = 0
        /// Once the head is read: the whole answer, and how much of it is sent.
        var answer: [UInt8]? = nil
        var sent = 0
    }

    enum Progress {
        case waiting, finished
    }

    let listening: Int32
    let metrics: DaemonMetrics
    let logger: Logger
    private var connections: [Connection] = []
    private var polled: [pollfd] = []
    private var buffer = [UInt8](repeating: 0, count: MetricsListener.maximumHead)
    /// Monotonic nanoseconds before which nothing is accepted (after EMFILE and the like).
    private var restingUntil: UInt64 = 0

    init(listening: Int32, metrics: DaemonMetrics, logger: Logger) {
        self.listening = listening
        self.metrics = metrics
        self.logger = logger
        connections.reserveCapacity(MetricsListener.maximumConnections)
        polled.reserveCapacity(MetricsListener.maximumConnections + 1)
    }

    func run() -> Never {
        while true {
            let now = LatencyHistogram.now()
            closeExpired(now)
            let accepting = connections.count < MetricsListener.maximumConnections && now >= restingUntil
            polled.removeAll(keepingCapacity: true)
            var wake: UInt64? = nil
            for connection in connections {
                let events = connection.answer == nil ? POLLIN : POLLOUT
                polled.append(pollfd(fd: connection.fd, events: Int16(events), revents: 0))
                wake = min(wake ?? connection.deadline, connection.deadline)
            }
            if accepting {
                polled.append(pollfd(fd: listening, events: Int16(POLLIN), revents: 0))
            } else if connections.count < MetricsListener.maximumConnections {
                wake = min(wake ?? restingUntil, restingUntil)
            }
            let ready = poll(&polled, nfds_t(polled.count), Self.milliseconds(from: now, to: wake))
            guard ready > 0 else {
                // 0: a deadline. EINTR: glibc's signal to every thread when the process gives up root.
                if ready < 0, errno != EINTR {
                    logger.debug("metrics listener: poll: \(SystemCallError.text(errno))")
                    usleep(100_000)
                }
                continue
            }
            for index in connections.indices.reversed() where polled[index].revents != 0 {
                if serve(&connections[index]) == .finished { close(connections.remove(at: index).fd) }
            }
            if accepting, polled[polled.count - 1].revents != 0 { acceptWaiting() }
        }
    }

    /// poll(2)'s timeout: milliseconds to `wake`, rounded up; -1 (forever) without one.
    static func milliseconds(from now: UInt64, to wake: UInt64?) -> Int32 {
        guard let wake else { return -1 }
        guard wake > now else { return 0 }
        return Int32(clamping: (wake - now + 999_999) / 1_000_000)
    }

    func closeExpired(_ now: UInt64) {
        for index in connections.indices.reversed() where connections[index].deadline <= now {
            let connection = connections.remove(at: index)
            logger.debug(
                "metrics listener: closed a connection after \(MetricsListener.deadlineSeconds) s (\(connection.answer == nil ? "no whole request" : "answer not taken"))"
            )
            close(connection.fd)
        }
    }

    /// Accepts what the backlog holds, up to the connection limit.
    func acceptWaiting() {
        while connections.count < MetricsListener.maximumConnections {
            let fd = SystemCallError.retrying { accept(listening, nil, nil) }
            guard fd < 0 else {
                // Glibc's module has no accept4: the flags after (the daemon never runs a program).
                guard fcntl(fd, F_SETFL, O_NONBLOCK) == 0, fcntl(fd, F_SETFD, FD_CLOEXEC) == 0 else {
                    close(fd)
                    continue
                }
                connections.append(Connection(fd: fd, deadline: LatencyHistogram.now() + MetricsListener.deadline))
                continue
            }
            switch errno {
            case EAGAIN, EWOULDBLOCK:
                return
            case ECONNABORTED, EPROTO:
                continue
            default:
                // Out of descriptors or memory, or refused by a firewall rule: the client stays in
                // the backlog, tried again after a rest.
                logger.debug("metrics listener: accept: \(SystemCallError.text(errno))")
                restingUntil = LatencyHistogram.now() + MetricsListener.acceptPause
                return
            }
        }
    }

    /// Reads what the peer sent, answers once the head is whole, writes what the socket takes.
    func serve(_ connection: inout Connection) -> Progress {
        if connection.answer == nil {
            guard readHead(&connection) else { return .finished }
            guard connection.answer != nil else { return .waiting }
        }
        return write(&connection)
    }

    /// false: close (the peer closed, an error, a head over the limit).
    func readHead(_ connection: inout Connection) -> Bool {
        while connection.answer == nil {
            let room = MetricsListener.maximumHead - connection.head.count
            guard room > 0 else {
                logger.debug(
                    "metrics listener: closed a connection: request head over \(MetricsListener.maximumHead) bytes")
                return false
            }
            let fd = connection.fd
            let count = buffer.withUnsafeMutableBytes { bytes in
                SystemCallError.retrying { recv(fd, bytes.baseAddress, room, 0) }
            }
            guard count > 0 else { return count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) }
            connection.head += buffer[0..<count]
            if let end = HTTPRequestHead.end(of: connection.head, from: connection.searched) {
                connection.answer = MetricsListener.answer(
                    to: HTTPRequestHead.parse(connection.head[..<end]), metrics: metrics)
            } else {
                connection.searched = max(0, connection.head.count - 2)
            }
        }
        return true
    }

    func write(_ connection: inout Connection) -> Progress {
        guard let answer = connection.answer else { return .waiting }
        let fd = connection.fd
        while connection.sent < answer.count {
            let sent = connection.sent
            let count = answer.withUnsafeBytes { bytes in
                SystemCallError.retrying {
                    send(fd, bytes.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL))
                }
            }
            guard count > 0 else {
                return count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? .waiting : .finished
            }
            connection.sent += count
        }
        discardInput(fd)
        return .finished
    }

    /// Reads and drops what the peer sent after its head (a body, a second request), at most one
    /// buffer's worth: closing a socket with unread input resets the connection, and a reset can
    /// discard the end of an answer still in flight.
    func discardInput(_ fd: Int32) {
        _ = buffer.withUnsafeMutableBytes { bytes in
            SystemCallError.retrying { recv(fd, bytes.baseAddress, bytes.count, 0) }
        }
    }
}
