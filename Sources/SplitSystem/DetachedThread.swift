/// The daemon's own threads (reloads, retiring replaced rules, `spf:` refreshes, the metrics
/// listener): plain detached pthreads, neither libmilter's workers nor Swift concurrency's pool, so
/// that work of seconds (reading a million-line file, freeing it, a DNS timeout, a slow scraper)
/// never holds a thread a message or a test is waiting for.
///
/// Invariants: `body` runs exactly once if the thread started (0 returned), never otherwise; the
/// thread is detached, so nothing joins it and it frees itself when `body` returns. `body` is
/// `sending`: the caller gives it (and what it captures, such as a server only its thread uses) up
/// to the new thread.

import Glibc

public enum DetachedThread {
    /// Starts `body` on a new detached thread. Returns 0, or pthread_create's error number (the
    /// body is then released unrun).
    @discardableResult
    public static func start(_ body: sending @escaping () -> Void) -> Int32 {
        let box = Unmanaged.passRetained(Body(body)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(
            &thread, nil,
            { argument in
                guard let argument else { return nil }
                Unmanaged<Body>.fromOpaque(argument).takeRetainedValue().run()
                return nil
            }, box)
        if rc == 0 {
            pthread_detach(thread)
        } else {
            Unmanaged<Body>.fromOpaque(box).release()
        }
        return rc
    }

    /// Unchecked: made on the starting thread and then used by the new thread alone (`sending`).
    private final class Body: @unchecked Sendable {
        let run: () -> Void
        init(_ run: sending @escaping () -> Void) { self.run = run }
    }
}
