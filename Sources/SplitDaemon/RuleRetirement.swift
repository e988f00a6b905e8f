/// Where replaced rules are freed: on a thread of their own, once no connection still uses them.
///
/// A rule set of a million lines is millions of small objects: freeing it takes about 0.4 s of
/// CPU. Done by whoever happened to drop the last copy (the reload thread inside the runtime's lock,
/// or a libmilter worker closing a connection), it stalled every connection for up to a second
/// (`scripts/bench-reload`). Here the last copy is this thread's own: it waits until every
/// connection that started with the old rules has closed (`RuleSet.isOnlyCopy`), drops them, and
/// hands the memory back to the system (`malloc_trim`). It runs at normal priority: a thread at
/// nice 19 would hold malloc's arena locks while descheduled.
///
/// While it frees, glibc's fastbins are off (`mallopt(M_MXFAST, 0)`, then back to the setting in
/// force: an administrator's `glibc.malloc.mxfast` tunable, else glibc's default).
/// With them on, each freed small block waits in a fastbin, and the million of them are merged in
/// one go (glibc's `malloc_consolidate`) by whichever thread next asks that arena for a larger
/// block, holding the arena's lock while every other thread on the arena waits: after a reload that
/// arena is often a libmilter worker's. Off, each block is merged as it is freed, by this thread. The switch is process-wide but lasts
/// only the free; the message path keeps fastbins (off for good, they cost 1.7% more instructions
/// per message). Measured (`scripts/bench-reload`, 1M lines, 16 connections, 2026-12-01): the worst
/// message in the 2 s after the first reload's swap was 189–407 ms in four runs with fastbins on
/// through the free, 34–41 ms in two runs with them off; after the later reloads 29–399 ms against
/// 81–155 ms, where the same runs' worst message without a reload was 57–161 ms. An idle daemon's
/// worst message around a reload went from 1,049 ms to 37 ms when the free moved to
/// this thread, and RSS after a reload from three copies of the rules to one.

internal import CMilterShim
import Glibc
import Logging
import SplitCore
import SplitSystem

enum RuleRetirement {
    /// How often a retiring rule set is asked whether it is the last copy.
    static let pollInterval: useconds_t = 100_000

    /// The largest fastbin block in force: the `glibc.malloc.mxfast` tunable the daemon was started
    /// with, else glibc's default (`DEFAULT_MXFAST` in its malloc.c: 64 × sizeof(size_t) / 4).
    static let maxFastInForce = Int32(
        clamping: GlibcTunables.value(
            of: "glibc.malloc.mxfast", in: getenv("GLIBC_TUNABLES").map { String(cString: $0) })
            ?? 64 * MemoryLayout<Int>.size / 4)

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
            _ = mallopt(M_MXFAST, 0)
            rules = nil
            _ = mallopt(M_MXFAST, RuleRetirement.maxFastInForce)
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
