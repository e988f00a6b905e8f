/// Where replaced rules are freed: on a thread of their own, once no connection still uses them.
///
/// A rule set of a million lines is millions of small objects: freeing it takes about 0.4 s of
/// CPU, and glibc then merges the freed blocks at its next large allocation, wherever that is. Done
/// by whoever happened to drop the last copy (the reload thread inside the runtime's lock, or a
/// libmilter worker closing a connection), it stalled every connection for up to a second
/// (`scripts/bench-reload`). Here the last copy is this thread's own: it waits until every
/// connection that started with the old rules has closed (`RuleSet.isOnlyCopy`), drops them, and
/// hands the memory back to the system (`malloc_trim`) before anyone else allocates. It runs at
/// normal priority: a thread at nice 19 would hold malloc's arena locks while descheduled. Measured
/// (`scripts/bench-reload`, 1M lines): an idle daemon's worst message around a reload went from
/// 1,049 ms to 37 ms, and RSS after a reload from three copies of the rules to one; under load the
/// seconds after the swap still show a worst window p99 of ~0.5 s on 2 cores (freeing a million
/// objects is ~0.4 s of CPU): fewer, flatter objects per rule are the fix left to do.

internal import CMilterShim
import Glibc
import Logging
import SplitCore
import SplitSystem

enum RuleRetirement {
    /// How often a retiring rule set is asked whether it is the last copy.
    static let pollInterval: useconds_t = 100_000

    /// Frees `rules` on a new detached thread once no one else holds them.
    static func retire(_ rules: RuleSet, logger: Logger) {
        let retiring = Retiring(rules, logger: logger)
        // Without a thread the closure is released unrun: the rules are freed here, on the reload
        // thread, as before.
        DetachedThread.start { retiring.run() }
    }

    /// The rule set on its way out; only its thread touches it.
    final class Retiring: @unchecked Sendable {
        var rules: RuleSet?
        let logger: Logger

        init(_ rules: RuleSet, logger: Logger) {
            self.rules = rules
            self.logger = logger
        }

        func run() {
            while rules?.isOnlyCopy() == false { usleep(RuleRetirement.pollInterval) }
            rules = nil
            malloc_trim(0)
            logger.debug("the replaced rules are freed")
        }
    }

    /// Nice 19 for the calling thread only (the reload thread: reading a big file yields to mail):
    /// on Linux each thread has its own nice value, and `who` 0 names the calling thread. The
    /// unit's system call filter allows it (debian/splitmilter.service).
    static func lowerPriority() {
        _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 19)
    }
}
