/// Every build of the rules after start: a reload (SIGUSR1) and a database change take the same
/// path, one at a time.
///
/// Invariants:
/// - One build at a time (`inputs`' lock): a reload and a database change never race to swap in
///   rules made from a stale half of the inputs.
/// - A reload reads the files from the disk and the database's rows as last followed; a database
///   change uses the files as last read (so an edit not yet reloaded stays out until SIGUSR1) and
///   the new rows.
/// - A database change patches the lists the last build read (`DatabaseListParses`): a one-row
///   change to a list of a million rows is a diff and a one-line parse. A reload reads every list
///   whole, so its warnings are checked against the sections of the files it read.
/// - Rules with errors are never swapped in: the previous rules stay, and the error is logged with
///   its place (for a database row, its key).
/// - Only rows that made good rules are cached (`DatabaseCache`), so a daemon started from the
///   cache serves rules that once were in force; after a change the cache is written on a thread
///   of its own (`DatabaseCacheWriter`), the newest rows last.

import Glibc
import Logging
import SplitCore
import SplitDatabase
import SplitLock
import SplitMetrics
import SplitSystem

final class RuleBuilder: Sendable {
    struct Inputs {
        var rulesPath = ""
        var dryRun = false
        /// nil without `--database`.
        var rows: DatabaseRows?
        /// The files as last read; kept only with a database.
        var files: RememberedFiles?
        /// Writes the rows of each database change that made good rules (nil: no cache).
        var cache: DatabaseCacheWriter?
        var databaseSeries: DatabaseSeries?
        /// The database lists as the last build read them: the next patches them.
        var lists = DatabaseListParses()
    }

    private let inputs = Locked(Inputs())

    /// The first build, at start (before any thread): nil when the rules have errors (logged).
    func start(
        rulesPath: String, dryRun: Bool, rows: DatabaseRows?, cachePath: String?, series: DatabaseSeries?,
        logger: Logger
    ) -> (rules: RuleSet, sha256: String?)? {
        inputs.withLock { inputs in
            inputs.rulesPath = rulesPath
            inputs.dryRun = dryRun
            inputs.rows = rows
            inputs.cache = cachePath.map { DatabaseCacheWriter(path: $0, logger: logger) }
            inputs.databaseSeries = series
            switch build(&inputs, readFiles: true, logger: logger) {
            case .built(let built): return (built.rules, built.sha256)
            case .failed(let errors):
                logger.critical("\(errors) error(s) in \(rulesPath); not starting")
                return nil
            }
        }
    }

    /// An orderly stop: the newest rows that made good rules on disk before the process ends (a
    /// change in progress finishes first; the writer would otherwise still be pausing).
    func flushCache() { inputs.withLock { $0.cache }?.flush() }

    /// SIGUSR1: the files from the disk, the rows as last followed. Returns a status line.
    func reload() -> String {
        let logger = runtime.logger
        return inputs.withLock { inputs in
            let built: Built
            switch build(&inputs, readFiles: true, logger: logger) {
            case .built(let rules): built = rules
            case .failed(let errors):
                runtime.metrics.reloadFailed()
                logger.error("reload of \(inputs.rulesPath) failed with \(errors) error(s); keeping the previous rules")
                return "reload failed with \(errors) error(s); previous rules in force"
            }
            swapIn(built, reload: true, logger: logger)
            logger.info("reloaded \(inputs.rulesPath): \(built.summary)")
            return "rules: \(built.summary)"
        }
    }

    /// New rows from the database: rules from them and the files as last read. True when they are
    /// in force (and cached).
    func databaseChanged(_ rows: DatabaseRows) -> Bool {
        let logger = runtime.logger
        return inputs.withLock { inputs in
            inputs.rows = rows
            guard case .built(let built) = build(&inputs, readFiles: false, logger: logger) else {
                inputs.databaseSeries?.updated(ok: false)
                return false
            }
            swapIn(built, reload: false, logger: logger)
            inputs.databaseSeries?.updated(ok: true)
            inputs.databaseSeries?.rowsInForce(change: rows.changeID, synced: nil)
            logger.info("database change \(rows.changeID) in force: \(built.summary)")
            inputs.cache?.write(rows)
            return true
        }
    }

    struct Built {
        let rules: RuleSet
        let sha256: String?
        let summary: String
    }

    enum Outcome {
        case built(Built)
        case failed(errors: Int)
    }

    /// Parses the rules from `inputs`; logs every diagnostic.
    private func build(_ inputs: inout Inputs, readFiles: Bool, logger: Logger) -> Outcome {
        let usesDatabase = inputs.rows != nil
        let loaded = RuleLoader.load(
            inputs.rulesPath,
            inputs: RuleInputs(
                database: inputs.rows, files: readFiles ? nil : inputs.files,
                lists: readFiles ? DatabaseListParses() : inputs.lists),
            remember: usesDatabase && readFiles)
        inputs.lists = loaded.lists
        for diagnostic in loaded.result.diagnostics {
            logger.log(level: diagnostic.severity == .error ? .error : .warning, "\(diagnostic)")
        }
        guard let parsed = loaded.result.ruleSet else { return .failed(errors: loaded.result.errors.count) }
        if let files = loaded.files { inputs.files = files }
        let rules = inputs.dryRun ? parsed.everyRuleShadow() : parsed
        return .built(
            Built(rules: rules, sha256: loaded.sha256, summary: RuleReport.summary(rules, sha256: loaded.sha256)))
    }

    private func swapIn(_ built: Built, reload: Bool, logger: Logger) {
        let counters = runtime.metrics.rulesLoaded(built.rules, sha256: built.sha256, reload: reload)
        RuleRetirement.retire(runtime.replaceRules(built.rules, counters: counters), logger: logger)
    }

    /// Writes the rows that made the rules in force to the cache (mode 0600: they name users).
    static func writeCache(_ rows: DatabaseRows, to path: String?, logger: Logger) {
        guard let path else { return }
        let bytes = DatabaseCache.encode(rows, saved: Int64(time(nil)))
        do {
            try AtomicFile.write(bytes, to: path, mode: 0o600)
        } catch {
            logger.warning("cannot write the database cache: \(error)")
        }
    }
}

let ruleBuilder = RuleBuilder()
