/// `--database FILE` read once: the settings, the password, every row in one snapshot, or, when the
/// database cannot be reached, the cache of the last rows that made good rules. The daemon starts
/// from it; `splitmilter --check`, `milter-test check` and `milter-test explain` check and explain
/// the rules with its rows. One place, so all of them read the same rows the same way.
///
/// Invariants: never rows without saying where they came from: the database's are logged (info)
/// with their change and count, the cache's (warning) with its path, change and age; with neither
/// it returns nil and says why (critical), as it does for settings with errors and a password file
/// that is refused. The password file is read here: the daemon calls this as root, before
/// privileges are given up.

import Glibc
import Logging
import SplitCore
import SplitSystem

public struct DatabaseOpening: Sendable {
    /// What the rows are for, which is all that changes in what is logged.
    public enum Use: Sendable {
        /// The daemon's start: it follows the database afterwards.
        case start
        /// A check or an explanation of the rules, once, without following.
        case check
    }

    public let link: DatabaseLink
    public let rows: DatabaseRows
    /// nil when `rows` are the database's; when they are the cache's, the Unix time it was saved.
    public let cacheSaved: Int64?

    /// True when `rows` came from the database, false from the cache.
    public var fresh: Bool { cacheSaved == nil }

    /// The rows of the database the settings at `path` name, or its cache's; nil (logged as
    /// critical) when there are none.
    public static func open(_ path: String, for use: Use, logger: Logger) -> DatabaseOpening? {
        let refusal = use == .start ? "not starting" : "no rows to check the rules with"
        let settings: DatabaseSettings
        do {
            switch DatabaseSettings.parse(try DiskRuleSource().contents(of: path), path: path) {
            case .success(let parsed): settings = parsed
            case .failure(let errors):
                for diagnostic in errors.diagnostics { logger.error("\(diagnostic)") }
                logger.critical("errors in the database settings \(path); \(refusal)")
                return nil
            }
        } catch {
            logger.critical("cannot read the database settings \(path): \(error); \(refusal)")
            return nil
        }
        let password: String?
        do {
            password = try settings.passwordFile.map { file throws(DatabaseError) in try DatabasePassword.read(file) }
        } catch {
            logger.critical("\(error); \(refusal)")
            return nil
        }
        let link = DatabaseLink(settings: settings, password: password)
        let started = UnixTime.now()
        do {
            let (rows, transport) = try link.readAllReporting()
            let milliseconds = Int((UnixTime.now() - started) * 1000)
            logger.info(
                "database \(settings.description): \(rows.memberCount) list rows and \(rows.ruleCount) rule rows up to change \(rows.changeID), read in \(milliseconds) ms \(transport)"
            )
            return DatabaseOpening(link: link, rows: rows, cacheSaved: nil)
        } catch {
            let cached: DatabaseCache.Contents
            do {
                cached = try DatabaseCache.decode(DiskRuleSource().contents(of: settings.cache))
            } catch let why {
                logger.critical(
                    "cannot reach the database \(settings.description) (\(error)), and no cache to serve from: \(settings.cache): \(why); \(refusal)"
                )
                return nil
            }
            let age = max(0, Int64(time(nil)) - cached.saved)
            let following = use == .start ? "; following the database once it answers" : ""
            logger.warning(
                "cannot reach the database \(settings.description) (\(error)); serving from the cache \(settings.cache): change \(cached.rows.changeID), cached \(age) s ago\(following)"
            )
            return DatabaseOpening(link: link, rows: cached.rows, cacheSaved: cached.saved)
        }
    }
}

extension RuleInputs {
    /// What `--check` and `milter-test` parse the rules with: with `database`, the rows
    /// `DatabaseOpening` reads (or its cache's, logged); nil (logged) when there are none.
    public static func checking(database path: String?, logger: Logger) -> RuleInputs? {
        guard let path else { return RuleInputs() }
        return DatabaseOpening.open(path, for: .check, logger: logger).map { RuleInputs(database: $0.rows) }
    }
}
