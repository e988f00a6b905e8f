/// The golden cases in Tests/Golden/cases/NAME/: `rules`, `envelope`, and `expected`, the text
/// `milter-test explain` prints for them. Each case runs twice: `explain` must print `expected`,
/// and the real splitmilter, started on the case's rules, must send through `milter-test send`
/// exactly the edits `explain` lists under "edits at end of message".
///
/// `envelope` has one item a line (`#` comments): `from ADDR`, `rcpt ADDR` (repeatable),
/// `rcpt-arg ARG` (an ESMTP argument for every recipient, like explain's `--rcpt-arg`),
/// `client IP`, `local-submission` (the client is Postfix's emulated session for sendmail(1):
/// localhost, 127.0.0.1, port 0), `helo NAME`, `marked` (the message carries this instance's
/// marker header), and `dry-run` (every rule is a shadow rule: `explain --dry-run`, and the daemon
/// started with `--dry-run`).

import Foundation
import Testing

struct GoldenCase: CustomTestStringConvertible, Sendable {
    /// The daemon's `--instance` and explain's, for every case.
    static let instance = "golden.example"

    let name: String
    var from = "sender@example.com"
    var recipients: [String] = []
    var recipientArguments: [String] = []
    var client: String?
    var localSubmission = false
    var helo: String?
    var marked = false
    var dryRun = false

    var testDescription: String { name }
    var folder: URL { Paths.goldenCases.appendingPathComponent(name) }

    static var all: [GoldenCase] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: Paths.goldenCases.path)) ?? []
        return names.sorted().map(GoldenCase.init(name:))
    }

    init(name: String) { self.name = name }

    /// Reads `envelope`; an unknown line is an error naming the file and line.
    func loaded() throws -> GoldenCase {
        var loaded = self
        let text = try String(contentsOf: folder.appendingPathComponent("envelope"), encoding: .utf8)
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            let key = trimmed.prefix { $0 != " " }
            let value = trimmed.dropFirst(key.count).trimmingCharacters(in: .whitespaces)
            switch key {
            case "from": loaded.from = value
            case "rcpt": loaded.recipients.append(value)
            case "rcpt-arg": loaded.recipientArguments.append(value)
            case "client": loaded.client = value
            case "local-submission": loaded.localSubmission = true
            case "helo": loaded.helo = value
            case "marked": loaded.marked = true
            case "dry-run": loaded.dryRun = true
            default:
                throw EnvelopeError(description: "\(name)/envelope:\(number + 1): unknown item '\(key)'")
            }
        }
        return loaded
    }

    var explainArguments: [String] {
        var arguments = ["explain", "rules", "--instance", GoldenCase.instance, "--from", from]
        arguments += recipients.flatMap { ["--rcpt", $0] }
        arguments += recipientArguments.flatMap { ["--rcpt-arg", $0] }
        if let client { arguments += ["--client", client] }
        if localSubmission { arguments.append("--local-submission") }
        if let helo { arguments += ["--helo", helo] }
        if marked { arguments.append("--marked") }
        if dryRun { arguments.append("--dry-run") }
        return arguments
    }

    func sendArguments(socket: String, message: URL?) -> [String] {
        var arguments = ["send", socket, "--json", "--from", from]
        arguments += recipients.flatMap { ["--rcpt", ([$0] + recipientArguments).joined(separator: " ")] }
        if let client { arguments += ["--client", client] }
        if localSubmission { arguments.append("--local-submission") }
        if let helo { arguments += ["--helo", helo] }
        if let message { arguments += ["--message", message.path] }
        return arguments
    }

    /// A small message carrying the marker header, as a message this instance copied does.
    func markedMessage() -> String {
        """
        From: <\(from)>
        To: \(recipients.map { "<\($0)>" }.joined(separator: ", "))
        Subject: golden case \(name)
        X-Splitmilter-Copied: \(GoldenCase.instance)

        This message was copied here before.

        """
    }
}

struct EnvelopeError: Error, CustomStringConvertible {
    let description: String
}

@Suite(.enabled(if: Paths.binaries != nil, "milter-test and splitmilter are not built next to the test bundle"))
struct GoldenTests {
    @Test func thereAreCases() {
        #expect(GoldenCase.all.count >= 8, "Tests/Golden/cases holds \(GoldenCase.all.count) cases")
    }

    @Test(arguments: GoldenCase.all)
    func explainPrintsExpected(_ golden: GoldenCase) async throws {
        let golden = try golden.loaded()
        let run = try await Processes.run(try Paths.binary("milter-test"), golden.explainArguments, in: golden.folder)
        #expect(run.status == 0, "explain exited \(run.status): \(run.errors)")
        try Golden.check(run.output, against: golden.folder.appendingPathComponent("expected"))
    }

    /// Through each engine: splitmilter's own (the default) and libmilter's (`--engine libmilter`).
    @Test(arguments: GoldenCase.all, ["native", "libmilter"])
    func daemonSendsWhatExplainLists(_ golden: GoldenCase, engine: String) async throws {
        let golden = try golden.loaded()
        let explain = try await Processes.run(
            try Paths.binary("milter-test"), golden.explainArguments, in: golden.folder)
        try #require(explain.status == 0, "explain exited \(explain.status): \(explain.errors)")
        let predicted = GoldenTests.editLines(explain.output)

        let daemon = try await RunningMilter.splitmilter(
            rules: "rules", in: golden.folder, instance: GoldenCase.instance,
            extra: ["--engine", engine] + (golden.dryRun ? ["--dry-run"] : []))
        let send = try await daemon.run { daemon in
            let message = golden.marked ? try daemon.folder.write(golden.markedMessage(), to: "marked.eml") : nil
            return try await Processes.run(
                try Paths.binary("milter-test"), golden.sendArguments(socket: daemon.socket, message: message))
        }
        #expect(
            send.status == 0, "send exited \(send.status):\n\(send.output)\(send.errors)\ndaemon log:\n\(daemon.log)")
        let transcript = try SendJSON.object(send.output)
        #expect(transcript["verdict"] as? String == "accept")
        #expect(
            SendJSON.recipientAnswers(transcript) == GoldenTests.recipientAnswers(explain.output),
            "send and explain answer RCPT differently:\n\(send.output)")
        let sent = SendJSON.modificationsInExplainForm(transcript)
        #expect(
            sent == predicted,
            "send and explain disagree:\n\(Golden.diff(predicted.joined(separator: "\n"), sent.joined(separator: "\n")))"
        )
    }

    /// Each recipient's RCPT answer as `explain` prints it: `continue`, or the SMTP reply of a
    /// refusal (`reject 550 5.7.1 text (why)` becomes `550 5.7.1 text`).
    static func recipientAnswers(_ explanation: String) -> [String] {
        var answers: [String] = []
        for line in explanation.split(separator: "\n").map(String.init) {
            if line.hasPrefix("rcpt ") {
                answers.append("continue")
            } else if let refusal = ["  reject ", "  tempfail "].first(where: line.hasPrefix), !answers.isEmpty {
                let reply = withoutTrailingParenthesis(line.dropFirst(refusal.count))
                answers[answers.count - 1] = String(reply)
            }
        }
        return answers
    }

    /// `text (why (where))` → `text`: drops the last balanced parenthesis group and the blank before it.
    static func withoutTrailingParenthesis(_ text: Substring) -> Substring {
        guard text.hasSuffix(")") else { return text }
        var depth = 0
        var index = text.endIndex
        while index > text.startIndex {
            index = text.index(before: index)
            if text[index] == ")" { depth += 1 }
            if text[index] == "(" { depth -= 1 }
            if depth == 0 { return text[..<index].dropLast(text[..<index].hasSuffix(" ") ? 1 : 0) }
        }
        return text
    }

    /// The lines under "edits at end of message:", without their indentation.
    static func editLines(_ explanation: String) -> [String] {
        let lines = explanation.split(separator: "\n").map(String.init)
        guard let start = lines.firstIndex(where: { $0.hasPrefix("edits at end of message:") }) else { return [] }
        return lines[(start + 1)...].prefix { $0.hasPrefix("  ") }.map { String($0.dropFirst(2)) }
    }
}

@Suite struct GoldenDiffTests {
    @Test func removedLinesComeBeforeAddedOnes() {
        #expect(Golden.diff("a\nb\nc", "a\nB\nc") == "  a\n- b\n+ B\n  c")
        #expect(Golden.diff("a", "a\nb") == "  a\n+ b")
        #expect(Golden.diff("a\nb", "b") == "- a\n  b")
    }

    @Test func explainRepliesLoseOnlyTheirReason() {
        #expect(
            GoldenTests.recipientAnswers(
                """
                rcpt <a@x>: domain rules
                  reject 550 5.1.1 <a@x>: User unknown (not a known user (rules:5))
                rcpt <b@x>: domain rules
                  tempfail 451 4.7.1 try later (spf:example.net did not resolve)
                rcpt <c@x>: no domain section

                """) == ["550 5.1.1 <a@x>: User unknown", "451 4.7.1 try later", "continue"])
    }
}
