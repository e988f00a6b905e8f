/// The record of one MTA-side milter session: what was negotiated, each step sent (or not
/// sent) with the milter's answer and any modifications, and the final verdict. It renders
/// as stable text (one line per step, modifications indented) and as JSON (`Encodable`).
///
///     negotiate version 6 actions ADDHDRS,ADDRCPT steps NR_HDR,SKIP
///     connect unknown 127.0.0.1:0 -> continue
///     rcpt <b@example.org> -> reject
///     header Subject: hi -> no reply (NR_HDR)
///     eom -> continue
///       add-rcpt <x@example.org>
///     quit
///     verdict accept

extension Transcript {
    /// How the MTA ends up treating the message.
    public enum Verdict: String, Sendable, Encodable {
        case accept, reject, tempfail, discard
    }

    /// One thing the MTA told the milter.
    public enum Event: Hashable, Sendable, CustomStringConvertible {
        case connect(hostname: String, address: ClientAddress)
        case helo(String)
        case mail(Transaction.Address)
        case recipient(Transaction.Address)
        case data
        case header(name: String, value: String)
        case endOfHeaders
        case body(length: Int)
        case endOfMessage
        case abort
        case quit

        public var name: String {
            switch self {
            case .connect: "connect"
            case .helo: "helo"
            case .mail: "mail"
            case .recipient: "rcpt"
            case .data: "data"
            case .header: "header"
            case .endOfHeaders: "eoh"
            case .body: "body"
            case .endOfMessage: "eom"
            case .abort: "abort"
            case .quit: "quit"
            }
        }

        public var arguments: [String] {
            switch self {
            case .connect(let hostname, let address):
                switch address {
                case .inet(let ip, let port): [hostname, "\(ip):\(port)"]
                case .inet6(let ip, let port): [hostname, "[\(ip)]:\(port)"]
                case .unix(let path): [hostname, "unix:\(path)"]
                case .unknown: [hostname]
                }
            case .helo(let name): [name]
            case .mail(let address), .recipient(let address): [address.wireForm] + address.arguments
            case .header(let name, let value): [name, value]
            case .body(let length): ["\(length)"]
            case .data, .endOfHeaders, .endOfMessage, .abort, .quit: []
            }
        }

        public var description: String {
            switch self {
            case .header(let name, let value): "header \(escaped(name)): \(escaped(value))"
            case .body(let length): "body \(length) bytes"
            default: ([name] + arguments).map { escaped($0) }.joined(separator: " ")
            }
        }
    }

    /// What came back for one step.
    public enum Answer: Hashable, Sendable {
        /// The milter asked not to be sent this event (an SMFIP_NO* step); its macros still went.
        case notSent(ProtocolSteps)
        /// Sent, but the milter asked not to answer it (an SMFIP_NR_* step).
        case noReply(ProtocolSteps)
        /// Sent, and the milter answered.
        case reply(Reply)
        /// Sent, and the protocol has no answer for it (abort, quit).
        case none
        /// Sent, and the session failed before an answer arrived.
        case missing
    }

    /// One step of the session.
    public struct Step: Hashable, Sendable {
        public var event: Event
        public var macros: [Macro]
        public var answer: Answer
        /// How many SMFIR_PROGRESS frames came before the answer.
        public var progress: Int
        public var modifications: [Modification]

        public init(
            event: Event,
            macros: [Macro] = [],
            answer: Answer,
            progress: Int = 0,
            modifications: [Modification] = []
        ) {
            self.event = event
            self.macros = macros
            self.answer = answer
            self.progress = progress
            self.modifications = modifications
        }
    }

}

/// The whole session.
public struct Transcript: Hashable, Sendable {
    /// What the MTA offered.
    public var offer: Negotiation
    /// What the milter answered, once it has.
    public var negotiated: Negotiation?
    public var steps: [Step]
    /// Things a real MTA would let pass but a milter author should hear about.
    public var warnings: [String]
    /// Nil when the session failed before a verdict.
    public var verdict: Verdict?
    /// Why the verdict, when the last answer alone does not say: "all recipients refused".
    public var reason: String?
    /// The protocol or connection error that ended the session early.
    public var failure: String?

    public init(offer: Negotiation) {
        self.offer = offer
        self.negotiated = nil
        self.steps = []
        self.warnings = []
        self.verdict = nil
        self.reason = nil
        self.failure = nil
    }

    /// Every modification, in the order the milter sent them.
    public var modifications: [Modification] { steps.flatMap(\.modifications) }

    /// The stable text form; with `macros`, each step's macros on an indented line.
    public func text(macros showMacros: Bool = false) -> String {
        var lines: [String] = []
        if let negotiated {
            lines.append(
                "negotiate version \(negotiated.version) actions \(list(negotiated.actions.names)) "
                    + "steps \(list(negotiated.steps.names))"
            )
            for (stage, names) in negotiated.macroLists.sorted(by: { $0.key < $1.key }) {
                lines.append("  macro-list \(stage.cName): \(names.joined(separator: " "))")
            }
        }
        for step in steps {
            if showMacros && !step.macros.isEmpty {
                lines.append("  macros " + step.macros.map { "\($0.name)=\(escaped($0.value))" }.joined(separator: " "))
            }
            lines.append(step.line)
            lines += step.modifications.map { "  \($0)" }
        }
        lines += warnings.map { "warning: \($0)" }
        if let failure { lines.append("error: \(failure)") }
        if let verdict { lines.append("verdict \(verdict.rawValue)" + (reason.map { " (\($0))" } ?? "")) }
        return lines.joined(separator: "\n") + "\n"
    }

    private func list(_ names: [String]) -> String { names.isEmpty ? "none" : names.joined(separator: ",") }
}

extension Transcript.Step {
    /// `rcpt <a@b> -> reject`, `eom -> continue (2 progress)`, `quit`.
    var line: String {
        let answerText: String? =
            switch answer {
            case .notSent(let flag): "not sent (\(flag.names.joined(separator: ",")))"
            case .noReply(let flag): "no reply (\(flag.names.joined(separator: ",")))"
            case .reply(let reply): reply.description
            case .none: nil
            case .missing: "no answer"
            }
        guard let answerText else { return event.description }
        let progressText = progress > 0 ? " (\(progress) progress)" : ""
        return "\(event) -> \(answerText)\(progressText)"
    }
}

// MARK: JSON

extension Negotiation: Encodable {
    private enum Key: String, CodingKey { case version, actions, steps, macroLists }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Key.self)
        try container.encode(version, forKey: .version)
        try container.encode(actions.names, forKey: .actions)
        try container.encode(steps.names, forKey: .steps)
        if !macroLists.isEmpty {
            try container.encode(
                Dictionary(uniqueKeysWithValues: macroLists.map { ($0.key.cName, $0.value) }),
                forKey: .macroLists
            )
        }
    }
}

extension Transcript.Step: Encodable {
    private enum Key: String, CodingKey {
        case step, arguments, macros, reply, notSent, noReply, missing, progress, modifications, text
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Key.self)
        try container.encode(event.name, forKey: .step)
        try container.encode(event.arguments, forKey: .arguments)
        if !macros.isEmpty {
            try container.encode(
                Dictionary(macros.map { ($0.name, $0.value) }, uniquingKeysWith: { _, last in last }),
                forKey: .macros
            )
        }
        switch answer {
        case .notSent(let flag): try container.encode(flag.names, forKey: .notSent)
        case .noReply(let flag): try container.encode(flag.names, forKey: .noReply)
        case .reply(let reply): try container.encode(reply, forKey: .reply)
        case .missing: try container.encode(true, forKey: .missing)
        case .none: break
        }
        if progress > 0 { try container.encode(progress, forKey: .progress) }
        if !modifications.isEmpty { try container.encode(modifications, forKey: .modifications) }
        try container.encode(line, forKey: .text)
    }
}

extension Transcript: Encodable {
    private enum Key: String, CodingKey { case offer, negotiated, steps, warnings, verdict, reason, error }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Key.self)
        try container.encode(offer, forKey: .offer)
        try container.encodeIfPresent(negotiated, forKey: .negotiated)
        try container.encode(steps, forKey: .steps)
        try container.encode(warnings, forKey: .warnings)
        try container.encodeIfPresent(verdict, forKey: .verdict)
        try container.encodeIfPresent(reason, forKey: .reason)
        try container.encodeIfPresent(failure, forKey: .error)
    }
}
