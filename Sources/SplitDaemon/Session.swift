/// Per-connection state, carried through libmilter's private-data pointer: the connection's
/// `FilterSession` (the message logic, in SplitCore) and what only the libmilter shell needs.
///
/// Neither engine runs two steps of one connection at once; libmilter may run successive callbacks
/// on different threads (the native engine serves a connection on one), so all state lives here
/// and none in thread-locals.

import Logging
import SplitCore

final class Session {
    /// The rules, `spf:` networks, settings and logger this connection started with; a reload or a
    /// refresh affects the next connection.
    let snapshot: Snapshot
    let filter: FilterSession
    /// The SMFIP_NR_* steps negotiated: their callbacks must answer NOREPLY, whatever happens.
    @exclusivity(unchecked) var noReplySteps: UInt = 0

    init(_ snapshot: Snapshot) {
        self.snapshot = snapshot
        filter = FilterSession(
            rules: snapshot.rules, providers: snapshot.providers, marker: snapshot.settings.marker,
            log: LoggerSessionLog(logger: snapshot.logger), counters: snapshot.counters)
    }

    var logger: Logger { snapshot.logger }
}

/// A `SessionLog` over swift-log: the level check first, so a line at a disabled level is never built.
struct LoggerSessionLog: SessionLog {
    let logger: Logger
    /// The logger's level, read once: a `Logger` is a value, its level set when it was made, and
    /// asking its handler (an existential) cost more than a whole header callback.
    let threshold: Logger.Level

    init(logger: Logger) {
        self.logger = logger
        threshold = logger.logLevel
    }

    func isEnabled(_ level: SessionLogLevel) -> Bool { threshold <= Self.level(level) }

    func write(_ level: SessionLogLevel, _ line: String) { logger.log(level: Self.level(level), "\(line)") }

    static func level(_ level: SessionLogLevel) -> Logger.Level {
        switch level {
        case .debug: .debug
        case .info: .info
        case .warning: .warning
        case .error: .error
        }
    }
}
