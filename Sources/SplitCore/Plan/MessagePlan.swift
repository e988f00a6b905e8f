/// One message's plan: the decisions recorded at RCPT, turned into envelope edits at end-of-message.
///
/// Invariants of `edits()`, each one a way Postfix would otherwise deliver twice or lose mail
/// (docs/postfix-milter.md, "Deleting recipients", "Duplicate elimination"):
///   - every delete comes before every add, so a target that is also a rewritten-away recipient is
///     re-added after its delete, never cancelled by it;
///   - nothing is added that is already a remaining recipient or was already added (case-folded),
///     so two recipients that map to one copy give one copy;
///   - copies carry `NOTIFY=NEVER` (a failed copy never bounces to the sender) and the recipient
///     they were made for as `ORCPT`;
///   - a message that already carries this instance's marker header gets no copies at all;
///   - shadow targets are never sent: `edits` are those of the plan without them, and what the
///     shadow rules would do is what the plan would edit with them live (their targets in, the
///     targets they supersede and the recipients a shadow guard would refuse out), reported apart.

/// One change to the envelope, in the order the daemon must send it.
public enum EnvelopeEdit: Sendable, Hashable, CustomStringConvertible {
    /// `smfi_delrcpt` with argv[0] exactly as received.
    case deleteRecipient(String)
    /// `smfi_addrcpt_par(address, parameters)`.
    case addRecipient(String, parameters: AddedParameters)
    /// `smfi_addheader(name, value)`.
    case addHeader(name: String, value: String)

    public var description: String {
        switch self {
        case .deleteRecipient(let rcpt): "del-rcpt \(rcpt)"
        case .addRecipient(let rcpt, let parameters): "add-rcpt \(rcpt) \(parameters)"
        case .addHeader(let name, let value): "add-header \(name): \(value)"
        }
    }
}

/// The ESMTP parameters of an added recipient, as `smfi_addrcpt_par` takes them.
public enum AddedParameters: Sendable, Hashable, CustomStringConvertible {
    /// A copy's, `NOTIFY=NEVER ORCPT=rfc822;` and the recipient it was made for, xtext-encoded: kept
    /// as that text alone (nearly always the recipient's own address string) and written out only
    /// where it is sent (`withCString`), so a copy makes no string of its parameters.
    case copy(originalRecipient: String)
    /// Any other (a rewrite's), as its text.
    case text(String)

    static let copyPrefix: StaticString = "NOTIFY=NEVER ORCPT=rfc822;"

    public var description: String {
        switch self {
        case .copy(let original): "\(Self.copyPrefix)" + original
        case .text(let text): text
        }
    }

    /// Calls `body` with the parameters as one NUL-terminated string, valid only during the call: a
    /// copy's are written into memory of their own (on the stack when small).
    public func withCString(_ body: (UnsafePointer<CChar>) -> Void) {
        switch self {
        case .text(let text): text.withCString(body)
        case .copy(var original):
            original.withUTF8 { original in
                let prefix = Self.copyPrefix.utf8CodeUnitCount
                withUnsafeTemporaryAllocation(byteCount: prefix + original.count + 1, alignment: 1) { buffer in
                    let start = buffer.baseAddress.unsafelyUnwrapped
                    start.copyMemory(from: Self.copyPrefix.utf8Start, byteCount: prefix)
                    if let text = original.baseAddress {
                        (start + prefix).copyMemory(from: text, byteCount: original.count)
                    }
                    start.storeBytes(of: 0, toByteOffset: prefix + original.count, as: UInt8.self)
                    body(start.bindMemory(to: CChar.self, capacity: prefix + original.count + 1))
                }
            }
        }
    }
}

/// The header that marks a message this instance copied, so a later pass through the same instance
/// (a re-injection, a loop back through this MX) makes no further copies.
public struct CopyMarker: Sendable, Hashable {
    public static let headerName = "X-Splitmilter-Copied"
    /// Identifies this instance; copies are suppressed only for this exact value.
    public let instance: String

    public init(instance: String) { self.instance = instance }

    /// True when a received header is this instance's marker.
    public func matches(name: String, value: String) -> Bool {
        var name = name
        return name.withUTF8 { Self.isMarkerName(UnsafeRawBufferPointer($0)) }
            && value.trimmingBlanks == instance
    }

    /// True when a header name is the marker's, compared without case on its bytes: the daemon asks
    /// this of every header, before it makes a String of any value.
    public static func isMarkerName(_ name: UnsafeRawBufferPointer) -> Bool {
        guard name.count == headerNameBytes.count else { return false }
        for index in 0..<name.count where asciiLowercased(name[index]) != headerNameBytes[index] {
            return false
        }
        return true
    }

    static let headerNameBytes = Array(headerName.lowercased().utf8)
}

/// Where `MessagePlan.edits(marker:shadowRulesLive:into:)` puts the edits it plans, in the order
/// they must be sent: an addition comes with the parameters to send it with (its address is
/// `addition.target.address`), a skip with why.
public protocol EditSink {
    associatedtype Failure: Error
    mutating func deleteRecipient(_ recipient: String) throws(Failure)
    mutating func add(_ addition: MessagePlan.Addition, parameters: AddedParameters) throws(Failure)
    mutating func skip(_ skip: MessagePlan.Skip)
    mutating func addHeader(name: String, value: String) throws(Failure)
}

/// The planned edits as lists: `explain`, the tests, the shadow rules' comparison.
struct CollectedEdits: EditSink {
    var edits: [EnvelopeEdit] = []
    var additions: [MessagePlan.Addition] = []
    var skipped: [MessagePlan.Skip] = []

    init(expected recipients: Int) {
        edits.reserveCapacity(recipients * 2 + 1)
        additions.reserveCapacity(recipients)
    }

    mutating func deleteRecipient(_ recipient: String) { edits.append(.deleteRecipient(recipient)) }

    mutating func add(_ addition: MessagePlan.Addition, parameters: AddedParameters) {
        edits.append(.addRecipient(addition.target.address.description, parameters: parameters))
        additions.append(addition)
    }

    mutating func skip(_ skip: MessagePlan.Skip) { skipped.append(skip) }

    mutating func addHeader(name: String, value: String) { edits.append(.addHeader(name: name, value: value)) }
}

public struct MessagePlan: Sendable {
    /// Beyond this many recipients a message is refused with a temporary error rather than copied
    /// partially. Postfix's smtpd_recipient_limit defaults to 1000.
    public static let maximumRecipients = 10_000

    public private(set) var decisions: [RecipientDecision] = []
    /// Set when the message carries this instance's `CopyMarker`.
    public var carriesMarker = false
    /// Some decision involves a shadow rule: the edits are then planned a second time, as if the
    /// shadow rules were live.
    public private(set) var involvesShadow = false

    public init() {}

    /// The decisions' array a connection keeps from one message to the next (`reset`), and the size
    /// it is first made at: a connection's messages then allocate no array, nor grow one through
    /// 1, 2, 4, 8 recipients. A larger one (a message to many recipients) is let go.
    static let keptCapacity = 64
    static let firstCapacity = 8

    /// Records one RCPT decision; false when the message already has `maximumRecipients`.
    public mutating func record(_ decision: RecipientDecision) -> Bool {
        guard decisions.count < Self.maximumRecipients else { return false }
        if decisions.capacity == 0 { decisions.reserveCapacity(Self.firstCapacity) }
        decisions.append(decision)
        if decision.involvesShadow { involvesShadow = true }
        return true
    }

    /// Empty, as a new plan, for the next message; the decisions' array is kept when it is small.
    public mutating func reset() {
        if decisions.capacity > Self.keptCapacity {
            decisions = []
        } else {
            decisions.removeAll(keepingCapacity: true)
        }
        carriesMarker = false
        involvesShadow = false
    }

    /// What one planned addition is for, for logs, counters and `explain`.
    public struct Addition: Sendable, Hashable {
        public enum Kind: String, Sendable { case copy, rewrite }
        public let kind: Kind
        public let target: PlannedTarget
        /// The recipient's decision: its argument as sent, its section.
        public let decision: RecipientDecision

        public var forRecipient: String { decision.recipient }
        /// What the counters count it as.
        public var outcome: RecipientOutcome { kind == .copy ? .copy : .rewrite }
    }

    /// An addition that was planned but not sent, and why.
    public struct Skip: Sendable, Hashable {
        public let target: PlannedTarget
        public let decision: RecipientDecision
        public let reason: String

        public var forRecipient: String { decision.recipient }
    }

    public struct Edits: Sendable {
        /// What is sent: never a shadow target.
        public let edits: [EnvelopeEdit]
        public let additions: [Addition]
        public let skipped: [Skip]
        /// What the shadow rules would add, and the shadow targets they would not send (a duplicate,
        /// a marked message): never sent, for logs, counters and `explain`.
        public let shadowAdditions: [Addition]
        public let shadowSkipped: [Skip]
    }

    public func edits(marker: CopyMarker?) -> Edits {
        let live = edits(marker: marker, shadowRulesLive: false)
        let shadow = shadowEdits(marker: marker)
        return Edits(
            edits: live.edits, additions: live.additions, skipped: live.skipped,
            shadowAdditions: shadow.additions, shadowSkipped: shadow.skipped)
    }

    /// What the shadow rules would add and skip: the shadow targets of the edits the plan would make
    /// with its shadow rules live. Nothing when no decision involves a shadow rule.
    public func shadowEdits(marker: CopyMarker?) -> (additions: [Addition], skipped: [Skip]) {
        guard involvesShadow else { return ([], []) }
        let hypothetical = edits(marker: marker, shadowRulesLive: true)
        return (hypothetical.additions.filter(\.target.isShadow), hypothetical.skipped.filter(\.target.isShadow))
    }

    /// The edits of the live rules, or (`shadowRulesLive`) those the plan would make if its shadow
    /// rules were live, collected.
    func edits(marker: CopyMarker?, shadowRulesLive: Bool) -> Edits {
        var collected = CollectedEdits(expected: decisions.count)
        edits(marker: marker, shadowRulesLive: shadowRulesLive, into: &collected)
        return Edits(
            edits: collected.edits, additions: collected.additions, skipped: collected.skipped, shadowAdditions: [],
            shadowSkipped: [])
    }

    /// The same, each edit handed to `sink` in the order it must be sent (the daemon's end of message
    /// sends each as it comes, and keeps no list of them); a sink's failure stops the planning.
    public func edits<Sink: EditSink>(
        marker: CopyMarker?, shadowRulesLive: Bool, into sink: inout Sink
    ) throws(Sink.Failure) {
        var sets = EditSets()
        try edits(marker: marker, shadowRulesLive: shadowRulesLive, into: &sink, sets: &sets)
    }

    /// The same with the sets it fills lent by the caller: a session lends the same ones to every
    /// message, which then makes none.
    func edits<Sink: EditSink>(
        marker: CopyMarker?, shadowRulesLive: Bool, into sink: inout Sink, sets: inout EditSets
    ) throws(Sink.Failure) {
        func planned(_ decision: RecipientDecision) -> Bool { !shadowRulesLive || decision.shadowRefusal == nil }
        func rewrite(_ decision: RecipientDecision) -> PlannedTarget? {
            shadowRulesLive ? decision.rewrite : decision.sentRewrite
        }
        sets.empty(expecting: decisions.count)
        defer { sets.empty(expecting: 0) }
        for decision in decisions where planned(decision) {
            if rewrite(decision) != nil {
                let recipient = decision.recipient
                if sets.deleted.insert(recipient) { try sink.deleteRecipient(recipient) }
            } else {
                _ = sets.present.insert(decision.identity)
            }
        }
        // A recipient sent twice, once rewritten and once not, stays: its delete cancels both records.
        for decision in decisions where planned(decision) {
            guard let target = rewrite(decision) else { continue }
            if sets.present.insert(target.address.identity) {
                try sink.add(
                    Addition(kind: .rewrite, target: target, decision: decision),
                    parameters: rewriteParameters(decision))
            } else {
                sink.skip(Skip(target: target, decision: decision, reason: "already a recipient"))
            }
        }
        var copies = 0
        // With the shadow rules live, the live copies first: a shadow copy that one of them already
        // makes is a skip.
        for pass in 0..<(shadowRulesLive ? 2 : 1) {
            for decision in decisions where planned(decision) {
                for target in decision.copies where Self.plansCopy(target, pass: pass, shadowRulesLive: shadowRulesLive)
                {
                    if carriesMarker {
                        sink.skip(Skip(target: target, decision: decision, reason: "message was already copied here"))
                    } else if sets.present.insert(target.address.identity) {
                        try sink.add(
                            Addition(kind: .copy, target: target, decision: decision),
                            parameters: copyParameters(decision))
                        copies += 1
                    } else {
                        sink.skip(Skip(target: target, decision: decision, reason: "already a recipient or copy"))
                    }
                }
            }
        }
        if copies > 0, let marker {
            try sink.addHeader(name: CopyMarker.headerName, value: marker.instance)
        }
    }

    /// Whether a copy target is planned in this pass: live and superseded ones in the one pass of
    /// the live rules; live ones, then shadow ones, with the shadow rules live.
    static func plansCopy(_ target: PlannedTarget, pass: Int, shadowRulesLive: Bool) -> Bool {
        guard shadowRulesLive else { return target.standing != .shadow }
        return target.standing == (pass == 0 ? .live : .shadow)
    }

    /// `ORCPT=rfc822;<recipient>`: the recipient this hop received, xtext-encoded.
    static func originalRecipient(_ decision: RecipientDecision) -> String {
        "rfc822;" + originalRecipientText(decision)
    }

    static func originalRecipientText(_ decision: RecipientDecision) -> String {
        XText.encode(decision.address?.description ?? decision.recipient.trimmingAngleBrackets)
    }

    func copyParameters(_ decision: RecipientDecision) -> AddedParameters {
        .copy(originalRecipient: Self.originalRecipientText(decision))
    }

    /// A rewrite keeps the client's NOTIFY (if it gave one) and its ORCPT, or names the original.
    func rewriteParameters(_ decision: RecipientDecision) -> AddedParameters {
        let original =
            "ORCPT=" + (decision.parameters.originalRecipient ?? Self.originalRecipient(decision))
        guard let notify = decision.parameters.notify else { return .text(original) }
        return .text("NOTIFY=" + notify + " " + original)
    }
}

/// What `MessagePlan.edits` fills: the recipients deleted, and the recipients that stay and every
/// address added (nothing is added twice).
struct EditSets {
    var deleted = FewStrings()
    var present = FewStrings()

    /// Empty, with room for a message of `recipients`; what was made for earlier messages is kept.
    mutating func empty(expecting recipients: Int) {
        deleted.empty(room: recipients)
        present.empty(room: recipients * 2)
    }
}

/// A set of strings sized for a message's recipients: a scan of an array while it holds few (a
/// message has one or two recipients more often than not, and a scan compares no hashes), a hash
/// set once it holds more. The array is made once, at its full size, at the first insert: growing
/// it from empty made three or four arrays a message.
struct FewStrings {
    static let scanLimit = 16
    /// Each string with its length in bytes, compared first: most recipients differ in length,
    /// and that test reads no byte of either.
    private var few: [(length: Int, text: String)] = []
    private var many: Set<String>?
    private var room = 1

    /// Empty, with room for `expected` strings before any array grows; the array made for earlier
    /// strings is kept (a set made for many is let go).
    mutating func empty(room expected: Int) {
        few.removeAll(keepingCapacity: true)
        many = nil
        room = min(max(expected, 1), Self.scanLimit)
    }

    /// Inserts `text`; false when it was already there.
    mutating func insert(_ text: String) -> Bool {
        if let inserted = many?.insert(text).inserted { return inserted }
        let length = text.utf8.count
        for entry in few where entry.length == length && entry.text == text { return false }
        if few.count < Self.scanLimit {
            if few.capacity < room { few.reserveCapacity(room) }
            few.append((length, text))
        } else {
            var set = Set<String>(minimumCapacity: 2 * Self.scanLimit)
            for entry in few { set.insert(entry.text) }
            set.insert(text)
            many = set
            few = []
        }
        return true
    }
}

extension String {
    /// Without leading and trailing blanks and line breaks (a folded header value may end in one).
    var trimmingBlanks: String {
        let blanks: Set<Unicode.Scalar> = [" ", "\t", "\r", "\n"]
        var scalars = Substring(self).unicodeScalars[...]
        while let first = scalars.first, blanks.contains(first) { scalars = scalars.dropFirst() }
        while let last = scalars.last, blanks.contains(last) { scalars = scalars.dropLast() }
        return String(String.UnicodeScalarView(scalars))
    }
}
