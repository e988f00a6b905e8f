/// Shadow rules through the real daemon: a shadow section sends nothing and logs what it would
/// send; with `--dry-run`, a `known` guard that would refuse accepts and logs its refusal, also
/// after a reload.

import Foundation
import Testing

@Suite(.enabled(if: Paths.binaries != nil, "milter-test and splitmilter are not built next to the test bundle"))
struct ShadowTests {
    /// Runs `body` with a daemon on `rules` (written as `shadow.rules`) started with `extra`.
    static func withDaemon<Result>(
        rules: String, extra: [String] = [], _ body: (RunningMilter, URL) async throws -> Result
    ) async throws -> (Result, RunningMilter) {
        let folder = try TemporaryFolder()
        // A reload reads the file as the daemon's user (nobody, when the tests run as root).
        chmod(folder.url.path, 0o755)
        let file = try folder.write(rules, to: "shadow.rules")
        let daemon = try await RunningMilter.splitmilter(
            rules: "shadow.rules", in: folder.url, instance: "shadow.example", extra: extra)
        return (try await daemon.run { try await body($0, file) }, daemon)
    }

    /// `milter-test send --json` of one message from 192.0.2.25 to `recipients`: its transcript.
    static func send(_ daemon: RunningMilter, to recipients: [String]) async throws -> [String: Any] {
        let send = try await Processes.run(
            try Paths.binary("milter-test"),
            ["send", daemon.socket, "--json", "--client", "192.0.2.25", "--from", "someone@example.org"]
                + recipients.flatMap { ["--rcpt", $0] })
        #expect(
            send.status == 0, "send exited \(send.status): \(send.output)\(send.errors)\ndaemon log:\n\(daemon.log)")
        return try SendJSON.object(send.output)
    }

    @Test func aShadowSectionAddsNoRecipientAndLogsItsCopy() async throws {
        let (transcript, daemon) = try await ShadowTests.withDaemon(
            rules: """
                domain example.org
                    copy %u@gapps.example.org
                domain example.net
                    shadow
                    copy %u@gw.example
                """
        ) { daemon, _ in try await ShadowTests.send(daemon, to: ["bob@example.net"]) }
        #expect(transcript["verdict"] as? String == "accept")
        #expect(SendJSON.recipientAnswers(transcript) == ["continue"])
        #expect(SendJSON.modificationsInExplainForm(transcript) == [], "daemon log:\n\(daemon.log)")
        #expect(
            daemon.log.contains("rcpt=<bob@example.net> shadow copy=bob@gw.example rule=shadow.rules:5"),
            "daemon log:\n\(daemon.log)")
    }

    /// Mallory is accepted and her refusal logged, before a reload and after it.
    @Test func aDryRunAcceptsWhomKnownWouldRefuseAlsoAfterAReload() async throws {
        let recipients = ["alice@example.com", "mallory@example.com"]
        let (transcripts, daemon) = try await ShadowTests.withDaemon(
            rules: "domain example.com\n    copy %u@archive.example.net\n    known alice\n", extra: ["--dry-run"]
        ) { daemon, file in
            let first = try await ShadowTests.send(daemon, to: recipients)
            try Data("domain example.com\n    known alice\n    copy %u@archive.example.net\n".utf8).write(to: file)
            daemon.send(signal: SIGUSR1)
            let started = Date()
            while !daemon.log.contains("reloaded "), Date().timeIntervalSince(started) < 10 {
                try await Task.sleep(for: .milliseconds(20))
            }
            return [first, try await ShadowTests.send(daemon, to: recipients)]
        }
        let log = daemon.log
        #expect(log.contains("; dry run: no edits, no refusals"), "daemon log:\n\(log)")
        #expect(log.contains("reloaded "), "daemon log:\n\(log)")
        for (index, transcript) in transcripts.enumerated() {
            #expect(transcript["verdict"] as? String == "accept")
            #expect(SendJSON.recipientAnswers(transcript) == ["continue", "continue"], "message \(index + 1)")
            #expect(SendJSON.modificationsInExplainForm(transcript) == [], "message \(index + 1)")
        }
        let refusal =
            "shadow reject: rcpt=<mallory@example.com> 550 5.1.1 <mallory@example.com>: Recipient address rejected: User unknown (not a known user (shadow.rules:"
        #expect(log.components(separatedBy: refusal + "3))").count == 2, "daemon log:\n\(log)")
        #expect(log.components(separatedBy: refusal + "2))").count == 2, "after the reload:\n\(log)")
        #expect(log.contains("rcpt=<alice@example.com> shadow copy=alice@archive.example.net rule=shadow.rules:2"))
        #expect(!log.contains("mallory@archive.example.net"), "mallory would be refused: no copy for her")
    }

    /// The same file without --dry-run refuses mallory, as before.
    @Test func withoutDryRunTheGuardRefuses() async throws {
        let (transcript, _) = try await ShadowTests.withDaemon(rules: "domain example.com\n    known alice\n") {
            daemon, _ in try await ShadowTests.send(daemon, to: ["alice@example.com", "mallory@example.com"])
        }
        let answers = SendJSON.recipientAnswers(transcript)
        #expect(answers.first == "continue")
        #expect(answers.last?.hasPrefix("550 5.1.1") == true, "\(answers)")
    }
}
