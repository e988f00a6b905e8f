/// `milter-test bench SOCKET -c CONNECTIONS -n MESSAGES -k RCPTS [--rules RULES]`: concurrent load
/// on a running milter, and, with `--rules`, every message's answer checked against what
/// `explain` computes for the same envelope. The load itself is MilterClient's `MilterLoad`;
/// this file reads options, makes the envelopes, and owns the check.
///
/// The check runs the daemon's own engine (`RuleSet.decide`, `MessagePlan.edits`) through
/// `Explanation.predict`, the function `explain` runs, never a second copy of the rules. Any
/// mismatch, protocol error or transcript warning fails the run (exit 1): a broken milter must
/// never look fast.
///
/// The driver must not be what limits the milter, so nothing is computed twice: envelopes made
/// from templates without tokens repeat (message n uses the templates from (n × RCPTS) mod their
/// count), so they are built once, and each worker remembers explain's answer per distinct
/// envelope and compares the milter's frames with it as they came.

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
                `send` runs it. The recipients come from the --rcpt-template list, used in \
                turn across the run (recipient i of the run from template i mod their count); \
                in a template %n is the recipient's number in the run (from 1), %m the \
                message's number (from 1), %% a percent sign; ESMTP arguments may follow the \
                address. The message is `send`'s, with --headers fields and a --body-size \
                body. Frames the milter does not answer are written together with the next \
                one it does (--no-coalesce: each at once, as Postfix writes them).

                Prints messages and recipients per second, the latency per message (p50, p99, \
                max; a connection's first message includes connecting and negotiating) and the \
                count of each verdict and modification kind; --json also the driver's own CPU \
                time per message.

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

        @Option(name: .customLong("headers"), help: "Header fields per message.")
        var headerCount = 5

        @Option(help: "Body bytes per message.")
        var bodySize = 45

        @Flag(help: "Write every frame at once, as Postfix does, not the unanswered ones with the next.")
        var noCoalesce = false

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
            for (name, value) in [("--headers", headerCount), ("--body-size", bodySize)] where value < 0 {
                throw ValidationError("\(name) must be 0 or more")
            }
            guard headerCount <= 1000, bodySize <= 64 << 20 else {
                throw ValidationError("--headers must be at most 1000 and --body-size at most 64 MiB")
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
            var report =
                if let check {
                    MilterLoad.run(try plan()) { CachedExplainCheck(check) }
                } else {
                    MilterLoad.run(try plan())
                }
            report.check = check?.summary
            print(json ? try report.json() : report.text, terminator: "")
            if report.failedMessages > 0 { throw ExitCode.failure }
        }

        private func plan() throws -> LoadPlan {
            let envelopes = try EnvelopeFactory(
                sender: from, client: ClientAddress(parsing: client), recipientsPerMessage: recipients,
                templates: recipientTemplates.map(RecipientTemplate.init), headerCount: headerCount,
                bodySize: bodySize)
            return LoadPlan(
                endpoint: try MilterEndpoint(parsing: socket), connections: connections, messages: messages,
                messagesPerConnection: messagesPerConnection, timeout: timeout, coalescing: !noCoalesce,
                transaction: envelopes.transaction)
        }
    }
}

/// A recipient template: an address with `%n` (recipient number), `%m` (message number) and `%%`,
/// then optional ESMTP arguments.
struct RecipientTemplate: Sendable {
    let text: String
    /// Whether `render` gives the same text for every recipient and message.
    var isFixed: Bool { !text.contains("%n") && !text.contains("%m") }

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
/// templates in turn across the run, the sample message, and a queue ID so the daemon's log
/// lines can be told apart.
///
/// When no template has a token, message n's recipients depend only on (n × recipients per
/// message) mod the template count: those envelopes and their messages are made once, here.
struct EnvelopeFactory: Sendable {
    let sender: Transaction.Address
    let client: ClientAddress
    let recipientsPerMessage: Int
    let templates: [RecipientTemplate]
    let headerCount: Int
    let bodySize: Int
    /// By the first template's index, when every template is fixed.
    private let fixed: [Int: (recipients: [Transaction.Address], message: MailMessage)]

    init(
        sender: String, client: ClientAddress, recipientsPerMessage: Int, templates: [RecipientTemplate],
        headerCount: Int = 5, bodySize: Int = 45
    ) {
        self.sender = Transaction.Address(parsing: sender)
        self.client = client
        self.recipientsPerMessage = recipientsPerMessage
        self.templates = templates
        self.headerCount = headerCount
        self.bodySize = bodySize
        var fixed: [Int: (recipients: [Transaction.Address], message: MailMessage)] = [:]
        if templates.allSatisfy(\.isFixed) {
            let rendered = templates.map { Transaction.Address(parsing: $0.text) }
            // The first templates that start a message: 0, k, 2k, … mod their count.
            var first = 0
            while fixed[first] == nil {
                let recipients = (0..<recipientsPerMessage).map { rendered[(first + $0) % rendered.count] }
                fixed[first] = (
                    recipients,
                    .sample(from: self.sender, to: recipients, headerCount: headerCount, bodySize: bodySize)
                )
                first = (first + recipientsPerMessage) % rendered.count
            }
        }
        self.fixed = fixed
    }

    func transaction(_ number: Int) -> Transaction {
        let first = number * recipientsPerMessage
        let recipients: [Transaction.Address]
        let message: MailMessage
        if let made = fixed[first % templates.count] {
            (recipients, message) = made
        } else {
            recipients = (first..<first + recipientsPerMessage).map { index in
                Transaction.Address(
                    parsing: templates[index % templates.count].render(recipient: index + 1, message: number + 1))
            }
            message = .sample(from: sender, to: recipients, headerCount: headerCount, bodySize: bodySize)
        }
        return Transaction(
            client: client, sender: sender, recipients: recipients, message: message,
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

    /// What explain says one envelope gets.
    struct Expected {
        /// Each recipient's fate: accept, reject or tempfail.
        let outcomes: [String]
        /// Whether the message goes on (some recipient accepted).
        let accepted: Bool
        /// The modifications as `wireModification` puts them on the wire (smfi_addrcpt_par
        /// with one parameter string), and with the parameters split into words.
        let modifications: [Modification]
        let normalizedModifications: [Modification]
    }

    func expected(_ recipients: [Transaction.Address]) -> Expected {
        let explanation = Explanation.predict(
            ruleSet: ruleSet, recipients: recipients.map { ($0.wireForm, $0.arguments) },
            client: client, providers: providers, marked: false, marker: marker)
        let modifications = explanation.edits.edits.map(ExplainCheck.wireModification)
        return Expected(
            outcomes: explanation.decisions.map { ExplainCheck.outcome($0.verdict) },
            accepted: explanation.decisions.contains { $0.verdict == .accept },
            modifications: modifications,
            normalizedModifications: modifications.map(ExplainCheck.normalized))
    }

    func problems(_ transcript: Transcript, expected: Expected) -> [String] {
        var problems: [String] = []
        var answered = 0
        var sameModifications = true
        var modification = 0
        for step in transcript.steps {
            if case .recipient(let address) = step.event {
                if answered < expected.outcomes.count {
                    let received = ExplainCheck.outcome(step.answer)
                    if expected.outcomes[answered] != received {
                        problems.append(
                            "rcpt \(address.wireForm): answered \(received), explain says \(expected.outcomes[answered])"
                        )
                    }
                }
                answered += 1
            }
            for received in step.modifications {
                sameModifications =
                    sameModifications && modification < expected.modifications.count
                    && expected.modifications[modification] == received
                modification += 1
            }
        }
        if answered != expected.outcomes.count && transcript.failure == nil {
            problems.append("\(answered) rcpt steps for \(expected.outcomes.count) recipients")
        }
        // As Postfix: the message goes on when any recipient was accepted, and is refused otherwise.
        if transcript.failure == nil, expected.accepted != (transcript.verdict == .accept) {
            let says = expected.accepted ? "accept" : "all recipients refused"
            problems.append("verdict \(transcript.verdict?.rawValue ?? "none"), explain says \(says)")
        }
        sameModifications = sameModifications && modification == expected.modifications.count
        // A milter may group ESMTP parameters into strings its own way: compare them word by word.
        if transcript.failure == nil, !sameModifications {
            let received = transcript.modifications.map(ExplainCheck.normalized)
            if received != expected.normalizedModifications {
                problems.append("modifications differ from explain")
                problems.append("  explain:  " + ExplainCheck.list(expected.normalizedModifications))
                problems.append("  received: " + ExplainCheck.list(received))
            }
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
    /// brackets and the parameters as one string.
    static func wireModification(_ edit: EnvelopeEdit) -> Modification {
        switch edit {
        case .deleteRecipient(let recipient): .deleteRecipient(recipient)
        case .addRecipient(let address, let parameters):
            .addRecipientWithArguments(address, arguments: [parameters.description])
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

/// One worker's check: explain's answer is computed once per distinct envelope (recipients and
/// their parameters), then every message with that envelope is compared with it.
struct CachedExplainCheck: MessageCheck {
    let check: ExplainCheck
    private var known: [[Transaction.Address]: ExplainCheck.Expected] = [:]

    init(_ check: ExplainCheck) { self.check = check }

    mutating func problems(_ number: Int, _ transaction: Transaction, _ transcript: Transcript) -> [String] {
        let expected: ExplainCheck.Expected
        if let found = known[transaction.recipients] {
            expected = found
        } else {
            expected = check.expected(transaction.recipients)
            // Bounded: templates with %n or %m make every envelope new.
            if known.count < 10_000 { known[transaction.recipients] = expected }
        }
        return check.problems(transcript, expected: expected)
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
