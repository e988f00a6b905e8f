/// Shadow rules through the real daemon: a shadow section sends nothing and logs what it would
/// send; with `--dry-run`, a `known` guard that would refuse accepts and logs its refusal.

import Foundation
import Testing

@Suite(.enabled(if: Paths.binaries != nil, "milter-test and splitmilter are not built next to the test bundle"))
struct ShadowTests {
    /// `milter-test send --json` of one message from `client` to `recipients`, through a daemon on
    /// `rules` started with `extra`.
    static func send(rules: String, to recipients: [String], client: String = "192.0.2.25", extra: [String] = [])
        async throws -> (transcript: [String: Any], daemon: RunningMilter)
    {
        let folder = try TemporaryFolder()
        _ = try folder.write(rules, to: "shadow.rules")
        let daemon = try await RunningMilter.splitmilter(
            rules: "shadow.rules", in: folder.url, instance: "shadow.example", extra: extra)
        let send = try await daemon.run { daemon in
            try await Processes.run(
                try Paths.binary("milter-test"),
                ["send", daemon.socket, "--json", "--client", client, "--from", "someone@example.org"]
                    + recipients.flatMap { ["--rcpt", $0] })
        }
        #expect(
            send.status == 0, "send exited \(send.status): \(send.output)\(send.errors)\ndaemon log:\n\(daemon.log)")
        return (try SendJSON.object(send.output), daemon)
    }

    @Test func aShadowSectionAddsNoRecipientAndLogsItsCopy() async throws {
        let (transcript, daemon) = try await ShadowTests.send(
            rules: """
                domain example.org
                    copy %u@gapps.example.org
                domain example.net
                    shadow
                    copy %u@gw.example
                """,
            to: ["bob@example.net"])
        #expect(transcript["verdict"] as? String == "accept")
        #expect(SendJSON.recipientAnswers(transcript) == ["continue"])
        #expect(SendJSON.modificationsInExplainForm(transcript) == [], "daemon log:\n\(daemon.log)")
        #expect(
            daemon.log.contains("rcpt=<bob@example.net> shadow copy=bob@gw.example rule=shadow.rules:5"),
            "daemon log:\n\(daemon.log)")
    }

    @Test func aDryRunAcceptsWhomKnownWouldRefuseAndLogsTheRefusal() async throws {
        let (transcript, daemon) = try await ShadowTests.send(
            rules: """
                domain example.com
                    copy %u@archive.example.net
                    known alice
                """,
            to: ["alice@example.com", "mallory@example.com"], extra: ["--dry-run"])
        #expect(transcript["verdict"] as? String == "accept")
        #expect(SendJSON.recipientAnswers(transcript) == ["continue", "continue"])
        #expect(SendJSON.modificationsInExplainForm(transcript) == [], "daemon log:\n\(daemon.log)")
        let log = daemon.log
        #expect(log.contains("; dry run: no edits, no refusals"), "daemon log:\n\(log)")
        #expect(
            log.contains(
                "shadow reject: rcpt=<mallory@example.com> 550 5.1.1 <mallory@example.com>: Recipient address rejected: User unknown (not a known user (shadow.rules:3))"
            ), "daemon log:\n\(log)")
        #expect(
            log.contains("rcpt=<alice@example.com> shadow copy=alice@archive.example.net rule=shadow.rules:2"),
            "daemon log:\n\(log)")
        #expect(!log.contains("mallory@archive.example.net"), "mallory would be refused: no copy for her")
    }

    /// The same file without --dry-run refuses mallory, as before.
    @Test func withoutDryRunTheGuardRefuses() async throws {
        let (transcript, _) = try await ShadowTests.send(
            rules: "domain example.com\n    known alice\n", to: ["alice@example.com", "mallory@example.com"])
        let answers = SendJSON.recipientAnswers(transcript)
        #expect(answers.first == "continue")
        #expect(answers.last?.hasPrefix("550 5.1.1") == true, "\(answers)")
    }
}
