/// One milter connection's message logic, from MAIL to end of message, as a pure type: the
/// daemon's libmilter callbacks are a thin shell that hands each step to it, and the unit tests
/// drive it with a fake context that refuses edits outside end of message.
///
/// Invariants:
/// - RCPT decides and records; only end of message edits the envelope (libmilter refuses an edit
///   anywhere else, and a refused edit would be a message delivered without its copies).
/// - A connection carries several messages: MAIL, end of message and abort each start afresh.
/// - A failure that could not be answered when it happened (a step negotiated as no-reply) is
///   remembered and the message is refused with a temporary error at end of message: never a
///   message delivered without its edits.
/// - Every value from the client that reaches a log line is escaped by the log handler, not here.
/// - The counters add up to what Postfix did: a refusal is counted when it is answered, a copy or
///   a rewrite only once end of message has sent its edit (`SessionCounters`).
/// - Shadow rules change nothing Postfix does: their targets are never sent and their refusals
///   never answered. What they would do is logged as the live lines are, with `shadow ` before the
///   kind, and counted with `shadow: true`.

/// What a session asks of the MTA side: libmilter's context in the daemon, valid only inside the
/// callback that was handed it; a fake in the tests.
public protocol MilterActions {
    /// A macro's value (`i`, `{rcpt_addr}`), nil when the MTA did not send it.
    func macro(_ name: String) -> String?
    /// The reply for a refusal; the text holds no CR/LF (the shell makes sure).
    func setReply(code: String, enhanced: String, text: String) throws
    func addRecipient(_ address: String, parameters: AddedParameters) throws
    func deleteRecipient(_ recipient: String) throws
    func addHeader(name: String, value: String) throws
}

/// Log levels, as swift-log's, without depending on it.
public enum SessionLogLevel: Int, Sendable, Comparable {
    case debug, info, warning, error

    public static func < (left: Self, right: Self) -> Bool { left.rawValue < right.rawValue }
}

/// Where a session's log lines go. Lines are built only when `isEnabled` says they are wanted: at a
/// disabled level a message costs no string.
public protocol SessionLog: Sendable {
    func isEnabled(_ level: SessionLogLevel) -> Bool
    func write(_ level: SessionLogLevel, _ line: String)
}

extension SessionLog {
    func log(_ level: SessionLogLevel, _ line: @autoclosure () -> String) {
        if isEnabled(level) { write(level, line()) }
    }
}

/// A step's answer to the MTA.
public enum StepAnswer: Sendable, Equatable {
    case proceed
    case reject
    case tempfail
}

/// The protocol steps a session takes part in, for log lines and remembered failures.
public enum SessionStep: String, Sendable {
    case negotiate, connect, mail, rcpt, data, header, eom, abort
}

public final class FilterSession {
    public let rules: RuleSet
    public let providers: ProviderNetworks
    public let marker: CopyMarker
    let log: any SessionLog
    let counters: any SessionCounters

    // Exclusivity is not checked at run time on this state: libmilter never runs two callbacks of
    // one connection at once, and the checks cost more per message than the work they guard.
    @exclusivity(unchecked) public private(set) var plan = MessagePlan()
    /// The client as xxfi_connect gave it (nil address and port for a non-IP client); `.unknown`
    /// when the rules do not read it (`readsClient`).
    @exclusivity(unchecked) public private(set) var client = ClientContext.unknown
    /// Set when the plan could not hold every recipient, or a no-reply step failed: the message is
    /// then refused at end of message rather than delivered without its edits.
    @exclusivity(unchecked) public private(set) var failure: String?
    /// What end of message fills and empties again, lent to every message of the connection so
    /// that none makes its own: the plan's sets of addresses, the outcomes to count.
    @exclusivity(unchecked) var editSets = EditSets()
    @exclusivity(unchecked) var outcomes: [(outcome: RecipientOutcome, section: Int?)] = []

    public init(
        rules: RuleSet, providers: ProviderNetworks, marker: CopyMarker, log: any SessionLog,
        counters: any SessionCounters = NoCounters()
    ) {
        self.rules = rules
        self.providers = providers
        self.marker = marker
        self.log = log
        self.counters = counters
    }

    /// Whether the rules read the client at all: only a guard does (`RuleSet.checksRecipients`).
    /// Without one the session keeps none (`client` stays `.unknown`): nothing is made at CONNECT
    /// and MAIL, nothing but an empty value handed to every RCPT, and the shell need not ask the MTA
    /// for the client's login.
    public var readsClient: Bool { rules.checksRecipients }

    public func connect(hostName: String?, address: IPAddress?, port: UInt16?) {
        guard readsClient else { return }
        client = ClientContext(address: address, port: port, hostName: hostName, authenticatedAs: nil)
    }

    /// MAIL: a new message. `authenticatedAs` is `{auth_authen}`.
    public func mail(authenticatedAs: String?) {
        reset()
        guard readsClient else { return }
        client = ClientContext(
            address: client.address, port: client.port, hostName: client.hostName, authenticatedAs: authenticatedAs)
    }

    /// RCPT: decides the recipient and records the decision. `raw` is argv[0] as Postfix sent it, its
    /// bytes: the decision makes a string of them only when it must (`RecipientDecision.recipient`).
    public func recipient(
        _ raw: UnsafeBufferPointer<UInt8>, parameters: [String], actions: some MilterActions
    ) throws -> StepAnswer {
        counters.countRecipient()
        let decision = rules.decide(
            recipient: raw, parameters: parameters, client: client, providers: providers,
            resolved: { actions.macro("{rcpt_addr}") })
        switch decision.verdict {
        case .accept:
            if decision.guardWaived, let note = decision.guardNote {
                log.log(.info, "\(Self.queueID(actions)): rcpt=\(decision.recipient) \(note)")
            }
            if let refusal = decision.shadowRefusal { shadowRefused(decision, refusal, actions: actions) }
        case .reject(let reply, let because, let refusedBy), .tempfail(let reply, let because, let refusedBy):
            log.log(.info, "\(Self.queueID(actions)): reject: rcpt=\(decision.recipient) \(reply) (\(because))")
            try actions.setReply(code: reply.code, enhanced: reply.enhanced, text: reply.text)
            counters.count(refusedBy.outcome, section: decision.sectionPosition, shadow: false)
            return reply.code.hasPrefix("5") ? .reject : .tempfail
        }
        guard plan.record(decision) else {
            try actions.setReply(code: "452", enhanced: "4.5.3", text: "Too many recipients for splitmilter")
            return .tempfail
        }
        // Never an accept: that would end filtering of the message and skip end of message.
        return .proceed
    }

    /// A shadow guard would have refused the recipient: logged and counted, not answered.
    func shadowRefused(_ decision: RecipientDecision, _ refusal: Verdict, actions: some MilterActions) {
        switch refusal {
        case .accept: break
        case .reject(let reply, let because, let refusedBy), .tempfail(let reply, let because, let refusedBy):
            log.log(.info, "\(Self.queueID(actions)): shadow reject: rcpt=\(decision.recipient) \(reply) (\(because))")
            counters.count(refusedBy.outcome, section: decision.sectionPosition, shadow: true)
        }
    }

    /// RCPT without an address (libmilter passed none): nothing to decide.
    public func recipientWithoutAddress(actions: some MilterActions) -> StepAnswer {
        log.log(.warning, "\(Self.queueID(actions)): RCPT without an address; ignored")
        return .proceed
    }

    /// A header: only this instance's marker matters. The name is compared on its bytes; the
    /// value is made only for the marker's name.
    public func header(name: UnsafeRawBufferPointer, value: () -> String) {
        if !plan.carriesMarker, CopyMarker.isMarkerName(name),
            marker.matches(name: CopyMarker.headerName, value: value())
        {
            plan.carriesMarker = true
        }
    }

    /// End of message: the envelope edits, sent in order as the plan makes them, then the counts and
    /// the log lines; the session is then ready for the next message.
    public func endOfMessage(actions: some MilterActions) throws -> StepAnswer {
        defer { reset() }
        if let failure {
            log.log(.error, "\(Self.queueID(actions)): refusing the message: \(failure)")
            try actions.setReply(code: "451", enhanced: "4.3.0", text: "splitmilter: \(failure)")
            return .tempfail
        }
        for decision in plan.decisions {
            for problem in decision.problems {
                log.log(.warning, "\(Self.queueID(actions)): rcpt=\(decision.recipient) \(problem)")
            }
            for problem in decision.shadowProblems {
                log.log(.warning, "\(Self.queueID(actions)): rcpt=\(decision.recipient) shadow \(problem)")
            }
            if case .excluded(let rule) = decision.selection {
                log.log(
                    .debug,
                    "\(Self.queueID(actions)): rcpt=\(decision.recipient) no action: excluded rule=\(rule.location.fileAndLine)"
                )
            }
        }
        let logsEdits = log.isEnabled(.info)
        var sender = EditSender(
            actions: actions, outcomes: take(&outcomes), expected: plan.decisions.count, keepsForLog: logsEdits)
        try plan.edits(marker: marker, shadowRulesLive: false, into: &sender, sets: &editSets)
        let shadow = plan.shadowEdits(marker: marker)
        count(sender.outcomes, shadow: shadow)
        outcomes = sender.emptiedOutcomes()
        guard logsEdits else { return .proceed }
        let queueID = Self.queueID(actions)
        logEdits(sender.additions, sender.skipped, queueID: queueID, mark: "")
        logEdits(shadow.additions, shadow.skipped, queueID: queueID, mark: "shadow ")
        return .proceed
    }

    /// One line per addition and skip; `mark` goes before the kind.
    func logEdits(_ additions: [MessagePlan.Addition], _ skipped: [MessagePlan.Skip], queueID: String, mark: String) {
        for addition in additions {
            log.write(
                .info,
                "\(queueID): rcpt=\(addition.forRecipient) \(mark)\(addition.kind.rawValue)=\(addition.target.address) rule=\(addition.target.rule.location.fileAndLine)"
            )
        }
        for skip in skipped {
            log.write(
                .info,
                "\(queueID): rcpt=\(skip.forRecipient) \(mark)skipped=\(skip.target.address) reason=\"\(skip.reason)\" rule=\(skip.target.rule.location.fileAndLine)"
            )
        }
    }

    /// Counts a message whose edits were all sent: what each target came to (`live`, in the order
    /// sent: copies and rewrites, then duplicates), what the shadow rules would have made of them,
    /// and each recipient's problems or lack of any action.
    func count(
        _ live: [(outcome: RecipientOutcome, section: Int?)],
        shadow: (additions: [MessagePlan.Addition], skipped: [MessagePlan.Skip])
    ) {
        counters.countMessage()
        for sent in live where sent.outcome != .duplicate {
            counters.count(sent.outcome, section: sent.section, shadow: false)
        }
        for sent in live where sent.outcome == .duplicate {
            counters.count(.duplicate, section: sent.section, shadow: false)
        }
        for addition in shadow.additions {
            counters.count(addition.outcome, section: addition.decision.sectionPosition, shadow: true)
        }
        for skip in shadow.skipped {
            counters.count(.duplicate, section: skip.decision.sectionPosition, shadow: true)
        }
        for decision in plan.decisions {
            for _ in decision.problems {
                counters.count(.unsafe, section: decision.sectionPosition, shadow: false)
            }
            for _ in decision.shadowProblems {
                counters.count(.unsafe, section: decision.sectionPosition, shadow: true)
            }
            if decision.problems.isEmpty, decision.sentRewrite == nil,
                !decision.copies.contains(where: { !$0.isShadow })
            {
                counters.count(.none, section: decision.sectionPosition, shadow: false)
            }
        }
    }

    /// The message was aborted (RSET, a dropped client, a refusal by Postfix or another milter).
    public func abort() { reset() }

    /// A step failed with `error`. Answered steps refuse with 451 4.3.0; a step negotiated as
    /// no-reply (`canAnswer` false) cannot, so the failure is remembered for end of message.
    public func failed(_ step: SessionStep, _ error: any Error, canAnswer: Bool, actions: some MilterActions)
        -> StepAnswer
    {
        log.log(.error, "\(Self.queueID(actions)): \(step.rawValue): \(error); answering tempfail")
        guard canAnswer else {
            failure = "\(step.rawValue): \(error)"
            return .proceed
        }
        try? actions.setReply(
            code: "451", enhanced: "4.3.0", text: "splitmilter: temporary failure at \(step.rawValue)")
        return .tempfail
    }

    func reset() {
        plan.reset()
        failure = nil
    }

    static func queueID(_ actions: some MilterActions) -> String { actions.macro("i") ?? "NOQUEUE" }
}

/// The daemon's side of `MessagePlan.edits(marker:shadowRulesLive:into:)`: each planned edit sent to
/// the MTA as it comes, no list of them kept. What each addition and skip comes to is noted for the
/// counters, which count only once every edit was sent (a failed edit refuses the message, and then
/// nothing was copied); the additions and skips themselves are kept only for the log lines.
///
/// Not generic over the actions: the plan's `edits(into:)` is then specialized for this sink in this
/// module, where a sink generic over them went through witness tables at every edit (1,000 more
/// instructions a message at 10 recipients, 800 at 1).
struct EditSender: EditSink {
    let actions: any MilterActions
    let keepsForLog: Bool
    private(set) var outcomes: [(outcome: RecipientOutcome, section: Int?)] = []
    private(set) var additions: [MessagePlan.Addition] = []
    private(set) var skipped: [MessagePlan.Skip] = []

    /// `outcomes` is an empty array to fill, lent by the session (`emptiedOutcomes` gives it back).
    init(
        actions: some MilterActions, outcomes: [(outcome: RecipientOutcome, section: Int?)], expected recipients: Int,
        keepsForLog: Bool
    ) {
        self.actions = actions
        self.keepsForLog = keepsForLog
        self.outcomes = outcomes
        self.outcomes.reserveCapacity(recipients)
    }

    /// The outcomes' array, emptied, for the next message.
    mutating func emptiedOutcomes() -> [(outcome: RecipientOutcome, section: Int?)] {
        outcomes.removeAll(keepingCapacity: true)
        return take(&outcomes)
    }

    mutating func deleteRecipient(_ recipient: String) throws { try actions.deleteRecipient(recipient) }

    mutating func add(_ addition: MessagePlan.Addition, parameters: AddedParameters) throws {
        try actions.addRecipient(addition.target.address.description, parameters: parameters)
        outcomes.append((addition.outcome, addition.decision.sectionPosition))
        if keepsForLog { additions.append(addition) }
    }

    mutating func skip(_ skip: MessagePlan.Skip) {
        outcomes.append((.duplicate, skip.decision.sectionPosition))
        if keepsForLog { skipped.append(skip) }
    }

    mutating func addHeader(name: String, value: String) throws { try actions.addHeader(name: name, value: value) }
}

/// The value of `variable`, leaving an empty one in its place: the array moves without a copy.
@inline(__always)
func take<Element>(_ variable: inout [Element]) -> [Element] {
    var taken: [Element] = []
    swap(&taken, &variable)
    return taken
}
