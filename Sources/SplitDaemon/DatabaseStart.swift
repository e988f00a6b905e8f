/// `--database` at start: the first rows (`DatabaseOpening`: from the database, or from the cache
/// when it cannot be reached) and their metrics, then the follower thread once the daemon runs.
///
/// Invariants: the daemon never starts without rows: from the database, or, when it is unreachable,
/// from the cache of the last rows that made good rules (logged as such, with their age); with
/// neither it refuses to start and says why. `open` runs as root, before privileges are given up
/// (the password file).

import Logging
import SplitCore
import SplitDatabase
import SplitMetrics
import SplitSystem

struct DatabaseStart {
    let link: DatabaseLink
    let rows: DatabaseRows
    let series: DatabaseSeries?
    /// True when `rows` came from the database, false from the cache.
    let fresh: Bool

    /// nil (logged as critical) when the daemon cannot start.
    static func open(_ path: String, metrics: DaemonMetrics?, logger: Logger) -> DatabaseStart? {
        guard let opened = DatabaseOpening.open(path, for: .start, logger: logger) else { return nil }
        let series = metrics?.makeDatabaseSeries()
        series?.reachability(up: opened.fresh, at: UnixTime.now())
        series?.rowsInForce(change: opened.rows.changeID, synced: opened.cacheSaved.map(Double.init))
        return DatabaseStart(link: opened.link, rows: opened.rows, series: series, fresh: opened.fresh)
    }

    /// The first rules are in force: rows fresh from the database are cached.
    func rulesInForce(logger: Logger) {
        if fresh { RuleBuilder.writeCache(rows, to: link.settings.cache, logger: logger) }
    }

    /// Starts the follower thread (after privileges are given up).
    func follow(logger: Logger) throws(DatabaseError) {
        let follower = DatabaseFollower(link: link, observer: Observer(series: series), logger: logger)
        try follower.start(from: rows)
    }

    struct Observer: DatabaseObserver {
        let series: DatabaseSeries?

        func rowsChanged(_ rows: DatabaseRows, changes: Int, readWhole: Bool) -> Bool {
            ruleBuilder.databaseChanged(rows)
        }

        func reachability(up: Bool, at time: Double) { series?.reachability(up: up, at: time) }
    }
}
