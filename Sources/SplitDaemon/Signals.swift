/// Signal handling around libmilter.
///
/// libmilter's own signal thread stops the milter on SIGHUP, SIGTERM (orderly) and SIGINT (abort);
/// it relies on every thread having those signals blocked, and a thread created before the mask is
/// set kills the process outright on SIGTERM (docs/postfix-milter.md, "Signals"). So `blockAll()`
/// must be the first thing `main` does. SIGUSR1 is ours: it reloads the rules on a thread of our own.

import Glibc
import SplitSystem

public enum DaemonSignals {
    static let handled: [Int32] = [SIGHUP, SIGTERM, SIGINT, SIGUSR1]

    /// Blocks SIGHUP, SIGTERM, SIGINT and SIGUSR1 in the calling thread and every thread it creates later.
    public static func blockAll() {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in handled { sigaddset(&set, signal) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    /// Starts a thread that calls `body` on each SIGUSR1. Call after `blockAll()`.
    static func onReloadSignal(_ body: @escaping @Sendable () -> Void) {
        DetachedThread.start {
            // Reloads yield to messages: a million-line file is a second of CPU.
            RuleRetirement.lowerPriority()
            var set = sigset_t()
            sigemptyset(&set)
            sigaddset(&set, SIGUSR1)
            var received: Int32 = 0
            while true {
                if sigwait(&set, &received) == 0, received == SIGUSR1 { body() }
            }
        }
    }
}
