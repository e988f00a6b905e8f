/// The metrics' HTTP listener: FlyingFox serving `GET /metrics` (Prometheus text format 0.0.4),
/// `GET /ready` (200 `ready`, or 503 and what is missing), `GET /health` (200 while the process
/// serves) and 404 for anything else.
///
/// Invariants:
/// - It runs on Swift's concurrency threads and FlyingFox's event thread, never on libmilter's; a
///   request reads the metrics (atomics, the registry) and `DaemonMetrics.unready`, whose lock only
///   the loading threads share. No request touches a file.
/// - `start` returns once the socket listens, or throws (the port in use, an address not on this
///   host, a port below 1024 without root): the daemon binds it before giving up root, like the
///   milter socket, and reports a failure before libmilter starts.
/// - Bounded where FlyingFox 0.27.1 lets it be: a handler may take `handlerTimeout`; a connection
///   whose peer sends or reads nothing for `idleTimeout` is closed (FlyingFox itself never times a
///   read out: a dead scraper's connection would stay open for good); request bodies are never kept
///   (at most 4 KiB is buffered, the rest read and dropped). FlyingFox sets no limit on the number
///   of connections nor on the size of the request line and headers: the listener is meant for a
///   scraper on a trusted network (a bare port binds 127.0.0.1 only; man splitmilter).

import Dispatch
import FlyingFox
import FlyingSocks
import Foundation
import Glibc
import Logging
import Synchronization

public enum MetricsListener {
    static let handlerTimeout: TimeInterval = 5
    static let idleTimeout: Duration = .seconds(10)
    static let startTimeout: Double = 10

    public struct StartError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Binds `address` and serves `metrics` there for the life of the process.
    public static func start(_ address: MetricsAddress, metrics: DaemonMetrics, logger: Logger) throws {
        let socketAddress: any SocketAddress =
            switch address.family {
            case .ipv4: try sockaddr_in.inet(ip4: address.host, port: address.port)
            case .ipv6: try sockaddr_in6.inet6(ip6: address.host, port: address.port)
            }
        let server = HTTPServer(
            config: HTTPServer.Configuration(
                address: socketAddress, timeout: handlerTimeout, sharedRequestBufferSize: 4_096,
                sharedRequestReplaySize: 0, pool: IdleTimeoutPool(base: HTTPServer.defaultPool(), idle: idleTimeout),
                logger: DebugLogging(logger: logger)),
            handler: MetricsHandler(metrics: metrics))
        let outcome = StartOutcome()
        Task.detached {
            do {
                try await server.run()
            } catch {
                outcome.settle(.failure(error))
            }
        }
        Task.detached {
            do {
                try await server.waitUntilListening(timeout: startTimeout)
                outcome.settle(.success(()))
            } catch {
                outcome.settle(.failure(error))
            }
        }
        guard let result = outcome.wait(seconds: startTimeout + 1) else {
            throw StartError(description: "metrics on \(address): not listening after \(Int(startTimeout)) s")
        }
        if case .failure(let error) = result {
            throw StartError(description: "cannot serve metrics on \(address): \(Self.describe(error))")
        }
    }

    static func describe(_ error: any Error) -> String {
        if case .failed(let call, _, let message) = error as? SocketError { return "\(call): \(message)" }
        return "\(error)"
    }
}

/// The first of the server's failure and its listening, for the thread that waits in `start`.
final class StartOutcome: Sendable {
    private let result = Mutex<Result<Void, any Error>?>(nil)
    private let settled = DispatchSemaphore(value: 0)

    func settle(_ outcome: Result<Void, any Error>) {
        let first = result.withLock { result in
            guard result == nil else { return false }
            result = outcome
            return true
        }
        if first { settled.signal() }
    }

    func wait(seconds: Double) -> Result<Void, any Error>? {
        guard settled.wait(timeout: .now() + seconds) == .success else { return nil }
        return result.withLock { $0 }
    }
}

struct MetricsHandler: HTTPHandler {
    static let exposition = "text/plain; version=0.0.4; charset=utf-8"
    static let plain = "text/plain; charset=utf-8"

    let metrics: DaemonMetrics

    func handleRequest(_ request: HTTPRequest) async throws -> HTTPResponse {
        guard request.method == .GET else { return Self.text(.notFound, "not found") }
        switch request.path {
        case "/metrics":
            return HTTPResponse(
                statusCode: .ok, headers: [.contentType: Self.exposition], body: Data(metrics.page()))
        case "/ready":
            guard let missing = metrics.unready else { return Self.text(.ok, "ready") }
            return Self.text(.serviceUnavailable, missing)
        case "/health":
            return Self.text(.ok, "ok")
        default:
            return Self.text(.notFound, "not found")
        }
    }

    static func text(_ status: HTTPStatusCode, _ line: String) -> HTTPResponse {
        HTTPResponse(statusCode: status, headers: [.contentType: plain], body: Data((line + "\n").utf8))
    }
}

/// FlyingFox's socket pool with a deadline on every wait of a connection: a peer that neither sends
/// nor reads for `idle` is disconnected. The listening socket waits without one.
struct IdleTimeoutPool: AsyncSocketPool {
    let base: any AsyncSocketPool
    let idle: Duration

    func prepare() async throws { try await base.prepare() }

    func run() async throws { try await base.run() }

    func suspendSocket(_ socket: Socket, untilReadyFor events: Socket.Events) async throws {
        guard !Self.isListening(socket) else {
            return try await base.suspendSocket(socket, untilReadyFor: events)
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await base.suspendSocket(socket, untilReadyFor: events) }
            group.addTask {
                try await Task.sleep(for: idle)
                throw SocketError.disconnected
            }
            defer { group.cancelAll() }
            try await group.next()
        }
    }

    static func isListening(_ socket: Socket) -> Bool {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        return getsockopt(socket.file.rawValue, SOL_SOCKET, SO_ACCEPTCONN, &value, &length) == 0 && value != 0
    }
}

/// FlyingFox's log lines, at debug level: what a remote client does must not fill the daemon's log.
struct DebugLogging: FlyingSocks.Logging {
    let logger: Logger

    func logDebug(_ debug: @autoclosure () -> String) { log(debug()) }
    func logInfo(_ info: @autoclosure () -> String) { log(info()) }
    func logWarning(_ warning: @autoclosure () -> String) { log(warning()) }
    func logError(_ error: @autoclosure () -> String) { log(error()) }
    func logCritical(_ critical: @autoclosure () -> String) { log(critical()) }

    func log(_ line: @autoclosure () -> String) { logger.debug("metrics listener: \(line())") }
}
