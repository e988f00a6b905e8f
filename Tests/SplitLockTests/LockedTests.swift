/// `Locked` excludes: threads that add to one counter through it lose no addition.

import Glibc
import SplitLock
import Testing

@Suite struct LockedTests {
    @Test func contendingThreadsLoseNoUpdate() {
        let counter = Locked(0)
        let threads = 8
        let additions = 20_000
        var ids: [pthread_t] = []
        final class Work: @unchecked Sendable {
            let counter: Locked<Int>
            let additions: Int
            init(_ counter: Locked<Int>, _ additions: Int) {
                self.counter = counter
                self.additions = additions
            }
        }
        for _ in 0..<threads {
            var thread = pthread_t()
            let work = Unmanaged.passRetained(Work(counter, additions)).toOpaque()
            let rc = pthread_create(
                &thread, nil,
                { argument in
                    let work = Unmanaged<Work>.fromOpaque(argument!).takeRetainedValue()
                    for _ in 0..<work.additions { work.counter.withLock { $0 += 1 } }
                    return nil
                }, work)
            #expect(rc == 0)
            ids.append(thread)
        }
        for thread in ids { pthread_join(thread, nil) }
        #expect(counter.withLock { $0 } == threads * additions)
    }

    @Test func anErrorThrownInsideLeavesTheLockFree() {
        struct Refused: Error {}
        let locked = Locked("a")
        #expect(throws: Refused.self) { try locked.withLock { _ throws(Refused) in throw Refused() } }
        #expect(locked.withLock { $0 } == "a")
    }
}
