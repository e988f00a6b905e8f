/// `milter-test send` and `bench` against a milter no one here wrote: Debian's opendkim, signing
/// with a key made by `opendkim-genkey` in the test. It checks the client against libmilter as
/// another program drives it (its own negotiation, HDR_LEADSPC, SETSYMLIST, accept at end of
/// message, an inserted header), not only against our daemon.
///
/// Skipped, with the reason, when opendkim or opendkim-tools is not installed
/// (`apt-get install opendkim opendkim-tools`); CI installs both.

import Foundation
import Testing

enum OpenDKIM {
    static let daemon = "/usr/sbin/opendkim"
    static let keyTool = "/usr/sbin/opendkim-genkey"
    static var installed: Bool { Processes.exists(daemon) && Processes.exists(keyTool) }

    /// opendkim in the foreground, signing mail from example.org with selector `test` for
    /// clients at 127.0.0.1. `RequireSafeKeys false`: the key sits under /tmp, which is
    /// world-writable, and the test runs as whoever runs it.
    static func start() async throws -> RunningMilter {
        let folder = try TemporaryFolder()
        let keys = try await Processes.run(keyTool, ["-D", folder.url.path, "-d", "example.org", "-s", "test"])
        try #require(keys.status == 0, "opendkim-genkey failed: \(keys.output)\(keys.errors)")
        let socket = folder.url.appendingPathComponent("milter.sock").path
        let configuration = try folder.write(
            """
            Syslog                  no
            Domain                  example.org
            Selector                test
            KeyFile                 \(folder.url.appendingPathComponent("test.private").path)
            Socket                  local:\(socket)
            Mode                    s
            InternalHosts           127.0.0.1
            RequireSafeKeys         false

            """,
            to: "opendkim.conf")
        return try await RunningMilter.start(daemon, folder: folder) { _ in ["-f", "-x", configuration.path] }
    }
}

@Suite(
    .enabled(if: Paths.binaries != nil, "milter-test is not built next to the test bundle"),
    .enabled(if: OpenDKIM.installed, "opendkim is not installed: apt-get install opendkim opendkim-tools")
)
struct ThirdPartyMilterTests {
    @Test func sendShowsTheSignatureOpendkimAdds() async throws {
        let send = try await OpenDKIM.start().run { milter in
            try await Processes.run(
                try Paths.binary("milter-test"),
                [
                    "send", milter.socket, "--from", "alice@example.org", "--rcpt", "bob@example.net", "--macro",
                    "i=4XyZ1234",
                ]
            )
        }
        #expect(send.status == 0, "send exited \(send.status):\n\(send.output)\(send.errors)")
        let lines = send.output.split(separator: "\n").map(String.init)
        // opendkim reads the whole message and answers accept once it has signed it.
        #expect(lines.contains("eom -> accept"), "\(send.output)")
        #expect(lines.last == "verdict accept")
        let signature = try #require(
            lines.first { $0.hasPrefix("  insert-header 0 DKIM-Signature: ") }, "no DKIM-Signature in:\n\(send.output)")
        #expect(signature.contains("d=example.org; s=test;"))
        #expect(signature.contains("h=From:To:Subject:Date;"))
        #expect(lines.first?.hasPrefix("negotiate version 6 actions ADDHDRS,") == true)
    }

    @Test func sendJSONCarriesTheSignatureAsAnInsertedHeader() async throws {
        let send = try await OpenDKIM.start().run { milter in
            try await Processes.run(
                try Paths.binary("milter-test"),
                ["send", milter.socket, "--json", "--from", "alice@example.org", "--rcpt", "bob@example.net"])
        }
        #expect(send.status == 0, "send exited \(send.status):\n\(send.output)\(send.errors)")
        let transcript = try SendJSON.object(send.output)
        let steps = try #require(transcript["steps"] as? [[String: Any]])
        let modifications = steps.flatMap { $0["modifications"] as? [[String: Any]] ?? [] }
        #expect(modifications.count == 1)
        #expect(modifications.first?["action"] as? String == "insert-header")
        #expect(modifications.first?["name"] as? String == "DKIM-Signature")
        #expect((modifications.first?["value"] as? String)?.contains("a=rsa-sha256") == true)
    }

    @Test func mailFromAnotherDomainIsNotSigned() async throws {
        let send = try await OpenDKIM.start().run { milter in
            try await Processes.run(
                try Paths.binary("milter-test"),
                ["send", milter.socket, "--from", "mallory@example.com", "--rcpt", "bob@example.net"])
        }
        #expect(send.status == 0, "send exited \(send.status):\n\(send.output)\(send.errors)")
        #expect(!send.output.contains("DKIM-Signature"), "\(send.output)")
    }

    @Test func benchCountsOneSignaturePerMessage() async throws {
        let bench = try await OpenDKIM.start().run { milter in
            try await Processes.run(
                try Paths.binary("milter-test"),
                [
                    "bench", milter.socket, "-c", "2", "-n", "40", "-k", "2", "--messages-per-conn", "5",
                    "--from", "alice@example.org", "--json",
                ])
        }
        #expect(bench.status == 0, "bench exited \(bench.status):\n\(bench.output)\(bench.errors)")
        let report = try SendJSON.object(bench.output)
        #expect(report["messages"] as? Int == 40)
        #expect(report["recipients"] as? Int == 80)
        #expect(report["failedMessages"] as? Int == 0)
        #expect(report["verdicts"] as? [String: Int] == ["accept": 40])
        #expect(report["modifications"] as? [String: Int] == ["insert-header": 40])
    }
}
