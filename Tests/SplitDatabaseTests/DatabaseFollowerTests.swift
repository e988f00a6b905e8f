/// DatabaseFollower and PostgresLink against a real PostgreSQL (a private cluster, PrivateCluster):
/// reading every row, following the change log (docs/postgresql/schema.sql) incrementally and
/// whole, notifications, and the reader's connection (refused with a wrong password, read-only).
///
/// The tests share one database, so the suite runs one test at a time; each starts from empty
/// tables. The other suites still run beside it.

import Foundation
import Logging
import SplitCore
import Testing

@testable import SplitDatabase

/// What the follower told the daemon.
final class RecordingObserver: DatabaseObserver, @unchecked Sendable {
    struct Event: Sendable {
        let rows: DatabaseRows
        let changes: Int
        let readWhole: Bool
    }

    private let lock = NSLock()
    private var recorded: [Event] = []
    private var answered: [Bool] = []

    var events: [Event] { lock.withLock { recorded } }
    var reachability: [Bool] { lock.withLock { answered } }

    func rowsChanged(_ rows: DatabaseRows, changes: Int, readWhole: Bool) -> Bool {
        lock.withLock { recorded.append(Event(rows: rows, changes: changes, readWhole: readWhole)) }
        return true
    }

    func reachability(up: Bool, at time: Double) {
        lock.withLock { answered.append(up) }
    }
}

/// Values that are hard to carry through COPY's text format and SQL: tabs, newlines, backslashes,
/// other control characters, a literal `\N`, bytes beyond ASCII (one letter in both Unicode forms),
/// quotes, blanks at the ends, the empty string.
enum Awkward {
    static let lists = ["alpha", "beta list", #"\N"#, "ünï\tcode"]
    static let names = [
        "bob@example.org", "tab\there", #"back\slash"#, "new\nline", "cr\rreturn", "\u{08}\u{0C}\u{0B}",
        #"\N"#, #"\\N"#, #"\t"#, #"\101"#, "", " lead", "trail ", "quote'd", "café@exämple.org",
        "cafe\u{301}@exämple.org", "日本@例え.jp", "🦆@duck.example", "x\u{7F}y", "\u{01}ctl", #"\"#,
    ]
    static let actions = ["copy", "rewrite", "ex\tra", #"\N"#]
    static let targets = [
        "archive@example.org", "a@example.org, b@example.org", "new\nline\ttab\\", "", #"\N"#, "ünï 🦆",
    ]
}

/// A SQL string literal (standard_conforming_strings: only the quote is special).
func literal(_ text: String) -> String { "'" + text.replacingOccurrences(of: "'", with: "''") + "'" }

/// The rows one line each, every Unicode scalar beyond printable ASCII escaped, in the rows' own
/// order: equal dumps are byte-for-byte equal rows (String's `==` would call the two forms of
/// "café" equal), and a difference reads as text.
func dump(_ rows: DatabaseRows) -> [String] {
    func text(_ value: String) -> String {
        "'" + value.unicodeScalars.map { $0.escaped(asASCII: true) }.joined() + "'"
    }
    var lines = ["change \(rows.changeID)"]
    for list in rows.members.keys.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }) {
        for name in rows.members[list] ?? [] { lines.append("member \(text(list)) \(text(name))") }
    }
    for list in rows.rules.keys.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }) {
        for rule in rows.rules[list] ?? [] {
            lines.append("rule \(text(list)) \(text(rule.name)) \(text(rule.action)) \(text(rule.targets))")
        }
    }
    return lines
}

/// A small, seeded random number generator (SplitMix64), so a failing run can be repeated.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite(.serialized) struct DatabaseFollowerTests {
    static let members = "splitmilter.list_members"
    static let rules = "splitmilter.user_rules"

    /// Empty tables and an empty change log (the counter goes on).
    func reset(_ admin: Connection) async throws {
        try await admin.query("TRUNCATE \(Self.members), \(Self.rules); DELETE FROM splitmilter.changes")
    }

    /// Seeded tables with an empty log, the admin's and the follower's connections, and a
    /// follower telling a new observer.
    func following() async throws -> (
        cluster: PrivateCluster, admin: Connection, connection: Connection, observer: RecordingObserver,
        follower: DatabaseFollower
    ) {
        let cluster = try await PrivateCluster.get()
        let admin = try await cluster.admin()
        try await reset(admin)
        _ = try await seed(admin)
        var logger = Logger(label: "DatabaseFollowerTests")
        logger.logLevel = .warning
        let observer = RecordingObserver()
        let follower = DatabaseFollower(link: cluster.readerLink(), observer: observer, logger: logger)
        return (cluster, admin, try await cluster.reader(), observer, follower)
    }

    func insertMember(_ list: String, _ name: String) -> String {
        "INSERT INTO \(Self.members) VALUES (\(literal(list)), \(literal(name))) ON CONFLICT DO NOTHING"
    }

    func upsertRule(_ list: String, _ name: String, _ action: String, _ targets: String) -> String {
        "INSERT INTO \(Self.rules) VALUES (\(literal(list)), \(literal(name)), \(literal(action)), \(literal(targets)))"
            + " ON CONFLICT (list, name, action) DO UPDATE SET targets = EXCLUDED.targets"
    }

    /// Every awkward member and a rule for most names, as admin; the rows expected.
    func seed(_ admin: Connection) async throws -> (
        members: [(list: String, name: String)], rules: [(list: String, rule: DatabaseRows.Rule)]
    ) {
        var members: [(list: String, name: String)] = []
        var rules: [(list: String, rule: DatabaseRows.Rule)] = []
        var statements: [String] = []
        for (index, list) in Awkward.lists.enumerated() {
            // Every name in the first two lists, two in three elsewhere.
            for (number, name) in Awkward.names.enumerated() where index < 2 || (number + index) % 3 != 0 {
                members.append((list, name))
                statements.append(insertMember(list, name))
            }
            for (number, name) in Awkward.names.enumerated() where (number + index) % 2 == 0 {
                let action = Awkward.actions[(number + index) % Awkward.actions.count]
                let targets = Awkward.targets[number % Awkward.targets.count]
                rules.append((list, DatabaseRows.Rule(name: name, action: action, targets: targets)))
                statements.append(upsertRule(list, name, action, targets))
            }
        }
        // One transaction, one statement per row.
        try await admin.query((["BEGIN"] + statements + ["COMMIT"]).joined(separator: ";\n"))
        return (members, rules)
    }

    @Test func readAllReturnsExactlyTheRowsInserted() async throws {
        let cluster = try await PrivateCluster.get()
        let admin = try await cluster.admin()
        try await reset(admin)
        let empty = try await (try await cluster.reader()).readAll()
        #expect(empty.memberCount == 0 && empty.ruleCount == 0)
        #expect(empty.changeID == (try await admin.lastChange()))

        let (members, rules) = try await seed(admin)
        let last = try await admin.lastChange()
        let link = cluster.readerLink()
        let rows = try await offThePool { try link.readAll() }
        let expected = DatabaseRows(changeID: last, members: members, rules: rules)
        #expect(rows.changeID == last)
        // Lists no rule file can name ("beta list", `\N`, "ünï\tcode") are not kept.
        #expect(rows.memberCount == expected.memberCount && expected.memberCount < members.count)
        #expect(rows.ruleCount == expected.ruleCount && expected.ruleCount < rules.count)
        #expect(dump(rows) == dump(expected))
        #expect(rows == expected)
        // Spot checks: a name that is `\N` literally (not NULL), its escaped twin, a newline.
        #expect(rows.members["alpha"]?.contains(#"\N"#) == true)
        #expect(rows.members["alpha"]?.contains(#"\\N"#) == true)
        #expect(rows.members["alpha"]?.contains("new\nline") == true)
        #expect(rows.members["beta list"] == nil && rows.members[#"\N"#] == nil && rows.members["ünï\tcode"] == nil)
        let names = Set(rows.members.values.flatMap { $0.map { Array($0.utf8) } })
        #expect(names.contains(Array("café@exämple.org".utf8)) && names.contains(Array("cafe\u{301}@exämple.org".utf8)))
        let awkwardTargets = expected.rules.values.flatMap { $0 }.contains { $0.targets == "new\nline\ttab\\" }
        #expect(rows.rules.values.flatMap { $0 }.contains { $0.targets == "new\nline\ttab\\" } == awkwardTargets)
    }

    /// The random writes of one round, as admin: single and multi-row inserts, upserts, updates
    /// that change or swap keys, deletes of one and many rows, transactions of several statements,
    /// a rolled back transaction and savepoint, statements that fail or write nothing.
    func randomWrites(_ random: inout SplitMix64, count: Int) -> [String] {
        func pick<T>(_ values: [T]) -> T { values[Int.random(in: 0..<values.count, using: &random)] }
        var list: String { pick(Awkward.lists) }
        var name: String { pick(Awkward.names) }
        var action: String { pick(Awkward.actions) }
        var targets: String { pick(Awkward.targets) }
        var statements: [String] = []
        for _ in 0..<count {
            let (l, n, m) = (list, name, name)
            switch Int.random(in: 0..<16, using: &random) {
            case 0: statements.append(insertMember(l, n))
            case 1:
                let values = (0..<Int.random(in: 2...6, using: &random)).map { _ in
                    "(\(literal(list)), \(literal(name)))"
                }
                statements.append(
                    "INSERT INTO \(Self.members) VALUES \(values.joined(separator: ", ")) ON CONFLICT DO NOTHING")
            case 2: statements.append(upsertRule(l, n, action, targets))
            case 3:
                let values = (0..<Int.random(in: 2...5, using: &random)).map { _ in
                    "(\(literal(list)), \(literal(name)), \(literal(action)), \(literal(targets)))"
                }
                statements.append(
                    "INSERT INTO \(Self.rules) VALUES \(values.joined(separator: ", ")) ON CONFLICT DO NOTHING")
            case 4:
                statements.append(
                    "UPDATE \(Self.members) SET name = \(literal(m)) WHERE list = \(literal(l)) AND name = \(literal(n))"
                )
            case 5:
                // Moves a whole list (fails when a name is in both).
                statements.append("UPDATE \(Self.members) SET list = \(literal(list)) WHERE list = \(literal(l))")
            case 6:
                // Swaps two keys in one statement (fails where both exist: unique checks are per row).
                statements.append(
                    "UPDATE \(Self.members) SET name = CASE name WHEN \(literal(n)) THEN \(literal(m))"
                        + " ELSE \(literal(n)) END WHERE list = \(literal(l)) AND name IN (\(literal(n)), \(literal(m)))"
                )
            case 7:
                statements.append(
                    "UPDATE \(Self.rules) SET targets = targets || \(literal(targets)) WHERE list = \(literal(l))")
            case 8:
                statements.append(
                    "UPDATE \(Self.rules) SET name = \(literal(m)), action = \(literal(action))"
                        + " WHERE list = \(literal(l)) AND name = \(literal(n))")
            case 9:
                statements.append("DELETE FROM \(Self.members) WHERE list = \(literal(l)) AND name = \(literal(n))")
            case 10:
                statements.append("DELETE FROM \(Self.members) WHERE list = \(literal(l)) AND name < \(literal(n))")
            case 11: statements.append("DELETE FROM \(Self.rules) WHERE name = \(literal(n))")
            case 12:
                statements.append(
                    "BEGIN; \(insertMember(l, n)); DELETE FROM \(Self.members) WHERE list = \(literal(list));"
                        + " \(upsertRule(l, m, action, targets)); ROLLBACK")
            case 13:
                statements.append(
                    "BEGIN; \(insertMember(l, n)); SAVEPOINT s; DELETE FROM \(Self.members) WHERE list = \(literal(l));"
                        + " DELETE FROM \(Self.rules); ROLLBACK TO SAVEPOINT s; \(upsertRule(l, m, action, targets));"
                        + " COMMIT")
            case 14:
                statements.append(
                    "BEGIN; \(insertMember(l, n)); UPDATE \(Self.rules) SET list = \(literal(list))"
                        + " WHERE name = \(literal(m)); DELETE FROM \(Self.members) WHERE name = \(literal(m)); COMMIT")
            default:
                // Writes nothing, or fails (a duplicate key without ON CONFLICT).
                statements.append("DELETE FROM \(Self.members) WHERE list = 'no such list'")
                statements.append("INSERT INTO \(Self.members) VALUES (\(literal(l)), \(literal(n)))")
            }
        }
        return statements
    }

    @Test func followingTheLogEqualsReadingWhole() async throws {
        let (cluster, admin, connection, observer, follower) = try await following()
        let fresh = try await cluster.reader()
        var rows = try await connection.readAll()
        // DATABASE_TEST_SEED=N repeats a run (its seed is in every failure's message).
        let seed =
            ProcessInfo.processInfo.environment["DATABASE_TEST_SEED"].flatMap { UInt64($0) }
            ?? UInt64.random(in: 0...UInt64.max)
        var random = SplitMix64(state: seed)
        var applied = 0
        for round in 0..<8 {
            let before = rows.changeID
            let eventsBefore = observer.events.count
            _ = try await admin.run(randomWrites(&random, count: 25))
            rows = try await connection.sync(follower, rows)
            let whole = try await fresh.readAll()
            let context = Comment(rawValue: "seed \(seed), round \(round)")
            #expect(dump(rows) == dump(whole), context)
            #expect(rows.changeID == whole.changeID, context)
            #expect(observer.reachability.last == true, context)
            let events = observer.events.dropFirst(eventsBefore)
            if whole.changeID == before {
                #expect(events.isEmpty, context)
                continue
            }
            let event = try #require(events.count == 1 ? events.first : nil, context)
            #expect(event.readWhole == false, context)
            #expect(event.changes == Int(whole.changeID - before), context)
            #expect(dump(event.rows) == dump(whole), context)
            applied += event.changes
            // Nothing new: no hand-over.
            rows = try await connection.sync(follower, rows)
            #expect(observer.events.count == eventsBefore + 1, context)
        }
        #expect(applied > 100, "seed \(seed): only \(applied) changes were followed")
        #expect(observer.events.allSatisfy { !$0.readWhole })
    }

    /// Writes `count` members to list `pruned`, one change each.
    func writes(_ admin: Connection, count: Int, from first: Int = 0) async throws {
        let statements = (first..<first + count).map { insertMember("pruned", "user\($0)@example.org") }
        #expect(try await admin.run(statements) == count)
    }

    @Test(arguments: ["first", "middle", "last", "all"])
    func aPrunedLogIsReadWhole(pruning which: String) async throws {
        let (cluster, admin, connection, observer, follower) = try await following()
        var rows = try await connection.readAll()
        try await writes(admin, count: 6)
        // The follower keeps up, then falls behind by 6 changes, some of which are pruned.
        rows = try await connection.sync(follower, rows)
        #expect(observer.events.last?.readWhole == false)
        try await writes(admin, count: 6, from: 6)
        let applied = rows.changeID
        let condition =
            switch which {
            case "first": "id = \(applied + 1)"
            case "middle": "id IN (\(applied + 3), \(applied + 4))"
            case "last": "id = \(applied + 6)"
            default: "id > \(applied)"
            }
        #expect(try await admin.query("DELETE FROM splitmilter.changes WHERE \(condition) RETURNING id").count >= 1)
        rows = try await connection.sync(follower, rows)
        let whole = try await (try await cluster.reader()).readAll()
        #expect(whole.changeID == applied + 6)
        #expect(dump(rows) == dump(whole), "pruned \(which)")
        #expect(observer.events.count == 2)
        #expect(observer.events.last?.readWhole == true, "pruned \(which)")
        #expect(rows.members["pruned"]?.count == 12)
    }

    @Test func aTruncateIsAReloadAndReadWhole() async throws {
        let (cluster, admin, connection, observer, follower) = try await following()
        var rows = try await connection.readAll()
        try await writes(admin, count: 3)
        try await admin.query("TRUNCATE \(Self.members)")
        let reload = try await admin.query(
            "SELECT kind, op, list, name, action, targets FROM splitmilter.changes ORDER BY id DESC LIMIT 1")
        #expect(reload == [["all", "reload", nil, nil, nil, nil]])
        try await writes(admin, count: 2, from: 3)
        rows = try await connection.sync(follower, rows)
        let whole = try await (try await cluster.reader()).readAll()
        #expect(dump(rows) == dump(whole))
        #expect(rows.members["pruned"] == ["user3@example.org", "user4@example.org"])
        #expect(rows.memberCount == 2 && rows.ruleCount > 0)
        #expect(observer.events.count == 1)
        #expect(observer.events.last?.readWhole == true)
    }

    @Test func waitingForANotification() async throws {
        let cluster = try await PrivateCluster.get()
        let admin = try await cluster.admin()
        try await reset(admin)
        let connection = try await cluster.reader()
        try await connection.query("LISTEN splitmilter")
        // Nothing committed: false after the timeout.
        var started = Date()
        #expect(try await connection.waitForNotification(timeout: 0.3) == false)
        var elapsed = Date().timeIntervalSince(started)
        #expect(elapsed >= 0.25 && elapsed < 2, "waited \(elapsed) s")
        // A rolled back transaction notifies nobody.
        try await admin.query("BEGIN; \(insertMember("n", "rolled@back")); ROLLBACK")
        #expect(try await connection.waitForNotification(timeout: 0.2) == false)
        // A commit on another connection while waiting: woken soon after it.
        started = Date()
        async let woken = connection.waitForNotification(timeout: 20)
        try await Task.sleep(for: .milliseconds(200))
        try await admin.query("BEGIN; \(insertMember("n", "a")); \(insertMember("n", "b")); COMMIT")
        #expect(try await woken == true)
        elapsed = Date().timeIntervalSince(started)
        #expect(elapsed >= 0.15 && elapsed < 3, "woken after \(elapsed) s")
        // Consumed: nothing more to wait for. A commit before the wait is found at once.
        #expect(try await connection.waitForNotification(timeout: 0.2) == false)
        try await admin.query(insertMember("n", "c"))
        started = Date()
        #expect(try await connection.waitForNotification(timeout: 20) == true)
        elapsed = Date().timeIntervalSince(started)
        #expect(elapsed < 3, "woken after \(elapsed) s")
    }

    @Test func aWrongPasswordOrNoServerIsAnError() async throws {
        let cluster = try await PrivateCluster.get()
        let wrong = cluster.readerLink(password: "not-the-secret")
        let refused = await #expect(throws: DatabaseError.self) { try await offThePool { try wrong.readAll() } }
        #expect(
            refused?.description.contains("password authentication failed") == true, "\(String(describing: refused))")
        #expect(refused?.description.contains("not-the-secret") == false)

        // A port where nothing listens: refused at once, not after connect_timeout.
        var settings = cluster.readerSettings
        settings.port = try freePort()
        let nowhere = DatabaseLink(settings: settings, password: "reader-secret")
        let started = Date()
        let down = await #expect(throws: DatabaseError.self) { try await offThePool { try nowhere.readAll() } }
        #expect(Date().timeIntervalSince(started) < 2)
        #expect(down?.description.contains("\(settings.port)") == true, "\(String(describing: down))")
        #expect(down?.description.contains("Connection refused") == true, "\(String(describing: down))")
    }

    @Test func theReadersConnectionIsReadOnly() async throws {
        let cluster = try await PrivateCluster.get()
        let admin = try await cluster.admin()
        try await reset(admin)
        let connection = try await cluster.reader()
        #expect(try await connection.query("SHOW default_transaction_read_only") == [["on"]])
        let last = try await admin.lastChange()
        await #expect(throws: DatabaseError.self) {
            try await connection.query("INSERT INTO \(Self.members) VALUES ('l', 'n')")
        }
        await #expect(throws: DatabaseError.self) {
            try await connection.query("DELETE FROM splitmilter.changes")
        }
        await #expect(throws: DatabaseError.self) {
            try await connection.query("UPDATE splitmilter.change_counter SET last = last + 1")
        }
        // Even what any role may do (a temporary table) is refused: the session is read-only.
        let temporary = await #expect(throws: DatabaseError.self) {
            try await connection.query("CREATE TEMP TABLE t (x int)")
        }
        #expect(temporary?.description.contains("read-only transaction") == true, "\(String(describing: temporary))")
        // Nothing was written, and the connection still reads.
        #expect(try await admin.lastChange() == last)
        #expect(try await connection.query("SELECT count(*) FROM \(Self.members)") == [["0"]])
    }
}
