/// The per-recipient decision: which rule fires for one RCPT and what it asks for.
///
/// Made at RCPT time from an immutable `RuleSet`, so `milter-test explain` and the daemon reach the
/// same decision from the same input. Deciding never fails: a recipient the rules cannot serve gets
/// no action and a `problem` saying why, and is delivered as Postfix would without the milter.
///
/// Shadow rules decide as live ones do. Their targets are marked `.shadow` and never sent; a live
/// target whose rule a shadow user rule takes the place of is `.superseded` (sent now, not once the
/// shadow rule is live); a shadow guard's refusal is kept in `shadowRefusal` and the recipient
/// accepted. A section without shadow rules decides as before, at the same cost.

/// A copy or rewrite target after filling in the template, with the rule that produced it.
///
/// A class, immutable: made once at RCPT, then referred to by the plan, its edits and its log
/// lines, each one retain.
public final class PlannedTarget: Sendable, Hashable, CustomStringConvertible {
    public let address: EnvelopeAddress
    public let rule: RuleReference
    public let standing: Standing

    /// Whether a target is sent, now and once the shadow rules are live.
    public enum Standing: Sendable, Hashable {
        /// Sent, with or without the shadow rules.
        case live
        /// A shadow rule's target: not sent.
        case shadow
        /// Sent, but a shadow user rule of the recipient takes its rule's place: once that rule is
        /// live, this target is no longer sent.
        case superseded
    }

    init(address: EnvelopeAddress, rule: RuleReference, standing: Standing) {
        self.address = address
        self.rule = rule
        self.standing = standing
    }

    /// A shadow rule's target, never sent.
    public var isShadow: Bool { standing == .shadow }

    public var description: String { "\(address) (\(rule))" }

    public static func == (left: PlannedTarget, right: PlannedTarget) -> Bool {
        left.address == right.address && left.rule == right.rule && left.standing == right.standing
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(address)
        hasher.combine(rule)
        hasher.combine(standing)
    }
}

/// A recipient's copy targets: nearly every copied recipient has one, held inline (`OneOrMany`), so
/// its decision owns no array.
public typealias PlannedTargets = OneOrMany<PlannedTarget>

/// How a recipient was matched against its domain's section, for logs and `explain`.
public enum Selection: Sendable, Hashable {
    /// No section names the recipient's domain (or it has none).
    case noSection
    /// The recipient could not be used (see `problems`).
    case unusable
    /// A `user` rule names the recipient.
    case user(RuleReference)
    /// The domain-wide rules apply; the reference is the `only`/`except` line, if any.
    case domainWide(RuleReference?)
    /// The `only`/`except` line excludes the recipient from the domain-wide rules.
    case excluded(RuleReference)
}

/// A class, immutable: the plan keeps one per recipient and walks them several times at end of
/// message, and a reference is one retain where the value was eleven fields to copy.
public final class RecipientDecision: Sendable, Hashable {
    /// `xxfi_envrcpt` argv[0] exactly as Postfix sent it: `smfi_delrcpt` must match it byte for byte.
    public var recipient: String {
        if let spelledRecipient { return spelledRecipient }
        var inner = address?.description ?? ""
        return inner.withUTF8 { inner in
            String(unsafeUninitializedCapacity: inner.count + 2) { out in
                out[0] = UInt8(ascii: "<")
                let end = out[1...].initialize(fromContentsOf: inner)
                out[end] = UInt8(ascii: ">")
                return end + 1
            }
        }
    }
    /// argv[0] as a string, kept only when it is not `<` + `address` + `>`: nearly every one is, and
    /// its string is then made only when asked for (a delete, a log line), not for every recipient.
    private let spelledRecipient: String?
    public let parameters: RecipientParameters
    /// nil when the argument could not be parsed.
    public let address: EnvelopeAddress?
    /// The `domain` section that matched, if any, as its position in the rule set's `domains` (the
    /// counters count by it, `SessionCounters`; `domains[position].location` is its line). Decisions
    /// are compared within one rule set, where the position names the section.
    public let sectionPosition: Int?
    public let selection: Selection
    /// Every copy target: live, shadow and superseded ones (see `PlannedTarget.standing`).
    public let copies: PlannedTargets
    /// The rewrite the rules decide, shadow rules included: `.shadow` when a shadow rule decided it.
    public let rewrite: PlannedTarget?
    /// The RCPT answer. A refused recipient has no copies and no rewrite.
    public let verdict: Verdict
    /// Some shadow rule decided something for this recipient: a target, a problem or a refusal.
    public let involvesShadow: Bool
    /// What few decisions have (a problem, a guard's note, a shadow rule's effect), in one object
    /// that nearly every decision goes without: a decision is made and freed for every recipient of
    /// every message, and each field it holds is work at both ends.
    private let unusual: Unusual?

    /// The live rewrite that a shadow `rewrite` takes the place of: sent now (`.superseded`).
    public var supersededRewrite: PlannedTarget? { unusual?.supersededRewrite }
    /// Why a matched recipient gets less than its rules say (unsafe local part, bad rendering, …).
    public var problems: [String] { unusual?.problems ?? [] }
    /// The same, for what shadow rules would do.
    public var shadowProblems: [String] { unusual?.shadowProblems ?? [] }
    /// What a shadow guard would have answered, when it would refuse (never `.accept`): the
    /// recipient is accepted. nil when a live guard refused: shadow rules do nothing then.
    public var shadowRefusal: Verdict? { unusual?.shadowRefusal }
    /// Why a guard let the recipient through (trusted client, allowed network, …), for logs and explain.
    public var guardNote: String? { unusual?.guardNote }
    /// A guard would have refused the recipient, but the client is a local submission, which Postfix
    /// cannot refuse at RCPT (`ClientContext.isLocalSubmission`): accepted, and `guardNote` says so.
    public var guardWaived: Bool { unusual?.guardWaived ?? false }

    private final class Unusual: Sendable {
        let supersededRewrite: PlannedTarget?
        let problems: [String]
        let shadowProblems: [String]
        let shadowRefusal: Verdict?
        let guardNote: String?
        let guardWaived: Bool

        init(
            supersededRewrite: PlannedTarget?, problems: [String], shadowProblems: [String], shadowRefusal: Verdict?,
            guardNote: String?, guardWaived: Bool
        ) {
            self.supersededRewrite = supersededRewrite
            self.problems = problems
            self.shadowProblems = shadowProblems
            self.shadowRefusal = shadowRefusal
            self.guardNote = guardNote
            self.guardWaived = guardWaived
        }
    }

    /// `recipient` is nil when argv[0] is `<` + `address` + `>` (see `spelledRecipient`).
    init(
        recipient: String?, parameters: RecipientParameters, address: EnvelopeAddress?,
        sectionPosition: Int?,
        selection: Selection, copies: PlannedTargets, rewrite: PlannedTarget?, supersededRewrite: PlannedTarget?,
        problems: [String], shadowProblems: [String], verdict: Verdict, shadowRefusal: Verdict?,
        guardNote: String?, guardWaived: Bool, involvesShadow: Bool
    ) {
        spelledRecipient = recipient
        self.parameters = parameters
        self.address = address
        self.sectionPosition = sectionPosition
        self.selection = selection
        self.copies = copies
        self.rewrite = rewrite
        self.verdict = verdict
        self.involvesShadow = involvesShadow
        var usual =
            supersededRewrite == nil && problems.isEmpty && shadowProblems.isEmpty && guardNote == nil && !guardWaived
        if case .some = shadowRefusal { usual = false }
        unusual =
            usual
            ? nil
            : Unusual(
                supersededRewrite: supersededRewrite, problems: problems, shadowProblems: shadowProblems,
                shadowRefusal: shadowRefusal, guardNote: guardNote, guardWaived: guardWaived)
    }

    /// The rewrite sent now: the live one, also when a shadow rewrite would take its place.
    public var sentRewrite: PlannedTarget? { rewrite?.isShadow == true ? supersededRewrite : rewrite }

    public static func == (left: RecipientDecision, right: RecipientDecision) -> Bool {
        left.recipient == right.recipient
            && left.parameters == right.parameters
            && left.address == right.address
            && left.sectionPosition == right.sectionPosition
            && left.selection == right.selection
            && left.copies == right.copies
            && left.rewrite == right.rewrite
            && left.supersededRewrite == right.supersededRewrite
            && left.problems == right.problems
            && left.shadowProblems == right.shadowProblems
            && left.verdict == right.verdict
            && left.shadowRefusal == right.shadowRefusal
            && left.guardNote == right.guardNote
            && left.guardWaived == right.guardWaived
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(recipient)
        hasher.combine(parameters)
        hasher.combine(address)
        hasher.combine(sectionPosition)
        hasher.combine(selection)
        hasher.combine(copies)
        hasher.combine(rewrite)
        hasher.combine(supersededRewrite)
        hasher.combine(problems)
        hasher.combine(shadowProblems)
        hasher.combine(verdict)
        hasher.combine(shadowRefusal)
        hasher.combine(guardNote)
        hasher.combine(guardWaived)
    }

    /// The key used for duplicate checks: the parsed address case-folded, or the raw argument.
    var identity: String {
        address?.identity ?? recipient.trimmingAngleBrackets.caseFolded
    }
}

extension RuleSet {
    /// Decides what happens to one recipient. `parameters` are argv[1...] of `xxfi_envrcpt`;
    /// `client` and `providers` feed the guards (`allow-clients`, `known`). `resolved` is Postfix's
    /// own reading of the address (the `{rcpt_addr}` macro), asked for only when `recipient` cannot
    /// be parsed: a guard then still applies to the domain Postfix will route to.
    public func decide(
        recipient: String, parameters: [String] = [], client: ClientContext = .unknown,
        providers: ProviderNetworks = .empty, resolved: () -> String? = { nil }
    ) -> RecipientDecision {
        var bytes = recipient
        return bytes.withUTF8 {
            decide(
                recipient: $0, spelled: recipient, parameters: parameters, client: client, providers: providers,
                resolved: resolved)
        }
    }

    /// The same for argv[0] as libmilter hands it over, its bytes: a string of them is made only when
    /// it is not `<` + the address + `>` (`RecipientDecision.recipient`), or cannot be parsed.
    public func decide(
        recipient bytes: UnsafeBufferPointer<UInt8>, parameters: [String], client: ClientContext,
        providers: ProviderNetworks, resolved: () -> String?
    ) -> RecipientDecision {
        decide(
            recipient: bytes, spelled: nil, parameters: parameters, client: client, providers: providers,
            resolved: resolved)
    }

    /// `spelled` is `bytes` as a string, when the caller has one.
    func decide(
        recipient bytes: UnsafeBufferPointer<UInt8>, spelled: String?, parameters: [String], client: ClientContext,
        providers: ProviderNetworks, resolved: () -> String?
    ) -> RecipientDecision {
        let dsn = parameters.isEmpty ? RecipientParameters() : RecipientParameters.parse(parameters)
        // Made at most once, and only when needed.
        lazy var recipient = spelled ?? String(decoding: bytes, as: UTF8.self)
        /// `guarded` nil: no guard applies, the recipient is accepted with nothing to note (as
        /// nearly every one is; a guard's outcome is several optional values to copy and free).
        func outcome(
            _ address: EnvelopeAddress?, bracketed: Bool = false, _ position: Int? = nil,
            _ selection: Selection = .noSection, targets: Targets = Targets(),
            guarded: GuardCheck.Outcome? = nil
        ) -> RecipientDecision {
            guard let guarded else {
                return RecipientDecision(
                    recipient: bracketed ? nil : recipient, parameters: dsn, address: address,
                    sectionPosition: position,
                    selection: selection, copies: targets.copies, rewrite: targets.rewrite,
                    supersededRewrite: targets.supersededRewrite, problems: targets.problems,
                    shadowProblems: targets.shadowProblems, verdict: .accept, shadowRefusal: nil, guardNote: nil,
                    guardWaived: false, involvesShadow: targets.involvesShadow)
            }
            let refused = guarded.verdict != .accept
            return RecipientDecision(
                recipient: bracketed ? nil : recipient, parameters: dsn,
                address: address, sectionPosition: position,
                selection: selection,
                copies: refused ? [] : targets.copies, rewrite: refused ? nil : targets.rewrite,
                supersededRewrite: refused ? nil : targets.supersededRewrite,
                problems: targets.problems, shadowProblems: refused ? [] : targets.shadowProblems,
                verdict: guarded.verdict, shadowRefusal: guarded.shadowRefusal,
                guardNote: guarded.note, guardWaived: guarded.waived,
                involvesShadow: guarded.shadowRefusal != nil || (!refused && targets.involvesShadow)
            )
        }

        let address: EnvelopeAddress
        let bracketed: Bool
        switch EnvelopeAddressParser.parse(bytes: bytes) {
        case .parsed(let recipientAddress, let isBracketed):
            (address, bracketed) = (recipientAddress, isBracketed)
        case .unusable(let problem):
            // Only a recipient of a domain we have rules for deserves a word about why it got none,
            // and its domain's guards decide it: an unusable spelling must not escape them.
            guard let position = unusableSection(recipient, resolved: resolved) else { return outcome(nil) }
            let rules = domains[position]
            let guarded = GuardCheck(
                rules: rules, trust: trust, recipient: recipient, keys: nil, userRule: nil, rewrite: nil,
                sentRewrite: nil, client: client, providers: providers
            ).verdict()
            return outcome(nil, position, .unusable, targets: Targets(problems: ["\(problem)"]), guarded: guarded)
        }
        guard !address.domain.isEmpty, let position = sectionPosition(for: address.domain) else {
            return outcome(address, bracketed: bracketed)
        }
        let rules = domains[position]

        let parts = RecipientParts(address: address, delimiters: rules.delimiters)
        let keys = UserKeys(parts)
        let userRule = rules.userRule(keys)
        let inScope = rules.includes(keys)
        let selection: Selection
        if let reference = userRule?.copy?.reference ?? userRule?.rewrite?.reference {
            selection = .user(reference)
        } else if inScope {
            selection = .domainWide(rules.scopeReference)
        } else if let reference = rules.scopeReference {
            selection = .excluded(reference)
        } else {
            selection = .domainWide(nil)
        }
        let domainCopy = inScope ? rules.copy : nil
        let domainRewrite = inScope ? rules.rewrite : nil
        var targets = Targets()
        if let rule = userRule?.copy ?? domainCopy {
            targets.addCopies(rule, rule.reference.isShadow ? .shadow : .live, parts, recipient: address.identity)
        }
        if rules.hasShadow, let rule = superseded(userRule?.copy?.reference, domainCopy, \.reference) {
            targets.addCopies(rule, .superseded, parts, recipient: address.identity)
        }
        if let rule = userRule?.rewrite ?? domainRewrite {
            targets.rewrite = targets.render(
                rule, rule.reference.isShadow ? .shadow : .live, parts, recipient: address.identity)
        }
        if rules.hasShadow, let rule = superseded(userRule?.rewrite?.reference, domainRewrite, \.reference) {
            targets.supersededRewrite = targets.render(rule, .superseded, parts, recipient: address.identity)
        }
        guard rules.guards.isActive || userRule?.allowClients != nil else {
            return outcome(address, bracketed: bracketed, position, selection, targets: targets)
        }
        let guarded = GuardCheck(
            rules: rules, trust: trust, recipient: recipient, keys: keys, userRule: userRule,
            rewrite: targets.rewrite.map { RecipientParts(address: $0.address, delimiters: rules.delimiters) },
            sentRewrite: targets.sentRewrite.map { RecipientParts(address: $0.address, delimiters: rules.delimiters) },
            client: client, providers: providers
        ).verdict()
        return outcome(address, bracketed: bracketed, position, selection, targets: targets, guarded: guarded)
    }

    /// The live domain-wide rule that the recipient's shadow user rule (`user`'s reference) takes the
    /// place of: its targets are sent until the shadow rule is live.
    func superseded<Rule>(_ user: RuleReference?, _ domain: Rule?, _ reference: (Rule) -> RuleReference) -> Rule? {
        guard let user, user.isShadow, let domain, !reference(domain).isShadow else { return nil }
        return domain
    }

    /// The section an unparsable recipient belongs to, as Postfix would route it: the domain of
    /// `{rcpt_addr}` (Postfix's own reading: `zed%example.org@this-host` is `zed@example.org` to it),
    /// else the rough domain of the argument as the client wrote it. Its position in `domains`.
    func unusableSection(_ recipient: String, resolved: () -> String?) -> Int? {
        if let resolved = resolved(), let domain = Self.roughDomain(of: resolved),
            let position = sectionPosition(for: domain)
        {
            return position
        }
        return Self.roughDomain(of: recipient).flatMap { sectionPosition(for: $0) }
    }

    /// The longest argument read for its rough domain: libmilter's whole frame. Postfix's own line
    /// limit (2,048 bytes by default) keeps real arguments far below.
    static let maximumRoughLength = 65_536

    /// The domain of a recipient too broken to parse, read the way Postfix's tokenizer reads an
    /// address (docs/recipient-forms.md): a source route (`@a,@b:`) cut off, blanks, control characters and angle
    /// brackets dropped (inside quotes too), comments in parentheses dropped (but not inside quotes), quotes dropped, a
    /// backslash taking the next byte as it is; then the text after the last `@`, trailing dots
    /// dropped, lower-cased. Never nil for an argument with an `@` and something after it.
    static func roughDomain(of raw: String) -> String? {
        var bytes = raw.utf8.prefix(maximumRoughLength)[...]
        while let first = bytes.first,
            first == UInt8(ascii: " ") || first == UInt8(ascii: "\t")
                || first == UInt8(ascii: "<")
        {
            bytes = bytes.dropFirst()
        }
        if bytes.first == UInt8(ascii: "@"), let colon = bytes.firstIndex(of: UInt8(ascii: ":")) {
            bytes = bytes[bytes.index(after: colon)...]
        }
        var kept: [UInt8] = []
        kept.reserveCapacity(bytes.count)
        var depth = 0
        var quoted = false
        var escaped = false
        for byte in bytes {
            if escaped {
                escaped = false
                if depth == 0 { kept.append(asciiLowercased(byte)) }
                continue
            }
            switch byte {
            case UInt8(ascii: "\\"): escaped = true
            case UInt8(ascii: "\""): if depth == 0 { quoted.toggle() }
            case UInt8(ascii: "(") where !quoted: depth += 1
            case UInt8(ascii: ")") where !quoted && depth > 0: depth -= 1
            // Never part of a domain, quoted or not (an unclosed quote must not keep a '>'); a bare CR
            // and the other control characters are white space to Postfix's tokenizer, as a blank is.
            case 0...0x20, 0x7F, UInt8(ascii: "<"), UInt8(ascii: ">"): continue
            default: if depth == 0 { kept.append(asciiLowercased(byte)) }
            }
        }
        guard let at = kept.lastIndex(of: UInt8(ascii: "@")) else { return nil }
        var domain = kept[(at + 1)...]
        while domain.last == UInt8(ascii: ".") { domain = domain.dropLast() }
        return domain.isEmpty ? nil : String(decoding: domain, as: UTF8.self)
    }
}

/// A recipient's copy and rewrite targets while they are rendered, and what kept any from it.
struct Targets {
    var copies = PlannedTargets()
    var rewrite: PlannedTarget?
    var supersededRewrite: PlannedTarget?
    var problems: [String] = []
    var shadowProblems: [String] = []
    /// A shadow or superseded target, or a shadow problem, was made.
    var involvesShadow = false

    var sentRewrite: PlannedTarget? { rewrite?.isShadow == true ? supersededRewrite : rewrite }

    mutating func addCopies(
        _ rule: CopyRule, _ standing: PlannedTarget.Standing, _ parts: RecipientParts, recipient: String
    ) {
        if standing != .live { involvesShadow = true }
        // The one target nearly every rule has is taken as it is: a loop over the list copied the
        // rule's storage out at every step.
        if let only = rule.targets.only {
            addCopy(only, rule, standing, parts, recipient: recipient)
        } else {
            for template in rule.targets { addCopy(template, rule, standing, parts, recipient: recipient) }
        }
    }

    private mutating func addCopy(
        _ template: AddressTemplate, _ rule: CopyRule, _ standing: PlannedTarget.Standing, _ parts: RecipientParts,
        recipient: String
    ) {
        switch template.render(parts) {
        case .success(let target) where target.identity == recipient:
            problem("copy target \(target) is the recipient itself (\(rule.reference.location.fileAndLine))", standing)
        case .success(let target):
            copies.append(PlannedTarget(address: target, rule: rule.reference, standing: standing))
        case .failure(let why):
            problem("no copy: \(why) (\(rule.reference.location.fileAndLine))", standing)
        }
    }

    /// The rewrite target, or nil: rewriting to itself changes nothing, and a bad rendering is a problem.
    mutating func render(
        _ rule: RewriteRule, _ standing: PlannedTarget.Standing, _ parts: RecipientParts, recipient: String
    ) -> PlannedTarget? {
        if standing != .live { involvesShadow = true }
        switch rule.target.render(parts) {
        case .success(let target) where target.identity == recipient:
            return nil
        case .success(let target):
            return PlannedTarget(address: target, rule: rule.reference, standing: standing)
        case .failure(let why):
            problem("no rewrite: \(why) (\(rule.reference.location.fileAndLine))", standing)
            return nil
        }
    }

    mutating func problem(_ text: String, _ standing: PlannedTarget.Standing) {
        if standing == .shadow { shadowProblems.append(text) } else { problems.append(text) }
    }
}

extension String {
    /// Without blanks around it and without its angle brackets: the address a broken argument names.
    var trimmingAngleBrackets: String {
        var text = Substring(self)
        func trim() {
            while text.first == " " || text.first == "\t" { text = text.dropFirst() }
            while text.last == " " || text.last == "\t" { text = text.dropLast() }
        }
        trim()
        if text.first == "<", text.last == ">", text.count >= 2 {
            text = text.dropFirst().dropLast()
            trim()
        }
        return String(text)
    }
}
