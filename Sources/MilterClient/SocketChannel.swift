/// The socket under a milter session: connects to a `MilterEndpoint` and carries whole
/// frames both ways, with a timeout on every wait. Blocking sockets; no event loop.
///
/// Each wait is bounded by the kernel (SO_SNDTIMEO, SO_RCVTIMEO), so a read or a write is one
/// system call, not a poll(2) and then the call: under `milter-test bench` the driver's own
/// system calls are most of its cost. Frames are encoded into one reusable buffer. With
/// `coalescing`, frames that get no answer (SMFIP_NR_* steps, macros, abort) stay in that
/// buffer until the next frame that is answered, and go out in one write: the milter reads the
/// same bytes in the same order, the driver makes one write per answer instead of one per frame.
/// Without it (`send`), every `send` is written at once, as Postfix flushes every command.
///
/// Every system call goes through `system(_:timedOut:_:)`, the shared edge (`SystemCallError`,
/// also the daemon's), which retries EINTR and turns -1 into a `ClientError` naming the C
/// function. inet sockets get TCP_NODELAY: the protocol is
/// strict request/answer with small frames, so Nagle plus delayed ACK would stall each
/// exchange by ~40 ms (docs/postfix-milter.md, "Delayed ACK").

import MilterProtocol
import SystemCall

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Why talking to the milter failed.
public enum ClientError: Error, CustomStringConvertible, Sendable {
    /// A system call failed.
    case system(function: String, errno: Int32)
    /// Nothing happened within the timeout.
    case timedOut(waitingTo: String, seconds: Double)
    /// The milter closed the connection.
    case closed(bufferedBytes: Int)
    /// The host name did not resolve.
    case resolve(reason: String)
    /// A socket path longer than `sockaddr_un` holds.
    case pathTooLong(limit: Int)

    /// Says what failed; the caller puts the endpoint in front.
    public var description: String {
        switch self {
        case .system(let function, let code):
            "\(function): \(String(cString: strerror(code)))"
        case .timedOut(let waitingTo, let seconds):
            "timed out after \(seconds) s waiting to \(waitingTo)"
        case .closed(let buffered):
            buffered == 0
                ? "connection closed by the milter"
                : "connection closed by the milter inside a frame (\(buffered) bytes pending)"
        case .resolve(let reason):
            "cannot resolve host: \(reason)"
        case .pathTooLong(let limit):
            "socket path longer than \(limit) bytes"
        }
    }
}

/// One connected milter socket.
public final class SocketChannel: FrameChannel {
    private let descriptor: Int32
    private let timeout: Double
    /// Whether frames wait in `pending` until an answer is awaited (see the file comment).
    public let coalescing: Bool
    private var decoder: FrameDecoder
    private var readBuffer = [UInt8](repeating: 0, count: 65_536)
    /// Encoded frames not yet written.
    private var pending: [UInt8] = []

    /// Connects, waiting at most `timeout` seconds; the same timeout then bounds every
    /// later wait to read or write.
    public init(
        connectingTo endpoint: MilterEndpoint,
        timeout: Double,
        coalescing: Bool = false,
        maximumFrameLength: Int = FrameDecoder.defaultMaximumLength
    ) throws {
        self.timeout = timeout
        self.coalescing = coalescing
        self.decoder = FrameDecoder(maximumLength: maximumFrameLength)
        switch endpoint {
        case .unix(let path):
            descriptor = try SocketChannel.connectUnix(path: path, timeout: timeout)
        case .inet(let host, let port):
            descriptor = try SocketChannel.connectInet(
                host: host,
                port: port,
                timeout: timeout
            )
        }
        do {
            try SocketChannel.setTimeouts(descriptor, seconds: timeout)
        } catch {
            close(descriptor)
            throw error
        }
        pending.reserveCapacity(4096)
    }

    deinit { close(descriptor) }

    public func send(_ frames: [Frame]) throws {
        for frame in frames { try frame.encode(into: &pending) }
        if !coalescing { try flush() }
    }

    /// Writes every pending frame.
    public func flush() throws {
        var sent = 0
        defer { pending.removeAll(keepingCapacity: true) }
        while sent < pending.count {
            let count = try pending.withUnsafeBytes { buffer in
                try system("send", timedOut: ("write", timeout)) {
                    Glibc.send(descriptor, buffer.baseAddress! + sent, buffer.count - sent, Int32(MSG_NOSIGNAL))
                }
            }
            sent += count
        }
    }

    /// Writes what is pending, then waits for one whole frame.
    public func receive() throws -> Frame {
        if !pending.isEmpty { try flush() }
        while true {
            if let frame = try decoder.nextFrame() { return frame }
            let count = try readBuffer.withUnsafeMutableBytes { raw in
                try system("read", timedOut: ("read", timeout)) { read(descriptor, raw.baseAddress, raw.count) }
            }
            guard count > 0 else { throw ClientError.closed(bufferedBytes: decoder.bufferedCount) }
            decoder.append(readBuffer[0..<count])
        }
    }

    /// Bounds every later blocking read and write by `seconds` (0 would mean forever).
    private static func setTimeouts(_ descriptor: Int32, seconds: Double) throws {
        let milliseconds = max(1, Int(SocketChannel.milliseconds(seconds)))
        var value = timeval(tv_sec: milliseconds / 1000, tv_usec: (milliseconds % 1000) * 1000)
        for (option, name) in [(SO_RCVTIMEO, "SO_RCVTIMEO"), (SO_SNDTIMEO, "SO_SNDTIMEO")] {
            _ = try system("setsockopt(\(name))") {
                setsockopt(descriptor, SOL_SOCKET, option, &value, socklen_t(MemoryLayout<timeval>.size))
            }
        }
    }

    // MARK: Connecting

    private static func connectUnix(path: String, timeout: Double) throws -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < capacity else { throw ClientError.pathTooLong(limit: capacity - 1) }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
        }
        let descriptor = try system("socket") { socket(AF_UNIX, socketType, 0) }
        do {
            try withUnsafePointer(to: &address) { pointer in
                try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { generic in
                    try connect(
                        descriptor,
                        generic,
                        socklen_t(MemoryLayout<sockaddr_un>.size),
                        timeout: timeout
                    )
                }
            }
            return descriptor
        } catch {
            close(descriptor)
            throw error
        }
    }

    private static func connectInet(host: String, port: UInt16, timeout: Double) throws -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &list)
        guard status == 0, let first = list else {
            throw ClientError.resolve(reason: String(cString: gai_strerror(status)))
        }
        defer { freeaddrinfo(first) }

        // Try each address in the order the resolver gives, as Postfix's inet_connect does.
        var lastError: any Error = ClientError.resolve(reason: "no addresses")
        var candidate: UnsafeMutablePointer<addrinfo>? = first
        while let entry = candidate {
            candidate = entry.pointee.ai_next
            guard let address = entry.pointee.ai_addr else { continue }
            do {
                let descriptor = try system("socket") {
                    socket(entry.pointee.ai_family, socketType, entry.pointee.ai_protocol)
                }
                do {
                    try connect(descriptor, address, entry.pointee.ai_addrlen, timeout: timeout)
                    var on: Int32 = 1
                    _ = try system("setsockopt(TCP_NODELAY)") {
                        setsockopt(
                            descriptor,
                            Int32(IPPROTO_TCP),
                            TCP_NODELAY,
                            &on,
                            socklen_t(MemoryLayout<Int32>.size)
                        )
                    }
                    return descriptor
                } catch {
                    close(descriptor)
                    throw error
                }
            } catch {
                lastError = error
            }
        }
        throw lastError
    }

    /// connect(2) with a deadline: non-blocking connect, poll for writability, read the
    /// outcome from SO_ERROR, then back to blocking.
    private static func connect(
        _ descriptor: Int32,
        _ address: UnsafePointer<sockaddr>,
        _ length: socklen_t,
        timeout: Double
    ) throws {
        let flags = try system("fcntl(F_GETFL)") { fcntl(descriptor, F_GETFL) }
        _ = try system("fcntl(F_SETFL)") { fcntl(descriptor, F_SETFL, flags | O_NONBLOCK) }
        if Glibc.connect(descriptor, address, length) != 0 {
            guard errno == EINPROGRESS || errno == EINTR else {
                throw ClientError.system(function: "connect", errno: errno)
            }
            var entry = pollfd(fd: descriptor, events: Int16(POLLOUT), revents: 0)
            let ready = try system("poll") { poll(&entry, 1, milliseconds(timeout)) }
            guard ready > 0 else {
                throw ClientError.timedOut(waitingTo: "connect", seconds: timeout)
            }
            var failure: Int32 = 0
            var size = socklen_t(MemoryLayout<Int32>.size)
            _ = try system("getsockopt(SO_ERROR)") {
                getsockopt(descriptor, SOL_SOCKET, SO_ERROR, &failure, &size)
            }
            guard failure == 0 else {
                throw ClientError.system(function: "connect", errno: failure)
            }
        }
        _ = try system("fcntl(F_SETFL)") { fcntl(descriptor, F_SETFL, flags) }
    }

    private static let socketType = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)

    /// Seconds to poll(2)'s milliseconds, clamped to what an Int32 holds.
    private static func milliseconds(_ seconds: Double) -> Int32 {
        let value = (seconds * 1000).rounded(.up)
        guard value.isFinite, value > 0 else { return 0 }
        return value >= Double(Int32.max) ? Int32.max : Int32(value)
    }
}

/// The client's side of the shared system-call edge (`SystemCallError.check`: EINTR retried, errno
/// kept): for a blocking read or write bounded by SO_RCVTIMEO or SO_SNDTIMEO (`timedOut`), EAGAIN
/// is reported as the timeout it is; any other -1 as a `ClientError` that names the C function.
private func system<Result: BinaryInteger>(
    _ function: String,
    timedOut: (purpose: String, seconds: Double)? = nil,
    _ call: () -> Result
) throws -> Result {
    do {
        return try SystemCallError.check(function, call)
    } catch {
        if let timedOut, error.isTimeout {
            throw ClientError.timedOut(waitingTo: timedOut.purpose, seconds: timedOut.seconds)
        }
        throw ClientError.system(function: function, errno: error.code ?? 0)
    }
}
