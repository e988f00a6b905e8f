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
///   the database when it answers. An orderly stop does not leave it lagging: `flush` writes the
///   rows still waiting out the pause before the process ends.
/// - Writes are one at a time (`file`'s lock, held from taking the rows to the rename), so an
///   older write never lands after a newer one.
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
    /// Held for each write, from taking the rows to the rename.
    private let file = Locked(())
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

    /// Writes the rows not yet written now, after a write under way: for an orderly stop.
    func flush() { writeNext(endingTheThread: false) }

    private func drain() {
        while writeNext(endingTheThread: true) { usleep(Self.pause) }
    }

    /// Writes the newest rows not yet written, if any; false when there were none (and then, for the
    /// writer thread, it ends).
    @discardableResult
    private func writeNext(endingTheThread: Bool) -> Bool {
        file.withLock { _ in
            let rows = state.withLock { state in
                let rows = state.next
                state.next = nil
                if rows == nil, endingTheThread { state.writing = false }
                return rows
            }
            guard let rows else { return false }
            RuleBuilder.writeCache(rows, to: path, logger: logger)
            return true
        }
    }
}
