/// The wall clock as Unix seconds with a fraction: what metrics' timestamps and the database
/// follower's log lines show (CLOCK_REALTIME; durations on the message path use
/// `LatencyHistogram.now`, a monotonic clock).

import Glibc

public enum UnixTime {
    public static func now() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }
}
