/// `--database` at start: the settings, the password, the first rows (from the database, or from
/// the cache when it cannot be reached), then the follower thread once the daemon runs.
///
/// Invariants: the daemon never starts without rows: from the database, or, when it is unreachable,
/// from the cache of the last rows that made good rules (logged as such, with their age); with
/// neither it refuses to start and says why. The password file is read here, as root, before
/// privileges are given up.

import Glibc
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
        let settings: DatabaseSettings
        do {
            switch DatabaseSettings.parse(try DiskRuleSource().contents(of: path), path: path) {
            case .success(let parsed): settings = parsed
            case .failure(let errors):
                for diagnostic in errors.diagnostics { logger.error("\(diagnostic)") }
                logger.critical("errors in the database settings \(path); not starting")
                return nil
            }
        } catch {
            logger.critical("cannot read the database settings \(path): \(error); not starting")
            return nil
        }
        let password: String?
        do {
            password = try settings.passwordFile.map { file throws(DatabaseError) in try DatabasePassword.read(file) }
        } catch {
            logger.critical("\(error); not starting")
            return nil
        }
        let link = DatabaseLink(settings: settings, password: password)
        let series = metrics?.makeDatabaseSeries()
        let started = UnixTime.now()
        do {
            let rows = try link.readAll()
            let milliseconds = Int((UnixTime.now() - started) * 1000)
            series?.reachability(up: true, at: UnixTime.now())
            series?.rowsInForce(change: rows.changeID, synced: nil)
            logger.info(
                "database \(settings.description): \(rows.memberCount) list rows and \(rows.ruleCount) rule rows up to change \(rows.changeID), read in \(milliseconds) ms"
            )
            return DatabaseStart(link: link, rows: rows, series: series, fresh: true)
        } catch {
            series?.reachability(up: false, at: UnixTime.now())
            let cached: DatabaseCache.Contents
            do {
                cached = try DatabaseCache.decode(DiskRuleSource().contents(of: settings.cache))
            } catch let why {
                logger.critical(
                    "cannot reach the database \(settings.description) (\(error)), and no cache to serve from: \(settings.cache): \(why); not starting"
                )
                return nil
            }
            let age = max(0, Int64(time(nil)) - cached.saved)
            series?.rowsInForce(change: cached.rows.changeID, synced: Double(cached.saved))
            logger.warning(
                "cannot reach the database \(settings.description) (\(error)); serving from the cache \(settings.cache): change \(cached.rows.changeID), cached \(age) s ago; following the database once it answers"
            )
            return DatabaseStart(link: link, rows: cached.rows, series: series, fresh: false)
        }
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

extension Daemon {
    /// The rows `--check --database PATH` checks the rules with: the database's, or its cache's
    /// when it cannot be reached (logged); nil (logged) when neither can be had.
    public static func rowsForCheck(_ path: String, logger: Logger) -> DatabaseRows? {
        DatabaseStart.open(path, metrics: nil, logger: logger)?.rows
    }
}
