/// A histogram of durations that libmilter's threads record into without a lock: one atomic count
/// per bucket (each duration lands in one bucket; the page adds them up into Prometheus's
/// cumulative `le` buckets), an atomic sum and nothing else. swift-prometheus's own histogram
/// takes a lock that its rendering takes too, so a scrape could hold up a message.
///
/// A page rendered while durations are recorded may be a few recordings behind in one line and not
/// in another; it stays consistent where Prometheus needs it: the `le` buckets never decrease and
/// `+Inf` equals `_count`.

import Glibc
import Synchronization

final class AtomicCount: Sendable {
    let value = Atomic<UInt64>(0)

    func add(_ amount: UInt64) { value.wrappingAdd(amount, ordering: .relaxed) }
    func load() -> UInt64 { value.load(ordering: .relaxed) }
}

public final class LatencyHistogram: Sendable {
    let name: String
    let help: String
    /// Upper bounds as the page writes them, and in nanoseconds; ascending.
    let bounds: [(label: String, nanoseconds: UInt64)]
    /// One more than `bounds`: the last counts what is above every bound.
    private let counts: [AtomicCount]
    private let sumNanoseconds = AtomicCount()

    init(name: String, help: String, bounds: [(label: String, nanoseconds: UInt64)]) {
        self.name = name
        self.help = help
        self.bounds = bounds
        counts = (0...bounds.count).map { _ in AtomicCount() }
    }

    /// Now, on the monotonic clock, in nanoseconds: what `record(since:)` takes.
    public static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) &* 1_000_000_000 &+ UInt64(time.tv_nsec)
    }

    /// Records the time from `start` (`now()`) to now.
    public func record(since start: UInt64) {
        let end = Self.now()
        record(nanoseconds: end >= start ? end - start : 0)
    }

    func record(nanoseconds: UInt64) {
        var index = 0
        while index < bounds.count, bounds[index].nanoseconds < nanoseconds { index += 1 }
        counts[index].add(1)
        sumNanoseconds.add(nanoseconds)
    }

    /// The text exposition (format 0.0.4) of the histogram, HELP and TYPE lines first.
    func emit(into buffer: inout [UInt8]) {
        buffer.append(contentsOf: "# HELP \(name) \(help)\n# TYPE \(name) histogram\n".utf8)
        var total: UInt64 = 0
        for (index, bound) in bounds.enumerated() {
            total += counts[index].load()
            buffer.append(contentsOf: "\(name)_bucket{le=\"\(bound.label)\"} \(total)\n".utf8)
        }
        total += counts[bounds.count].load()
        let sum = Double(sumNanoseconds.load()) / 1e9
        buffer.append(
            contentsOf: "\(name)_bucket{le=\"+Inf\"} \(total)\n\(name)_sum \(sum)\n\(name)_count \(total)\n".utf8)
    }
}
