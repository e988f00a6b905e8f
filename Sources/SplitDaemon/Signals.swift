/// Signal handling around libmilter, and a stop that does not wait for libmilter's accept loop.
///
/// libmilter's own signal thread stops the milter on SIGHUP, SIGTERM and SIGINT; it relies on every
/// thread having those signals blocked, and a thread created before the mask is set kills the
/// process outright on SIGTERM (docs/postfix-milter.md, "Signals"). So `prepare()` must be the first
/// thing `main` does. SIGUSR1 is ours: it reloads the rules on a thread of our own.
///
/// The prompt stop. libmilter's accept loop sleeps in poll() for up to 5 s holding the lock that
/// its stop needs, so its own stop takes up to 5 s (docs/postfix-milter.md, "Signals"). Here the
/// accept loop runs on a thread of its own, and the main thread waits for the stop signals. The
/// kernel gives a signal sent to the process to its main thread whenever that thread waits for it
/// (libmilter's signal thread waits for the same ones and gets them only while the main thread does
/// not wait: then the stop is libmilter's, up to 5 s, and as orderly). On a stop signal the main
/// thread has `smfi_stop()` called and interrupts the accept loop's poll() with SIGUSR2 until the
/// loop has returned: libmilter retries poll() on EINTR, sees the stop and returns.
///
/// Invariants: SIGUSR2 does nothing anywhere (a handler that returns, `SA_RESTART`, so no read or
/// write is cut short; libmilter retries poll() and select() on EINTR throughout); the accept
/// loop's thread never ends by itself: `serve`'s `finish` ends the process, so the thread that is
/// interrupted is alive until then.

import Glibc
import SplitSystem
import Synchronization

public enum DaemonSignals {
    static let blocked: [Int32] = [SIGHUP, SIGTERM, SIGINT, SIGUSR1]
    static let stops: [Int32] = [SIGHUP, SIGTERM, SIGINT]

    /// Blocks SIGHUP, SIGTERM, SIGINT and SIGUSR1 in the calling thread and every thread it creates
    /// later, makes SIGUSR2 (the accept loop's interruption) do nothing, and ignores SIGPIPE (a
    /// write to a peer that hung up fails with EPIPE instead of killing the process; libmilter's
    /// `smfi_main` does the same, the native engine does not run it).
    public static func prepare() {
        var set = signalSet(blocked)
        pthread_sigmask(SIG_BLOCK, &set, nil)
        signal(SIGPIPE, SIG_IGN)
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in }
        action.sa_flags = SA_RESTART
        sigemptyset(&action.sa_mask)
        sigaction(SIGUSR2, &action, nil)
    }

    /// Starts a thread that calls `body` on each SIGUSR1. Call after `prepare()`.
    static func onReloadSignal(_ body: @escaping @Sendable () -> Void) {
        DetachedThread.start {
            // Reloads yield to messages: a million-line file is a second of CPU.
            RuleRetirement.lowerPriority()
            var set = signalSet([SIGUSR1])
            var received: Int32 = 0
            while true {
                if sigwait(&set, &received) == 0, received == SIGUSR1 { body() }
            }
        }
    }

    /// Runs libmilter's accept loop on a new thread, which calls `finish` when the loop returns:
    /// with nil after a stop, else with what went wrong; `finish` must end the process. The calling
    /// thread, which must be the main thread, waits for the stop signals and never returns.
    static func serve(finish: @escaping @Sendable (_ failure: String?) -> Never) -> Never {
        let loop = AcceptLoop()
        serve(
            "libmilter", finish: finish,
            loop: {
                loop.begin()
                var failure: String?
                do { try Libmilter.main() } catch { failure = "\(error)" }
                // smfi_stop() closes the listening socket: a stop that came before libmilter took the
                // socket over makes smfi_main() fail, and is still the stop that was asked for.
                return loop.end() ? nil : failure
            },
            onStop: {
                loop.requestStop()
                // smfi_stop() waits for the lock the sleeping poll() holds: it gets a thread of its own.
                DetachedThread.start { Libmilter.stop() }
                loop.interruptUntilEnded()
            })
    }

    /// The same for the native engine: its accept loop on a new thread, the stop signals here. A
    /// stop shuts the listening socket down, which ends the accept loop at once.
    static func serveNative(
        listening fd: Int32, timeout: Int, finish: @escaping @Sendable (_ failure: String?) -> Never
    ) -> Never {
        let stopping = StopRequest()
        serve(
            "the accept loop", finish: finish,
            loop: {
                let failure = NativeEngine.serve(listening: fd, timeout: timeout) { stopping.requested }
                close(fd)
                return failure
            },
            onStop: {
                stopping.request()
                shutdown(fd, Int32(SHUT_RDWR))
            })
    }

    /// Runs `loop` on a new thread, which hands its outcome to `finish` (nil: stopped as asked);
    /// the calling thread waits for the stop signals and calls `onStop` on each.
    private static func serve(
        _ what: String, finish: @escaping @Sendable (_ failure: String?) -> Never,
        loop: @escaping @Sendable () -> String?, onStop: () -> Void
    ) -> Never {
        let started = DetachedThread.start { finish(loop()) }
        if started != 0 { finish("cannot start a thread for \(what): error \(started)") }
        var set = signalSet(stops)
        var received: Int32 = 0
        while true {
            guard sigwait(&set, &received) == 0 else { continue }
            onStop()
        }
    }

    static func signalSet(_ signals: [Int32]) -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in signals { sigaddset(&set, signal) }
        return set
    }
}

/// The thread that runs libmilter's accept loop, as the main thread sees it. Atomics, not a lock:
/// the main thread would hold one while it signals, and the loop's thread would then wait in a
/// lock's slow path, which ThreadSanitizer does not see into.
private final class AcceptLoop: Sendable {
    /// The loop thread's `pthread_t`; 0 until it runs.
    private let thread = Atomic<pthread_t>(0)
    private let ended = Atomic(false)
    private let stopRequested = Atomic(false)

    func begin() { thread.store(pthread_self(), ordering: .sequentiallyConsistent) }
    func requestStop() { stopRequested.store(true, ordering: .sequentiallyConsistent) }

    /// Marks the loop ended; returns whether a stop had been asked for.
    func end() -> Bool {
        ended.store(true, ordering: .sequentiallyConsistent)
        return stopRequested.load(ordering: .sequentiallyConsistent)
    }

    /// Sends SIGUSR2 to the loop's thread every 10 ms (for at most 10 s) until the loop has ended.
    /// A signal before `smfi_stop()` has taken effect only makes poll() start again; one just after
    /// the loop ended finds the thread still there (it ends the process) and does nothing.
    func interruptUntilEnded() {
        for _ in 0..<1000 {
            if ended.load(ordering: .sequentiallyConsistent) { return }
            let loopThread = thread.load(ordering: .sequentiallyConsistent)
            if loopThread != 0 { pthread_kill(loopThread, SIGUSR2) }
            usleep(10_000)
        }
    }
}

/// Whether a stop was asked for, shared by the signal thread and the native accept loop.
private final class StopRequest: Sendable {
    private let flag = Atomic(false)
    var requested: Bool { flag.load(ordering: .sequentiallyConsistent) }
    func request() { flag.store(true, ordering: .sequentiallyConsistent) }
}
