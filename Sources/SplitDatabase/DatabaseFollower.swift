/// Follows the database's rows (docs/postgresql/schema.sql) on a thread of its own, and hands each
/// new version of them to the daemon, which builds and swaps in new rules exactly as a reload does.
///
/// Invariants:
/// - Never on the message path: libmilter's threads never wait on the database; they only see the
///   rules the last good rows made.
/// - Prompt: the follower LISTENs on channel `splitmilter` (every change notifies at commit) and
///   reads the changes after the last one it applied, in id order; ids are dense and handed out in
///   commit order, so an id it has not seen is one that is not committed yet, and a missing id is
///   one pruned (it then reads everything again, as for a TRUNCATE).
/// - Incremental: a change of one row costs one row read and one sorted insert (`DatabaseRows`), not
///   a re-read of a million-row list; more than `fullReadThreshold` pending changes are read whole.
/// - Down is not fatal: on any error the connection is dropped and made again with backoff (1 s
///   doubling to 30 s); the rules in force stay. Every `pollInterval` without a notification it
///   still asks for changes, which also tells it the database is there.

import Glibc
import Logging
import SplitCore
import SplitSystem

public struct DatabaseLink: Sendable {
    public let settings: DatabaseSettings
    /// From `password_file`, read once at start (before root is given up).
    let password: String?

    public init(settings: DatabaseSettings, password: String?) {
        self.settings = settings
        self.password = password
    }

    func connect() throws(DatabaseError) -> PostgresLink {
        try PostgresLink(parameters: settings.connectionParameters(password: password))
    }

    /// Connects and reads every row, in one consistent snapshot (for start-up).
    public func readAll() throws(DatabaseError) -> DatabaseRows { try readAllReporting().rows }

    /// `readAll`, and how the connection travelled (`PostgresLink.transport`) for the log line.
    public func readAllReporting() throws(DatabaseError) -> (rows: DatabaseRows, transport: String) {
        let connection = try connect()
        return (try DatabaseFollower.readAll(connection), connection.transport)
    }
}

/// What the follower tells the daemon.
public protocol DatabaseObserver: Sendable {
    /// New rows (after a change, or read whole). Return true when they made good rules and are
    /// in force (they are then cached), false when the rules they make have errors (logged there).
    func rowsChanged(_ rows: DatabaseRows, changes: Int, readWhole: Bool) -> Bool
    /// The database answered (up, at `time`, Unix seconds) or the connection failed (down).
    func reachability(up: Bool, at time: Double)
}

public final class DatabaseFollower: Sendable {
    public static let pollInterval = 10.0
    public static let fullReadThreshold: Int64 = 100_000

    let link: DatabaseLink
    let observer: any DatabaseObserver
    let logger: Logger

    public init(link: DatabaseLink, observer: any DatabaseObserver, logger: Logger) {
        self.link = link
        self.observer = observer
        self.logger = logger
    }

    /// Starts the thread, following on from `rows` (read at start, or the cache's).
    public func start(from rows: DatabaseRows) throws(DatabaseError) {
        let rc = DetachedThread.start { [self] in run(from: rows) }
        guard rc == 0 else { throw DatabaseError("cannot start the database thread: error \(rc)") }
    }

    func run(from initial: DatabaseRows) {
        var rows = initial
        // The change whose rows are in force: `rows` may be ahead, with rows that have errors.
        var inForce = initial.changeID
        var backoff = 1.0
        var downSince: Double?
        var lastComplaint = 0.0
        while true {
            do {
                let connection = try link.connect()
                try connection.query("LISTEN splitmilter")
                if let since = downSince {
                    let seconds = Int(UnixTime.now() - since)
                    logger.notice(
                        "database \(link.settings.description) reachable again after \(seconds) s, \(connection.transport); catching up from change \(rows.changeID) (rules in force: change \(inForce))"
                    )
                }
                downSince = nil
                backoff = 1
                try follow(connection, &rows, &inForce)
            } catch {
                let now = UnixTime.now()
                observer.reachability(up: false, at: now)
                if downSince == nil {
                    downSince = now
                    lastComplaint = now
                    logger.error(
                        "database \(link.settings.description): \(error); keeping the rules of change \(inForce), reconnecting with backoff"
                    )
                } else if now - lastComplaint >= 60, let since = downSince {
                    lastComplaint = now
                    let seconds = Int(now - since)
                    logger.warning(
                        "database still unreachable after \(seconds) s (\(error)); the rules in force are those of change \(inForce)"
                    )
                }
                usleep(UInt32(backoff * 1_000_000))
                backoff = min(backoff * 2, 30)
            }
        }
    }

    /// Applies what is pending, then waits for notifications; returns only by throwing.
    func follow(_ connection: PostgresLink, _ rows: inout DatabaseRows, _ inForce: inout Int64)
        throws(DatabaseError)
    {
        while true {
            if try sync(connection, &rows) { inForce = rows.changeID }
            _ = try connection.waitForNotification(timeout: Self.pollInterval)
        }
    }

    /// Brings `rows` up to the database's last committed change and hands them on when they moved;
    /// true when the observer put them in force.
    @discardableResult
    func sync(_ connection: PostgresLink, _ rows: inout DatabaseRows) throws(DatabaseError) -> Bool {
        let started = UnixTime.now()
        guard let text = try connection.query("SELECT last FROM splitmilter.change_counter").first?.first ?? nil,
            let last = Int64(text)
        else { throw DatabaseError("splitmilter.change_counter has no row (see docs/postgresql/schema.sql)") }
        observer.reachability(up: true, at: started)
        guard last != rows.changeID else { return false }
        var readWhole = last < rows.changeID || last - rows.changeID > Self.fullReadThreshold
        var applied = 0
        if !readWhole {
            var next = rows.changeID
            var candidate = rows
            // Bounded on both sides: with statistics from before a bulk load (autovacuum has not
            // analyzed the log yet), `id > N` alone was planned as a scan of the whole log, 50 ms
            // a change with a million old changes in it; a closed range goes through the index.
            try connection.copyRows(
                "SELECT id, kind, op, list, name, action, targets FROM splitmilter.changes"
                    + " WHERE id > \(rows.changeID) AND id <= \(last) ORDER BY id"
            ) { (fields) throws(DatabaseError) in
                guard !readWhole else { return }
                guard let id = fields.first.flatMap({ $0 }).flatMap(Int64.init), id == next + 1 else {
                    // A gap: changes were pruned. Only the whole rows can say what they did.
                    readWhole = true
                    return
                }
                guard let change = Self.change(fields) else {
                    throw DatabaseError("change \(id) is not one splitmilter knows: \(fields)")
                }
                if !candidate.apply(change) { readWhole = true }
                candidate.changeID = id
                next = id
                applied += 1
            }
            // Every id up to `last` was committed when the counter was read, so one not found
            // (the newest ones, or all of them) was pruned: only the whole rows can say what it did.
            if !readWhole && next < last { readWhole = true }
            if !readWhole { rows = candidate }
        }
        if readWhole {
            rows = try Self.readAll(connection)
        }
        let accepted = observer.rowsChanged(rows, changes: applied, readWhole: readWhole)
        let milliseconds = Int((UnixTime.now() - started) * 1000)
        let what = readWhole ? "read every row again" : "applied \(applied) change(s)"
        if accepted {
            logger.info("database: \(what) up to change \(rows.changeID) in \(milliseconds) ms")
        } else {
            logger.error(
                "database: \(what) up to change \(rows.changeID); the rows have errors, the rules in force stay")
        }
        return accepted
    }

    /// Every row, with the id of the last change they include: one REPEATABLE READ transaction.
    static func readAll(_ connection: PostgresLink) throws(DatabaseError) -> DatabaseRows {
        try connection.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        do throws(DatabaseError) {
            guard let text = try connection.query("SELECT last FROM splitmilter.change_counter").first?.first ?? nil,
                let last = Int64(text)
            else { throw DatabaseError("splitmilter.change_counter has no row (see docs/postgresql/schema.sql)") }
            var members: [(list: String, name: String)] = []
            var rules: [(list: String, rule: DatabaseRows.Rule)] = []
            // In byte order (the key columns' own, docs/postgresql/schema.sql): the rows need no sort here.
            try connection.copyRows(
                #"SELECT list, name FROM splitmilter.list_members ORDER BY list COLLATE "C", name COLLATE "C""#
            ) {
                (fields) throws(DatabaseError) in
                guard fields.count == 2, let list = fields[0], let name = fields[1] else {
                    throw DatabaseError("list_members: a row with NULLs")
                }
                members.append((list, name))
            }
            try connection.copyRows(
                #"SELECT list, name, action, targets FROM splitmilter.user_rules"#
                    + #" ORDER BY list COLLATE "C", name COLLATE "C", action COLLATE "C""#
            ) {
                (fields) throws(DatabaseError) in
                guard fields.count == 4, let list = fields[0], let name = fields[1], let action = fields[2],
                    let targets = fields[3]
                else { throw DatabaseError("user_rules: a row with NULLs") }
                rules.append((list, DatabaseRows.Rule(name: name, action: action, targets: targets)))
            }
            try connection.query("COMMIT")
            return DatabaseRows(changeID: last, members: members, rules: rules)
        } catch {
            _ = try? connection.query("ROLLBACK")
            throw error
        }
    }

    /// A `changes` row (id, kind, op, list, name, action, targets) as a change; nil if unknown.
    static func change(_ fields: [String?]) -> DatabaseRows.Change? {
        guard fields.count == 7, let kind = fields[1], let op = fields[2] else { return nil }
        switch (kind, op, fields[3], fields[4], fields[5], fields[6]) {
        case ("member", "set", let list?, let name?, _, _): return .setMember(list: list, name: name)
        case ("member", "delete", let list?, let name?, _, _): return .deleteMember(list: list, name: name)
        case ("rule", "set", let list?, let name?, let action?, let targets?):
            return .setRule(list: list, DatabaseRows.Rule(name: name, action: action, targets: targets))
        case ("rule", "delete", let list?, let name?, let action?, _):
            return .deleteRule(list: list, name: name, action: action)
        case ("all", "reload", _, _, _, _): return .reload
        default: return nil
        }
    }
}
