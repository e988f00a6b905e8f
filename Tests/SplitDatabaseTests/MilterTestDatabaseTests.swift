/// `milter-test explain --database` and `milter-test check --database`, the built binaries as an
/// administrator runs them, against a real PostgreSQL (PrivateCluster): the rows of `pgsql:` lists
/// read from the database as the daemon reads them, a bad row reported with its identity, and the
/// cache served (and said so) when the database cannot be reached.
///
/// Each test has a database of its own in the shared cluster (the follower's suite truncates
/// `mail`'s tables), so the tests run beside the others.

import Foundation
import SplitCore
import Testing

@testable import SplitDatabase

#if canImport(Glibc)
    import Glibc
#endif

/// A finished run of a built binary.
struct BinaryRun: Sendable {
    let status: Int32
    let output: String
    let errors: String
}

/// What a test needs of the cluster and the disk: its database, a settings file for it (the
/// reader's role, password file and cache in the test's folder) and the rule file.
struct DatabaseScene {
    let cluster: PrivateCluster
    /// The database's owner, to change its rows.
    let admin: Connection
    let database: String
    let folder: String

    var settingsPath: String { folder + "/database.conf" }
    var cachePath: String { folder + "/database.cache" }
    var rulesPath: String { folder + "/splitmilter.rules" }

    /// The database as the logs name it, at `port` (default: the cluster's).
    func described(port: Int? = nil) -> String {
        "postgresql://splitmilter_reader@127.0.0.1:\(port ?? cluster.port)/\(database)"
    }

    /// A new database `name` with rows inserted (SQL values lists), and the files: `ruleFile` and
    /// settings for the reader's role.
    static func make(_ name: String, ruleFile: String, members: String, rules: String) async throws -> DatabaseScene {
        let cluster = try await PrivateCluster.get()
        let admin = try await cluster.makeDatabase(name)
        try await admin.query(
            "INSERT INTO splitmilter.list_members VALUES \(members);"
                + " INSERT INTO splitmilter.user_rules VALUES \(rules)")
        let folder = try #require(makeTemporaryFolder("/tmp/mtdb"))
        let scene = DatabaseScene(cluster: cluster, admin: admin, database: name, folder: folder)
        try scene.write(ruleFile, to: scene.rulesPath)
        try scene.write("reader-secret\n", to: folder + "/database.password", mode: 0o600)
        try scene.writeSettings(port: cluster.port)
        return scene
    }

    /// The settings file, with the database at `port` of 127.0.0.1.
    func writeSettings(port: Int) throws {
        try write(
            """
            # the reader's role, as splitmilter has it
            host = 127.0.0.1
            port = \(port)
            dbname = \(database)
            user = splitmilter_reader
            password_file = \(folder)/database.password
            sslmode = disable
            connect_timeout = 5
            cache = \(cachePath)

            """, to: settingsPath)
    }

    func write(_ text: String, to path: String, mode: mode_t = 0o644) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        guard chmod(path, mode) == 0 else { throw ClusterFailure(description: "chmod \(path): errno \(errno)") }
    }

    func remove() { try? FileManager.default.removeItem(atPath: folder) }

    /// Runs the built `name` (milter-test or splitmilter) to its end, in the test's folder.
    func run(_ name: String, _ arguments: [String]) async throws -> BinaryRun {
        let executable = try #require(
            BuiltBinaries.folder, "milter-test is not built next to the test bundle; set MILTER_TEST_BIN_DIR"
        ).appendingPathComponent(name)
        let folder = self.folder
        return try await offThePool {
            let outputPath = folder + "/\(name).out"
            let errorsPath = folder + "/\(name).err"
            _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
            _ = FileManager.default.createFile(atPath: errorsPath, contents: nil)
            let output = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
            let errors = try FileHandle(forWritingTo: URL(fileURLWithPath: errorsPath))
            defer {
                try? output.close()
                try? errors.close()
            }
            let process = Process()
            process.executableURL = executable
            process.arguments = arguments
            process.currentDirectoryURL = URL(fileURLWithPath: folder)
            process.standardInput = FileHandle.nullDevice
            process.standardOutput = output
            process.standardError = errors
            try process.run()
            process.waitUntilExit()
            return BinaryRun(
                status: process.terminationStatus,
                output: try String(contentsOfFile: outputPath, encoding: .utf8),
                errors: try String(contentsOfFile: errorsPath, encoding: .utf8))
        }
    }

    /// Starts the built `name` in the background, its standard error and output in `NAME.log`.
    func start(_ name: String, _ arguments: [String]) throws -> Background {
        let executable = try #require(BuiltBinaries.folder).appendingPathComponent(name)
        let logPath = folder + "/\(name).log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        defer { try? log.close() }
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = log
        process.standardError = log
        try process.run()
        return Background(process: process, logPath: logPath)
    }

    /// `milter-test explain` of the rule file for `recipients`, with `extra` options.
    func explain(_ recipients: [String], _ extra: [String]) async throws -> BinaryRun {
        try await run(
            "milter-test",
            ["explain", rulesPath, "--instance", "mx.example"] + recipients.flatMap { ["--rcpt", $0] } + extra)
    }
}

/// A process started by `DatabaseScene.start`: stopped with SIGTERM (SIGKILL after 10 s).
struct Background: @unchecked Sendable {
    let process: Process
    let logPath: String

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    func stop() async {
        guard process.isRunning else { return }
        process.terminate()
        for _ in 0..<200 where process.isRunning { try? await Task.sleep(for: .milliseconds(50)) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
}

/// The folder of the built milter-test and splitmilter: `MILTER_TEST_BIN_DIR`, or the test
/// bundle's (`swift build` puts them side by side).
enum BuiltBinaries {
    static let folder: URL? = {
        let given = ProcessInfo.processInfo.environment["MILTER_TEST_BIN_DIR"].map { URL(fileURLWithPath: $0) }
        let bundle = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")).map {
            URL(fileURLWithPath: $0).deletingLastPathComponent()
        }
        return [given, bundle].compactMap { $0 }.first { folder in
            FileManager.default.isExecutableFile(atPath: folder.appendingPathComponent("milter-test").path)
        }
    }()
}

@Suite struct MilterTestDatabaseTests {
    static let ruleFile = """
        domain example.org
            copy %u@copy.example
            only pgsql:big
            user pgsql:people

        """

    /// alice has a `user pgsql:people` row; bob is in `only pgsql:big`; carol in neither.
    static let members = "('big', 'bob'), ('other', 'carol')"
    static let rules = "('people', 'alice', 'copy', 'alice@archive.example'), ('other', 'carol', 'rewrite', 'c')"
    static let recipients = ["alice@example.org", "bob@example.org", "carol@example.org"]

    /// What explain prints for `recipients` with those rows: a copy from each list.
    static func explanation(rules: String) -> String {
        """
        rcpt <alice@example.org>: user rule pgsql:people:1 (user alice copy alice@archive.example)
          copy alice@archive.example  [pgsql:people:1 (user alice copy alice@archive.example)]
        rcpt <bob@example.org>: domain rules, selected by \(rules):3 (only pgsql:big)
          copy bob@copy.example  [\(rules):2 (copy %u@copy.example)]
        rcpt <carol@example.org>: excluded by \(rules):3 (only pgsql:big)
        edits at end of message:
          add-rcpt alice@archive.example NOTIFY=NEVER ORCPT=rfc822;alice@example.org
          add-rcpt bob@copy.example NOTIFY=NEVER ORCPT=rfc822;bob@example.org
          add-header X-Splitmilter-Copied: mx.example

        """
    }

    /// A scene with the database `name` and the rows above, and `explain --database` of the
    /// recipients (exit 0 expected).
    static func explained(_ name: String) async throws -> (DatabaseScene, BinaryRun) {
        let scene = try await DatabaseScene.make(name, ruleFile: ruleFile, members: members, rules: rules)
        let explained = try await scene.explain(recipients, ["--database", scene.settingsPath])
        #expect(explained.status == 0, "explain exited \(explained.status): \(explained.errors)")
        return (scene, explained)
    }

    @Test func explainShowsCopiesFromTheDatabasesRows() async throws {
        let (scene, explained) = try await Self.explained("mt_explain")
        defer { scene.remove() }
        #expect(explained.output == Self.explanation(rules: scene.rulesPath), "\(explained.output)")
        // The rows are the database's, and it says which change they are.
        let change = try await scene.admin.query("SELECT last FROM splitmilter.change_counter")
        let last = try #require(change.first?.first ?? nil)
        #expect(
            explained.errors
                .hasPrefix("milter-test: info: database \(scene.described())"),
            "\(explained.errors)")
        #expect(explained.errors.contains(": 2 list rows and 2 rule rows up to change \(last), read in "))

        // A change in the database is in the next explanation: bob leaves `big`, a row for him in
        // `people` copies him elsewhere.
        try await scene.admin.query(
            "DELETE FROM splitmilter.list_members WHERE name = 'bob';"
                + " INSERT INTO splitmilter.user_rules VALUES ('people', 'bob', 'copy', 'bob@elsewhere.example')")
        let changed = try await scene.explain(["bob@example.org"], ["--database", scene.settingsPath])
        #expect(changed.status == 0, "explain exited \(changed.status): \(changed.errors)")
        #expect(
            changed.output.hasPrefix(
                """
                rcpt <bob@example.org>: user rule pgsql:people:2 (user bob copy bob@elsewhere.example)
                  copy bob@elsewhere.example  [pgsql:people:2 (user bob copy bob@elsewhere.example)]

                """), "\(changed.output)")

        // --dry-run still makes every rule a shadow rule, rows' rules too.
        let dry = try await scene.explain(["alice@example.org"], ["--database", scene.settingsPath, "--dry-run"])
        #expect(dry.status == 0, "explain exited \(dry.status): \(dry.errors)")
        #expect(dry.output.contains("shadow copy → alice@archive.example: not sent (shadow)"), "\(dry.output)")

        // Without --database the file cannot be read: that is what the option is for.
        let without = try await scene.explain(["alice@example.org"], [])
        #expect(without.status == 1)
        #expect(without.errors.contains("no database is configured"), "\(without.errors)")
    }

    /// The daemon started on the same settings sends exactly the edits explain lists: the same
    /// rows, the same engine.
    @Test func theDaemonSendsWhatExplainListsFromTheSameRows() async throws {
        let (scene, explained) = try await Self.explained("mt_daemon")
        defer { scene.remove() }
        let predicted = explained.output.split(separator: "\n").drop { !$0.hasPrefix("edits at end of message:") }
            .dropFirst()

        let socket = "unix:" + scene.folder + "/milter.sock"
        // This process's group (no root needed for it); run as root, the daemon must become another user.
        let group = String(cString: try #require(getgrgid(getgid())?.pointee.gr_name))
        let daemon = try scene.start(
            "splitmilter",
            [
                "--rules", scene.rulesPath, "--database", scene.settingsPath, "--socket", socket, "--socket-group",
                group, "--instance", "mx.example", "--log", "stderr",
            ] + (geteuid() == 0 ? ["--user", "nobody"] : []))
        do {
            try await Self.compare(predicted: Array(predicted), scene: scene, socket: socket, daemon: daemon)
        } catch {
            await daemon.stop()
            throw error
        }
        await daemon.stop()
        #expect(daemon.log.contains("2 list rows and 2 rule rows up to change"), "\(daemon.log)")
    }

    /// Waits for the daemon to answer, sends it the envelope and compares its edits.
    static func compare(predicted: [Substring], scene: DatabaseScene, socket: String, daemon: Background) async throws {
        #expect(predicted.count == 3, "\(predicted)")
        var answered = false
        for _ in 0..<100 where !answered {
            answered = try await scene.run("milter-test", ["ping", "--quiet", "--timeout", "1", socket]).status == 0
            if !answered { try await Task.sleep(for: .milliseconds(100)) }
        }
        try #require(answered, "splitmilter did not answer on \(socket): \(daemon.log)")
        let sent = try await scene.run(
            "milter-test", ["send", socket, "--from", "sender@example.com"] + recipients.flatMap { ["--rcpt", $0] })
        #expect(sent.status == 0, "send exited \(sent.status): \(sent.output)\(sent.errors)")
        let edits = sent.output.split(separator: "\n").drop { !$0.hasPrefix("eom -> ") }.dropFirst()
            .prefix { $0.hasPrefix("  ") }
        #expect(Array(edits) == predicted, "explain:\n\(predicted)\nsend:\n\(sent.output)")
    }

    @Test func checkReportsABadRowWithItsIdentityAsTheDaemonDoes() async throws {
        let scene = try await DatabaseScene.make(
            "mt_check", ruleFile: Self.ruleFile, members: Self.members,
            rules: Self.rules + ", ('people', 'frank', 'copy', 'frank@'), ('people', 'zed', 'paste', 'z@x.example')")
        defer { scene.remove() }
        let checked = try await scene.run("milter-test", ["check", scene.rulesPath, "--database", scene.settingsPath])
        #expect(checked.status == 1)
        #expect(checked.output == "\(scene.rulesPath): 2 error(s)\n")
        let diagnostics = checked.errors.split(separator: "\n").filter { !$0.hasPrefix("milter-test: info: ") }
        #expect(
            diagnostics == [
                "pgsql:people:2:23: error: bad template 'frank@': empty domain (row list='people' name='frank' action='copy')",
                "pgsql:people:3:10: error: unknown user action 'paste'; expected 'copy', 'rewrite' or 'allow-clients'"
                    + " (row list='people' name='zed' action='paste')",
            ], "\(checked.errors)")

        // splitmilter --check reads the same rows and reports the same errors.
        let daemon = try await scene.run(
            "splitmilter", ["--check", "--rules", scene.rulesPath, "--database", scene.settingsPath])
        #expect(daemon.status == 1)
        for diagnostic in diagnostics { #expect(daemon.errors.contains(diagnostic), "\(daemon.errors)") }

        // Fixed, both say ok with the same summary.
        try await scene.admin.query("DELETE FROM splitmilter.user_rules WHERE name IN ('frank', 'zed')")
        let fixed = try await scene.run("milter-test", ["check", scene.rulesPath, "--database", scene.settingsPath])
        #expect(fixed.status == 0, "\(fixed.errors)")
        let fixedDaemon = try await scene.run(
            "splitmilter", ["--check", "--rules", scene.rulesPath, "--database", scene.settingsPath])
        #expect(fixedDaemon.status == 0, "\(fixedDaemon.errors)")
        #expect(fixed.output.hasPrefix("\(scene.rulesPath): ok: 1 domain"), "\(fixed.output)")
        #expect(fixed.output == fixedDaemon.output, "milter-test: \(fixed.output)splitmilter: \(fixedDaemon.output)")
    }

    @Test func theCacheIsServedAndSaidSoWhenTheDatabaseIsDown() async throws {
        let scene = try await DatabaseScene.make(
            "mt_cache", ruleFile: Self.ruleFile, members: Self.members, rules: Self.rules)
        defer { scene.remove() }
        // The cache as the daemon writes it: the database's rows, saved an hour ago.
        var settings = scene.cluster.readerSettings
        settings.dbname = scene.database
        let link = DatabaseLink(settings: settings, password: "reader-secret")
        let rows = try await offThePool { try link.readAll() }
        let saved = Int64(time(nil)) - 3600
        try Data(DatabaseCache.encode(rows, saved: saved)).write(to: URL(fileURLWithPath: scene.cachePath))
        // The database gone: nothing listens where the settings say it is.
        let port = try freePort()
        try scene.writeSettings(port: port)

        let explained = try await scene.explain(Self.recipients, ["--database", scene.settingsPath])
        #expect(explained.status == 0, "explain exited \(explained.status): \(explained.errors)")
        #expect(explained.output == Self.explanation(rules: scene.rulesPath), "\(explained.output)")
        let lines = explained.errors.split(separator: "\n").map(String.init)
        #expect(lines.count == 1, "\(explained.errors)")
        let said = try #require(lines.first)
        #expect(
            said.hasPrefix(
                "milter-test: warning: cannot reach the database \(scene.described(port: port))"),
            "\(said)")
        #expect(said.contains("Connection refused"), "\(said)")
        #expect(said.contains("); serving from the cache \(scene.cachePath): change \(rows.changeID), cached "))
        let age = said.split(separator: " ").dropLast(2).last.flatMap { Int($0) }
        #expect(said.hasSuffix(" s ago") && age.map { (3600...3660).contains($0) } == true, "\(said)")

        let checked = try await scene.run("milter-test", ["check", scene.rulesPath, "--database", scene.settingsPath])
        #expect(checked.status == 0, "\(checked.errors)")
        #expect(checked.errors.contains("; serving from the cache \(scene.cachePath): change \(rows.changeID)"))

        // Without the cache there are no rows: exit 1, saying why.
        try FileManager.default.removeItem(atPath: scene.cachePath)
        let refused = try await scene.explain(Self.recipients, ["--database", scene.settingsPath])
        #expect(refused.status == 1)
        #expect(refused.output == "")
        #expect(
            refused.errors.hasPrefix("milter-test: critical: cannot reach the database \(scene.described(port: port))"),
            "\(refused.errors)")
        #expect(
            refused.errors.hasSuffix(
                "and no cache to serve from: \(scene.cachePath): No such file or directory; no rows to check the rules with\n"
            ), "\(refused.errors)")
    }

    @Test func settingsWithErrorsOrAnOpenPasswordFileGiveNoRows() async throws {
        let scene = try await DatabaseScene.make(
            "mt_settings", ruleFile: Self.ruleFile, members: Self.members, rules: Self.rules)
        defer { scene.remove() }
        try scene.write("reader-secret\n", to: scene.folder + "/database.password", mode: 0o644)
        let open = try await scene.run("milter-test", ["check", scene.rulesPath, "--database", scene.settingsPath])
        #expect(open.status == 1)
        #expect(open.output == "")
        #expect(open.errors.contains("has mode 0644: it must be readable by its owner alone"), "\(open.errors)")

        try scene.write("host = 127.0.0.1\npassword = secret\n", to: scene.settingsPath)
        let bad = try await scene.explain(["alice@example.org"], ["--database", scene.settingsPath])
        #expect(bad.status == 1)
        #expect(
            bad.errors.hasSuffix(
                "milter-test: critical: errors in the database settings \(scene.settingsPath); no rows to check the rules with\n"
            ), "\(bad.errors)")
    }
}
