/// Writes the database cache after a change, on a thread of its own: the follower goes on to the
/// next change while a million rows are encoded and written.
///
/// Invariants:
/// - Latest wins: rows handed in while a write is under way replace any not yet written, so the
///   file ends with the newest rows that made good rules, and at most one writer thread exists.
/// - Each file is written whole and atomically (`RuleBuilder.writeCache`), mode 0600.
/// - At most one write a second (`pause`): encoding a million rows is ~0.3 s of CPU, which a burst
///   of changes must not spend again for every change on a machine that also carries the mail.
///   The cache may lag the rules in force by that second; a daemon started from it catches up from
///   the database when it answers.
/// - Without a thread (pthread_create failed) the rows are written on the caller's.

import Glibc
import Logging
import SplitCore
import SplitLock
import SplitSystem

final class DatabaseCacheWriter: Sendable {
    private struct State {
        var next: DatabaseRows?
        var writing = false
    }

    /// The pause after each write, in microseconds.
    static let pause: useconds_t = 1_000_000

    private let state = Locked(State())
    private let path: String
    private let logger: Logger

    init(path: String, logger: Logger) {
        self.path = path
        self.logger = logger
    }

    /// Writes `rows` soon, unless newer rows come first.
    func write(_ rows: DatabaseRows) {
        let startThread = state.withLock { state in
            state.next = rows
            defer { state.writing = true }
            return !state.writing
        }
        guard startThread else { return }
        if DetachedThread.start({ self.drain() }) != 0 { drain() }
    }

    private func drain() {
        while let rows = state.withLock({ state in
            let rows = state.next
            state.next = nil
            if rows == nil { state.writing = false }
            return rows
        }) {
            RuleBuilder.writeCache(rows, to: path, logger: logger)
            usleep(Self.pause)
        }
    }
}
