/// `milter-test bench SOCKET -c CONNECTIONS -n MESSAGES -k RCPTS [--rules RULES]`: concurrent load
/// on a running milter, and, with `--rules`, every message's answer checked against what
/// `explain` computes for the same envelope. The load itself is MilterClient's `MilterLoad`;
/// this file reads options, makes the envelopes, and owns the check.
///
/// The check runs the daemon's own engine (`RuleSet.decide`, `MessagePlan.edits`) through
/// `Explanation.predict`, the function `explain` runs, never a second copy of the rules. Any
/// mismatch, protocol error or transcript warning fails the run (exit 1): a broken milter must
/// never look fast.

import ArgumentParser
import Foundation
import MilterClient
import MilterProtocol
import SplitCore
import SplitSystem

extension MilterTest {
    struct Bench: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Load a running milter and report its speed; with --rules, verify every answer.",
            discussion: """
                SOCKET is unix:/path, inet:host:port (Postfix) or inet:port@host (libmilter).

                Runs MESSAGES messages of RCPTS recipients each over CONNECTIONS concurrent \
                connections, --messages-per-conn messages per connection, each session as \
                `send` runs it. A message's recipients come from the --rcpt-template list, \
                used in turn; in a template %n is the recipient's number in the run (from 1), \
                %m the message's number (from 1), %% a percent sign; ESMTP arguments may \
                follow the address.

                Prints messages and recipients per second, the latency per message (p50, p99, \
                max; a connection's first message includes connecting and negotiating) and the \
                count of each verdict and modification kind.

                With --rules, every message's recipient answers and modifications must equal \
                what `explain RULES --instance NAME` computes for its envelope; the instance \
                must be the daemon's --instance.

                Exit status: 0 every message fine, 1 a mismatch, protocol error or warning \
                (the first ones are printed) or a rule file with errors, 2 usage.
                """
        )

        @Argument(help: "Where the milter listens.")
        var socket: String

        @Option(name: [.customShort("c"), .customLong("connections")], help: "Concurrent connections.")
        var connections = 4

        @Option(name: [.customShort("n"), .customLong("messages")], help: "Messages in the whole run.")
        var messages = 1000

        @Option(name: [.customShort("k"), .customLong("rcpts")], help: "Recipients per message.")
        var recipients = 1

        @Option(name: .customLong("messages-per-conn"), help: "Messages per connection (one SMTP session).")
        var messagesPerConnection = 1

        @Option(
            name: .customLong("rcpt-template"),
            help: "Recipient template, with %n, %m and optional ESMTP arguments; repeatable, used in turn."
        )
        var recipientTemplates: [String] = ["user%n@example.org"]

        @Option(help: "Envelope sender, with optional ESMTP arguments.")
        var from = "sender@example.org"

        @Option(help: "The SMTP client's IP address.")
        var client = "127.0.0.1"

        @Option(help: "Check every message against `explain` with this rule file.")
        var rules: String?

        @Option(help: "The daemon's instance name, for the copy marker header (default: host name).")
        var instance: String?

        @Option(help: "Seconds to wait for the connection and for each answer.")
        var timeout: Double = 30

        @Flag(help: "Print the report as JSON.")
        var json = false

        func validate() throws {
            do {
                _ = try MilterEndpoint(parsing: socket)
                _ = try ClientAddress(parsing: client)
                for template in recipientTemplates { _ = try RecipientTemplate(template) }
            } catch {
                throw ValidationError(String(describing: error))
            }
            guard IPAddress(client) != nil else { throw ValidationError("--client '\(client)' is not an IP address") }
            for (name, value) in [
                ("-c", connections), ("-n", messages), ("-k", recipients),
                ("--messages-per-conn", messagesPerConnection),
            ] where value < 1 {
                throw ValidationError("\(name) must be at least 1")
            }
            guard recipients <= MessagePlan.maximumRecipients else {
                throw ValidationError("-k must be at most \(MessagePlan.maximumRecipients)")
            }
            guard timeout > 0 else { throw ValidationError("--timeout must be more than 0 seconds") }
        }

        func run() throws {
            let check = try rules.map {
                try ExplainCheck(rules: $0, client: client, instance: instance ?? HostName.current)
            }
            var report = MilterLoad.run(try plan()) { _, transaction, transcript in
                check?.problems(transaction, transcript) ?? []
            }
            report.check = check?.summary
            print(json ? try report.json() : report.text, terminator: "")
            if report.failedMessages > 0 { throw ExitCode.failure }
        }

        private func plan() throws -> LoadPlan {
            let envelopes = try EnvelopeFactory(
                sender: from, client: ClientAddress(parsing: client), recipientsPerMessage: recipients,
                templates: recipientTemplates.map(RecipientTemplate.init))
            return LoadPlan(
                endpoint: try MilterEndpoint(parsing: socket), connections: connections, messages: messages,
                messagesPerConnection: messagesPerConnection, timeout: timeout, transaction: envelopes.transaction)
        }
    }
}

/// A recipient template: an address with `%n` (recipient number), `%m` (message number) and `%%`,
/// then optional ESMTP arguments.
struct RecipientTemplate: Sendable {
    let text: String

    init(_ text: String) throws {
        var rest = text.unicodeScalars.makeIterator()
        while let scalar = rest.next() {
            guard scalar == "%" else { continue }
            guard let token = rest.next(), "nm%".unicodeScalars.contains(token) else {
                throw ValidationError("--rcpt-template '\(text)': unknown token; use %n, %m or %%")
            }
        }
        guard !text.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw ValidationError("--rcpt-template is empty")
        }
        self.text = text
    }

    func render(recipient: Int, message: Int) -> String {
        var out = ""
        var scalars = text.unicodeScalars.makeIterator()
        while let scalar = scalars.next() {
            guard scalar == "%", let token = scalars.next() else {
                out.unicodeScalars.append(scalar)
                continue
            }
            switch token {
            case "n": out += String(recipient)
            case "m": out += String(message)
            default: out.unicodeScalars.append(token)
            }
        }
        return out
    }
}

/// Makes message `n`'s transaction: the same sender and client for all, recipients from the
/// templates in turn, the sample message, and a queue ID so the daemon's log lines can be told apart.
struct EnvelopeFactory: Sendable {
    let sender: Transaction.Address
    let client: ClientAddress
    let recipientsPerMessage: Int
    let templates: [RecipientTemplate]

    init(sender: String, client: ClientAddress, recipientsPerMessage: Int, templates: [RecipientTemplate]) {
        self.sender = Transaction.Address(parsing: sender)
        self.client = client
        self.recipientsPerMessage = recipientsPerMessage
        self.templates = templates
    }

    func transaction(_ number: Int) -> Transaction {
        let recipients = (0..<recipientsPerMessage).map { index in
            Transaction.Address(
                parsing: templates[index % templates.count].render(
                    recipient: number * recipientsPerMessage + index + 1, message: number + 1))
        }
        return Transaction(
            client: client, sender: sender, recipients: recipients,
            message: .sample(from: sender, to: recipients),
            macros: [Macro("i", "B" + String(number + 1, radix: 16, uppercase: true))])
    }
}

/// Checks one message's transcript against `explain` for its envelope: each recipient's answer,
/// the verdict, and the modifications in order.
struct ExplainCheck: Sendable {
    let ruleSet: RuleSet
    let client: ClientContext
    let providers: ProviderNetworks
    let marker: CopyMarker
    let summary: String

    /// Loads the rules as `explain` does: diagnostics to standard error, exit 1 on errors.
    init(rules path: String, client address: String, instance: String) throws {
        var standardError = StandardError()
        let loaded = RuleLoader.load(path)
        for diagnostic in loaded.diagnostics { print(diagnostic, to: &standardError) }
        guard let ruleSet = loaded.ruleSet else { throw ExitCode.failure }
        let providers = ProviderResolution.resolve(ruleSet.spfDomains, dns: ResolverDNS())
        for (domain, problem) in providers.failures.sorted(by: { $0.key < $1.key }) {
            print("spf:\(domain): \(problem)", to: &standardError)
        }
        self.ruleSet = ruleSet
        self.client = ClientContext(address: IPAddress(address), authenticatedAs: nil)
        self.providers = providers.networks
        self.marker = CopyMarker(instance: instance)
        self.summary = "explain \(path) --instance \(instance) --client \(address)"
    }

    func problems(_ transaction: Transaction, _ transcript: Transcript) -> [String] {
        let explanation = Explanation.predict(
            ruleSet: ruleSet, recipients: transaction.recipients.map { ($0.wireForm, $0.arguments) },
            client: client, providers: providers, marked: false, marker: marker)
        var problems: [String] = []
        let answers = transcript.steps.compactMap { step -> (Transaction.Address, Transcript.Answer)? in
            if case .recipient(let address) = step.event { (address, step.answer) } else { nil }
        }
        for (decision, (address, answer)) in zip(explanation.decisions, answers) {
            let expected = ExplainCheck.outcome(decision.verdict)
            let received = ExplainCheck.outcome(answer)
            if expected != received {
                problems.append("rcpt \(address.wireForm): answered \(received), explain says \(expected)")
            }
        }
        if answers.count != explanation.decisions.count && transcript.failure == nil {
            problems.append("\(answers.count) rcpt steps for \(explanation.decisions.count) recipients")
        }
        // As Postfix: the message goes on when any recipient was accepted, and is refused otherwise.
        let accepted = explanation.decisions.contains { $0.verdict == .accept }
        if transcript.failure == nil, accepted != (transcript.verdict == .accept) {
            let expected = accepted ? "accept" : "all recipients refused"
            problems.append("verdict \(transcript.verdict?.rawValue ?? "none"), explain says \(expected)")
        }
        let expected = explanation.edits.edits.map(ExplainCheck.modification)
        let received = transcript.modifications.map(ExplainCheck.normalized)
        if transcript.failure == nil, expected != received {
            problems.append("modifications differ from explain")
            problems.append("  explain:  " + ExplainCheck.list(expected))
            problems.append("  received: " + ExplainCheck.list(received))
        }
        return problems
    }

    private static func list(_ modifications: [Modification]) -> String {
        modifications.isEmpty ? "none" : modifications.map(\.description).joined(separator: "; ")
    }

    /// The recipient's fate in one word: accept, reject or tempfail.
    static func outcome(_ verdict: Verdict) -> String {
        switch verdict {
        case .accept: "accept"
        case .reject: "reject"
        case .tempfail: "tempfail"
        }
    }

    /// A recipient the MTA did not wait on (no reply, not sent) counts as accepted, as Postfix
    /// counts it.
    static func outcome(_ answer: Transcript.Answer) -> String {
        switch answer {
        case .reply(.reject): "reject"
        case .reply(.tempfail): "tempfail"
        case .reply(.replyCode(let reply)): reply.code / 100 == 4 ? "tempfail" : "reject"
        case .reply(.continue), .reply(.accept): "accept"
        case .reply(let other): other.name
        case .notSent, .noReply: "accept"
        case .none, .missing: "no answer"
        }
    }

    /// The frame one edit becomes on the wire: `smfi_addrcpt_par` sends the address without
    /// brackets and the parameters as one string, which `normalized` splits into words.
    static func modification(_ edit: EnvelopeEdit) -> Modification {
        switch edit {
        case .deleteRecipient(let recipient): .deleteRecipient(recipient)
        case .addRecipient(let address, let parameters):
            normalized(.addRecipientWithArguments(address, arguments: [parameters]))
        case .addHeader(let name, let value): .addHeader(name: name, value: value)
        }
    }

    /// ESMTP arguments word by word, however the milter grouped them into strings (Postfix
    /// splits them on blanks itself).
    static func normalized(_ modification: Modification) -> Modification {
        guard case .addRecipientWithArguments(let address, let arguments) = modification else { return modification }
        let words = arguments.flatMap { $0.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init) }
        return .addRecipientWithArguments(address, arguments: words)
    }
}

extension LoadReport {
    /// The report as pretty-printed JSON with sorted keys.
    func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(self), as: UTF8.self) + "\n"
    }
}
