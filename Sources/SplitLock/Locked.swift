/// A value behind a pthread mutex: the one lock of both executables.
///
/// Not the standard library's `Mutex`: on Linux it hands a contended lock over in the kernel
/// (FUTEX_LOCK_PI/UNLOCK_PI in the uninstrumented `_lockSlow`/`_unlockSlow` of
/// libswiftSynchronization), so ThreadSanitizer misses that hand-over and reports the data the lock
/// guards as a race whenever two threads happen to contend (`scripts/sanitize` saw it in the
/// daemon's metrics, between a reload and an `spf:` refresh, and in the bench driver). glibc's
/// mutex is one ThreadSanitizer intercepts; uncontended it costs what `Mutex` does.
///
/// Invariants: the value is touched only between `pthread_mutex_lock` and `pthread_mutex_unlock` of
/// the mutex; both live at addresses of their own (allocated here) from `init` to `deinit`, so the
/// value is reached through a pointer, not as a stored property (ThreadSanitizer reported Swift's
/// bookkeeping of an `inout` access to a stored property, empty `Void` included, as a race);
/// `withLock` does not nest on one lock (a default mutex would deadlock).

import Glibc

public final class Locked<Value>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let value: UnsafeMutablePointer<Value>

    public init(_ initial: Value) {
        value = .allocate(capacity: 1)
        value.initialize(to: initial)
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        value.deinitialize(count: 1)
        value.deallocate()
    }

    /// Runs `body` with the value, the lock held.
    public func withLock<Result, Failure: Error>(_ body: (inout Value) throws(Failure) -> Result) throws(Failure)
        -> Result
    {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value.pointee)
    }
}
