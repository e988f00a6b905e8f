/// `milter-test bench` against the real splitmilter, for correctness only: every message is
/// counted, every answer matches `explain`, and a wrong answer or a dead milter fails the run.
/// No speed is asserted. Also one session carrying several messages, through MilterClient.

import Foundation
import MilterClient
import MilterProtocol
import Testing

@Suite(.enabled(if: Paths.binaries != nil, "milter-test and splitmilter are not built next to the test bundle"))
struct BenchTests {
    static let rules = "examples/splitmilter.rules"

    /// Each message: a user with a copy, dave (excluded) and carol.smith (rewritten, NOTIFY kept).
    static let templates = [
        "--rcpt-template", "user%n@example.org", "--rcpt-template", "dave@example.org",
        "--rcpt-template", "carol.smith@example.net NOTIFY=SUCCESS",
    ]

    static func daemon() async throws -> RunningMilter {
        try await RunningMilter.splitmilter(
            rules: rules, in: Paths.repository, instance: "bench.example", extra: ["--log-level", "warning"])
    }

    @Test func everyMessageMatchesExplain() async throws {
        let bench = try await BenchTests.daemon().run { daemon in
            try await Processes.run(
                try Paths.binary("milter-test"),
                ["bench", daemon.socket, "-c", "4", "-n", "200", "-k", "3", "--messages-per-conn", "5"]
                    + BenchTests.templates + ["--rules", BenchTests.rules, "--instance", "bench.example", "--json"])
        }
        #expect(bench.status == 0, "bench exited \(bench.status):\n\(bench.output)\(bench.errors)")
        let report = try SendJSON.object(bench.output)
        #expect(report["messages"] as? Int == 200)
        #expect(report["recipients"] as? Int == 600)
        #expect(report["failedMessages"] as? Int == 0)
        #expect(report["protocolErrors"] as? Int == 0)
        #expect(report["verdicts"] as? [String: Int] == ["accept": 200])
        #expect(report["modifications"] as? [String: Int] == ["add-rcpt": 400, "del-rcpt": 200, "add-header": 200])
        #expect(
            (report["check"] as? String)?.hasPrefix("explain examples/splitmilter.rules --instance bench.example")
                == true)
    }

    /// scripts/bench-milter's load: the ten users of Benchmarks/bench.rules in turn across the
    /// run (one per message at -k 1), eight header fields, a 2 KiB body; the same answers with
    /// the unanswered frames coalesced and written one by one.
    @Test(arguments: [["-k", "1", "-n", "100"], ["-k", "10", "-n", "10", "--no-coalesce"]])
    func theBenchmarkLoadMatchesExplain(_ shape: [String]) async throws {
        let users = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy"]
        let bench = try await RunningMilter.splitmilter(
            rules: "Benchmarks/bench.rules", in: Paths.repository, instance: "bench.example",
            extra: ["--log-level", "warning"]
        ).run { daemon in
            try await Processes.run(
                try Paths.binary("milter-test"),
                [
                    "bench", daemon.socket, "-c", "3", "--messages-per-conn", "4", "--headers", "8", "--body-size",
                    "2048",
                ]
                    + shape + users.flatMap { ["--rcpt-template", "\($0)@example.org"] }
                    + ["--rules", "Benchmarks/bench.rules", "--instance", "bench.example", "--json"])
        }
        #expect(bench.status == 0, "bench exited \(bench.status):\n\(bench.output)\(bench.errors)")
        let report = try SendJSON.object(bench.output)
        #expect(report["failedMessages"] as? Int == 0)
        #expect(report["recipients"] as? Int == 100)
        // Per ten recipients: five copies and two rewrites; a marker on each message with a copy.
        let messagesWithCopies = shape.contains("1") ? 50 : 10
        #expect(
            report["modifications"] as? [String: Int] == [
                "add-rcpt": 70, "del-rcpt": 20, "add-header": messagesWithCopies,
            ])
        #expect((report["driverCPUMicrosecondsPerMessage"] as? Double ?? 0) > 0)
    }

    @Test func textReportHasEveryFigure() async throws {
        let bench = try await BenchTests.daemon().run { daemon in
            try await Processes.run(
                try Paths.binary("milter-test"),
                [
                    "bench", daemon.socket, "-c", "2", "-n", "20", "-k", "1", "--rules", BenchTests.rules,
                    "--instance", "bench.example",
                ])
        }
        #expect(bench.status == 0, "bench exited \(bench.status):\n\(bench.output)\(bench.errors)")
        let lines = bench.output.split(separator: "\n").map(String.init)
        #expect(lines.count == 7, "\(bench.output)")
        #expect(
            lines.first?.contains(": 20 messages, 20 recipients, 2 connections, 1 message per connection, ") == true)
        #expect(lines.contains { $0.hasPrefix("throughput: ") && $0.hasSuffix(" rcpts/s") })
        #expect(lines.contains { $0.hasPrefix("latency per message: p50 ") && $0.contains(" p99 ") })
        #expect(lines.contains("verdicts: accept 20"))
        #expect(lines.contains("rcpt answers: continue 20"))
        #expect(lines.contains("modifications: add-header 20, add-rcpt 20"))
        #expect(lines.last?.hasSuffix(": 20 ok, 0 failed") == true)
    }

    /// Guards answer at RCPT: the check compares every answer with explain's verdicts, and a
    /// message whose recipients were all refused is a right answer, not a failure.
    @Test(arguments: [
        ("192.0.2.9", ["user%n@example.com", "postmaster@example.com"], ["accept": 40], ["continue": 80]),
        (
            "198.51.100.7", ["user%n@example.com", "postmaster@example.com"], ["accept": 40],
            ["reject": 40, "continue": 40]
        ),
        ("198.51.100.7", ["user%n@example.com"], ["reject": 40], ["reject": 80]),
    ])
    func guardAnswersAreChecked(client: String, templates: [String], verdicts: [String: Int], answers: [String: Int])
        async throws
    {
        let folder = Paths.goldenCases.appendingPathComponent("guard-client")
        let bench = try await RunningMilter.splitmilter(rules: "rules", in: folder, instance: "bench.example").run {
            daemon in
            try await Processes.run(
                try Paths.binary("milter-test"),
                ["bench", daemon.socket, "-c", "2", "-n", "40", "-k", "2", "--client", client]
                    + templates.flatMap { ["--rcpt-template", $0] }
                    + ["--rules", "rules", "--instance", "bench.example", "--json"],
                in: folder)
        }
        #expect(bench.status == 0, "bench exited \(bench.status):\n\(bench.output)\(bench.errors)")
        let report = try SendJSON.object(bench.output)
        #expect(report["failedMessages"] as? Int == 0)
        #expect(report["verdicts"] as? [String: Int] == verdicts)
        #expect(report["recipientAnswers"] as? [String: Int] == answers)
    }

    /// The daemon marks copies with its own instance name; a check that expects another name must
    /// see every message as wrong, and the run must fail with the first mismatches printed.
    @Test func aWrongAnswerFailsTheRun() async throws {
        let bench = try await BenchTests.daemon().run { daemon in
            try await Processes.run(
                try Paths.binary("milter-test"),
                [
                    "bench", daemon.socket, "-c", "2", "-n", "30", "-k", "2", "--rules", BenchTests.rules,
                    "--instance", "another.example",
                ])
        }
        #expect(bench.status == 1, "bench exited \(bench.status):\n\(bench.output)\(bench.errors)")
        #expect(bench.output.contains("FAILED: 30 of 30 messages (0 protocol or connection errors)"))
        #expect(bench.output.contains("  message 1:\n    modifications differ from explain\n"))
        #expect(bench.output.contains("add-header X-Splitmilter-Copied: another.example"))
        #expect(bench.output.contains("add-header X-Splitmilter-Copied: bench.example"))
    }

    @Test func aDeadMilterFailsTheRun() async throws {
        let folder = try TemporaryFolder()
        let bench = try await Processes.run(
            try Paths.binary("milter-test"),
            ["bench", "unix:\(folder.url.path)/nobody.sock", "-c", "2", "-n", "10", "-k", "1", "--json"])
        #expect(bench.status == 1)
        let report = try SendJSON.object(bench.output)
        #expect(report["messages"] as? Int == 10)
        #expect(report["protocolErrors"] as? Int == 10)
        #expect(report["failedMessages"] as? Int == 10)
        #expect(report["verdicts"] as? [String: Int] == ["error": 10])
    }

    @Test func usageErrorsExitTwo() async throws {
        for arguments in [
            ["-c", "0"], ["-k", "0"], ["--rcpt-template", "user%x@example.org"], ["--client", "nowhere"],
        ] {
            let bench = try await Processes.run(
                try Paths.binary("milter-test"), ["bench", "unix:/nonexistent.sock"] + arguments)
            #expect(bench.status == 2, "\(arguments): \(bench.output)\(bench.errors)")
        }
    }

    /// Three messages over one connection, as one SMTP session: negotiation and connect only in
    /// the first transcript, SMFIC_ABORT between messages (as Postfix sends it), quit at the end,
    /// and each message's own edits.
    @Test func oneConnectionCarriesSeveralMessages() async throws {
        let transcripts = try await BenchTests.daemon().run { daemon in
            let recipients = ["alice@example.org", "dave@example.org", "carol.smith@example.net"]
            let transactions = recipients.map { recipient in
                let sender = Transaction.Address("sender@example.com")
                let address = Transaction.Address(recipient)
                return Transaction(
                    sender: sender, recipients: [address], message: .sample(from: sender, to: [address]))
            }
            return MilterClient.run(messages: transactions, endpoint: try MilterEndpoint(parsing: daemon.socket))
        }
        try #require(transcripts.count == 3)
        let names = transcripts.map { $0.steps.map(\.event.name) }
        #expect(names[0].prefix(2) == ["connect", "helo"])
        #expect(names[0].last == "abort")
        #expect(names[1].first == "mail" && names[1].last == "abort")
        #expect(names[2].first == "mail" && names[2].last == "quit")
        #expect(transcripts.allSatisfy { $0.failure == nil && $0.warnings.isEmpty && $0.verdict == .accept })
        #expect(transcripts.allSatisfy { $0.negotiated != nil })
        #expect(
            transcripts.map { $0.modifications.map(\.description) } == [
                [
                    "add-rcpt alice@gapps.example.org NOTIFY=NEVER ORCPT=rfc822;alice@example.org",
                    "add-header X-Splitmilter-Copied: bench.example",
                ],
                [],
                ["del-rcpt <carol.smith@example.net>", "add-rcpt carol ORCPT=rfc822;carol.smith@example.net"],
            ])
    }
}
