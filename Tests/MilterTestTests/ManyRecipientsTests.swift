/// `send` and `explain` with thousands of recipients, as the built milter-test runs them: the
/// command line is read in linear time (swift-argument-parser alone is quadratic in repeated
/// options), the recipients keep their order, and the sample message's To: line stays within
/// what libmilter takes in one frame.

import Foundation
import Testing

@Suite(.enabled(if: Paths.binaries != nil, "milter-test and splitmilter are not built next to the test bundle"))
struct ManyRecipientsTests {
    static func recipients(_ count: Int, domain: String = "nowhere.example") -> [String] {
        (1...count).flatMap { ["--rcpt", "user\($0)@\(domain)"] }
    }

    /// Seconds `send` takes to a socket nobody listens on: reading the command line and making
    /// the message, then failing to connect.
    static func sendSeconds(_ count: Int, folder: TemporaryFolder) async throws -> Double {
        let started = ContinuousClock.now
        let send = try await Processes.run(
            try Paths.binary("milter-test"),
            ["send", "unix:\(folder.url.path)/nobody.sock"] + recipients(count))
        #expect(send.status == 5, "\(send.output)\(send.errors)")
        let (seconds, attoseconds) = (ContinuousClock.now - started).components
        return Double(seconds) + Double(attoseconds) / 1e18
    }

    /// 10 times the recipients must cost about 10 times as much, not 100 (quadratic): 8,000
    /// took 6 s to parse before. The bound leaves room for a busy machine.
    @Test func sendReadsItsRecipientsInLinearTime() async throws {
        let folder = try TemporaryFolder()
        _ = try await ManyRecipientsTests.sendSeconds(100, folder: folder)  // warm the page cache
        let few = try await ManyRecipientsTests.sendSeconds(1_000, folder: folder)
        let many = try await ManyRecipientsTests.sendSeconds(10_000, folder: folder)
        #expect(many < max(few, 0.05) * 40, "1,000 recipients: \(few) s, 10,000: \(many) s")
    }

    @Test func liftedRecipientsKeepTheirOrderAndSpelling() async throws {
        let folder = try TemporaryFolder()
        let rules = try folder.write("domain example.org\n    copy %u@copy.example.org\n", to: "r.rules")
        let explain = try await Processes.run(
            try Paths.binary("milter-test"),
            [
                "explain", rules.path, "--instance", "i.example", "--rcpt", "c@example.org", "--rcpt=a@example.org",
                "--json", "--rcpt", "b@example.org NOTIFY=NEVER",
            ])
        #expect(explain.status == 0, "\(explain.output)\(explain.errors)")
        let document = try SendJSON.object(explain.output)
        let listed = (document["recipients"] as? [[String: Any]])?.compactMap { $0["recipient"] as? String }
        #expect(listed == ["<c@example.org>", "<a@example.org>", "<b@example.org>"])
        // A --rcpt without a value is still the parser's usage error.
        let usage = try await Processes.run(
            try Paths.binary("milter-test"), ["explain", rules.path, "--rcpt", "a@example.org", "--rcpt", "--json"])
        #expect(usage.status == 2, "\(usage.output)\(usage.errors)")
    }

    /// `milter-test send --json` with `arguments` through a daemon on the example rules, serving
    /// its metrics; the page as it was after the message comes back too.
    static func sendThroughTheDaemon(_ arguments: [String]) async throws -> (Finished, RunningMilter, metrics: String) {
        let port = try HTTPProbe.freePort()
        let daemon = try await RunningMilter.splitmilter(
            rules: "examples/splitmilter.rules", in: Paths.repository, instance: "bench.example",
            extra: ["--log-level", "warning", "--metrics", "127.0.0.1:\(port)"])
        return try await daemon.run { daemon in
            let send = try await Processes.run(
                try Paths.binary("milter-test"), ["send", daemon.socket, "--json"] + arguments)
            let page = try await HTTPProbe.get(port: port, "/metrics", until: { $0.status == 200 })
            return (send, daemon, page.body)
        }
    }

    /// The whole list in To: was 200 KB here: libmilter dropped the connection at that header.
    @Test func eightThousandRecipientsGoThroughTheDaemon() async throws {
        let (send, daemon, _) = try await ManyRecipientsTests.sendThroughTheDaemon(
            ManyRecipientsTests.recipients(8_000))
        #expect(send.status == 0, "send exited \(send.status): \(send.errors)\ndaemon log:\n\(daemon.log)")
        let transcript = try SendJSON.object(send.output)
        #expect(transcript["verdict"] as? String == "accept")
        #expect(SendJSON.recipientAnswers(transcript).count == 8_000)
        let steps = transcript["steps"] as? [[String: Any]] ?? []
        let to = steps.first { ($0["arguments"] as? [String])?.first == "To" }
        let value = (to?["arguments"] as? [String])?.last ?? ""
        #expect(value.hasPrefix("<user1@nowhere.example>, ") && value.hasSuffix(" more)") && value.utf8.count < 1_000)
    }

    /// The README's promise, through the daemon: the recipient past the per-message limit gets
    /// 452 4.5.3 at RCPT and the message goes on with the others' copies (it was tempfailed whole,
    /// on every retry, while RCPT was negotiated as no-reply).
    @Test func theRecipientPastTheLimitGets452AndTheMessageItsCopies() async throws {
        let (send, daemon, metrics) = try await ManyRecipientsTests.sendThroughTheDaemon(
            ManyRecipientsTests.recipients(10_001, domain: "example.org"))
        #expect(send.status == 0, "send exited \(send.status): \(send.errors)\ndaemon log:\n\(daemon.log)")
        let transcript = try SendJSON.object(send.output)
        let answers = SendJSON.recipientAnswers(transcript)
        #expect(answers.count == 10_001)
        #expect(answers.dropLast().allSatisfy { $0 == "continue" })
        #expect(answers.last?.contains("Too many recipients") == true, "\(answers.last ?? "")")
        #expect(transcript["verdict"] as? String == "accept")
        #expect(!SendJSON.modificationsInExplainForm(transcript).isEmpty)
        // The 452 is the daemon's one TEMPFAIL answer, counted at its step; the message is counted.
        #expect(metrics.contains("\nsplitmilter_tempfails_total{stage=\"rcpt\"} 1\n"), "\(metrics)")
        #expect(metrics.contains("\nsplitmilter_tempfails_total{stage=\"eom\"} 0\n"), "\(metrics)")
        #expect(metrics.contains("\nsplitmilter_messages_total 1\n"), "\(metrics)")
        #expect(metrics.contains("\nsplitmilter_recipients_total 10001\n"), "\(metrics)")
    }

    /// A peer that stops in the middle of a command holds a thread: it is dropped after `--timeout`
    /// seconds (libmilter's default is two hours).
    @Test func aSilentPeerIsDroppedAfterTheTimeout() async throws {
        let daemon = try await RunningMilter.splitmilter(
            rules: "examples/splitmilter.rules", in: Paths.repository, instance: "bench.example",
            extra: ["--timeout", "2"])
        let seconds = try await daemon.run { daemon in
            let path = String(daemon.socket.dropFirst("unix:".count))
            return try await offThePool { try SilentPeer.secondsUntilClosed(path: path, limit: 20) }
        }
        #expect(seconds != nil && seconds! >= 1.5 && seconds! < 10, "closed after \(seconds ?? -1) s\n\(daemon.log)")
    }
}

/// A client that connects and sends half a frame's length, then waits for the milter to close the
/// connection. (With `--engine libmilter` a client silent between frames holds no thread:
/// libmilter's pool sweeps such connections every 600 s; docs/postfix-milter.md, "libmilter".)
enum SilentPeer {
    static func secondsUntilClosed(path: String, limit: Int32) throws -> Double? {
        let fd = try UnixClient.connected(to: path)
        defer { close(fd) }
        let half: [UInt8] = [0, 0]
        try #require(write(fd, half, half.count) == half.count)
        let started = ContinuousClock.now
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, limit * 1000) == 1 else { return nil }
        var byte: UInt8 = 0
        guard read(fd, &byte, 1) <= 0 else { return nil }
        let (seconds, attoseconds) = (ContinuousClock.now - started).components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
