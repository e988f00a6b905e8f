/// The per-recipient decision: which rule fires for one RCPT and what it asks for.
///
/// Made at RCPT time from an immutable `RuleSet`, so `milter-test explain` and the daemon reach the
/// same decision from the same input. Deciding never fails: a recipient the rules cannot serve gets
/// no action and a `problem` saying why, and is delivered as Postfix would without the milter.

/// A copy or rewrite target after filling in the template, with the rule that produced it.
///
/// A class, immutable: made once at RCPT, then referred to by the plan, its edits and its log
/// lines, each one retain.
public final class PlannedTarget: Sendable, Hashable, CustomStringConvertible {
    public let address: EnvelopeAddress
    public let rule: RuleReference

    init(address: EnvelopeAddress, rule: RuleReference) {
        self.address = address
        self.rule = rule
    }

    public var description: String { "\(address) (\(rule))" }

    public static func == (left: PlannedTarget, right: PlannedTarget) -> Bool {
        left.address == right.address && left.rule == right.rule
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(address)
        hasher.combine(rule)
    }
}

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
    public let recipient: String
    public let parameters: RecipientParameters
    /// nil when the argument could not be parsed.
    public let address: EnvelopeAddress?
    /// The `domain` section that matched, if any.
    public let section: SourceLocation?
    public let selection: Selection
    public let copies: [PlannedTarget]
    public let rewrite: PlannedTarget?
    /// Why a matched recipient gets less than its rules say (unsafe local part, bad rendering, …).
    public let problems: [String]
    /// The RCPT answer. A refused recipient has no copies and no rewrite.
    public let verdict: Verdict
    /// Why a guard let the recipient through (trusted client, allowed network, …), for logs and explain.
    public let guardNote: String?
    /// A guard would have refused the recipient, but the client is a local submission, which Postfix
    /// cannot refuse at RCPT (`ClientContext.isLocalSubmission`): accepted, and `guardNote` says so.
    public let guardWaived: Bool

    init(
        recipient: String, parameters: RecipientParameters, address: EnvelopeAddress?,
        section: SourceLocation?,
        selection: Selection, copies: [PlannedTarget], rewrite: PlannedTarget?, problems: [String],
        verdict: Verdict,
        guardNote: String?, guardWaived: Bool
    ) {
        self.recipient = recipient
        self.parameters = parameters
        self.address = address
        self.section = section
        self.selection = selection
        self.copies = copies
        self.rewrite = rewrite
        self.problems = problems
        self.verdict = verdict
        self.guardNote = guardNote
        self.guardWaived = guardWaived
    }

    public static func == (left: RecipientDecision, right: RecipientDecision) -> Bool {
        left.recipient == right.recipient
            && left.parameters == right.parameters
            && left.address == right.address
            && left.section == right.section
            && left.selection == right.selection
            && left.copies == right.copies
            && left.rewrite == right.rewrite
            && left.problems == right.problems
            && left.verdict == right.verdict
            && left.guardNote == right.guardNote
            && left.guardWaived == right.guardWaived
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(recipient)
        hasher.combine(parameters)
        hasher.combine(address)
        hasher.combine(section)
        hasher.combine(selection)
        hasher.combine(copies)
        hasher.combine(rewrite)
        hasher.combine(problems)
        hasher.combine(verdict)
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
        let dsn = parameters.isEmpty ? RecipientParameters() : RecipientParameters.parse(parameters)
        func outcome(
            _ address: EnvelopeAddress?, _ section: SourceLocation? = nil,
            _ selection: Selection = .noSection,
            copies: [PlannedTarget] = [], rewrite: PlannedTarget? = nil, problems: [String] = [],
            verdict: Verdict = .accept, note: String? = nil, waived: Bool = false
        ) -> RecipientDecision {
            let refused = verdict != .accept
            return RecipientDecision(
                recipient: recipient, parameters: dsn, address: address, section: section,
                selection: selection,
                copies: refused ? [] : copies, rewrite: refused ? nil : rewrite, problems: problems,
                verdict: verdict,
                guardNote: note, guardWaived: waived
            )
        }

        let address: EnvelopeAddress
        switch EnvelopeAddressParser.parse(recipient) {
        case .success(let parsed):
            address = parsed
        case .failure(let problem):
            // Only a recipient of a domain we have rules for deserves a word about why it got none,
            // and its domain's guards decide it: an unusable spelling must not escape them.
            guard let rules = unusableSection(recipient, resolved: resolved) else { return outcome(nil) }
            let guardResult = GuardCheck(
                rules: rules, trust: trust, recipient: recipient, keys: nil, userRule: nil, rewrite: nil,
                client: client, providers: providers
            ).verdict()
            return outcome(
                nil, rules.location, .unusable, problems: ["\(problem)"], verdict: guardResult.verdict,
                note: guardResult.note, waived: guardResult.waived)
        }
        guard !address.domain.isEmpty, let rules = section(for: address.domain) else {
            return outcome(address)
        }

        let parts = RecipientParts(address: address, delimiters: rules.delimiters)
        let keys = UserKeys(parts)
        let userRule = keys.firstMatch { rules.users[$0] }
        let inScope = rules.scope.includes(keys)
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
        let copyRule = userRule?.copy ?? (inScope ? rules.copy : nil)
        let rewriteRule = userRule?.rewrite ?? (inScope ? rules.rewrite : nil)

        var problems: [String] = []
        var copies: [PlannedTarget] = []
        if let copyRule {
            copies.reserveCapacity(copyRule.targets.count)
            for template in copyRule.targets {
                switch template.render(parts) {
                case .success(let target) where target.identity == address.identity:
                    problems.append(
                        "copy target \(target) is the recipient itself (\(copyRule.reference.location.fileAndLine))"
                    )
                case .success(let target):
                    copies.append(PlannedTarget(address: target, rule: copyRule.reference))
                case .failure(let problem):
                    problems.append("no copy: \(problem) (\(copyRule.reference.location.fileAndLine))")
                }
            }
        }
        var rewrite: PlannedTarget? = nil
        if let rule = rewriteRule {
            switch rule.target.render(parts) {
            case .success(let target) where target.identity == address.identity:
                break  // rewriting to itself changes nothing
            case .success(let target):
                rewrite = PlannedTarget(address: target, rule: rule.reference)
            case .failure(let problem):
                problems.append("no rewrite: \(problem) (\(rule.reference.location.fileAndLine))")
            }
        }
        guard rules.guards.isActive || userRule?.allowClients != nil else {
            return outcome(
                address, rules.location, selection, copies: copies, rewrite: rewrite, problems: problems)
        }
        let guardResult = GuardCheck(
            rules: rules, trust: trust, recipient: recipient, keys: keys, userRule: userRule,
            rewrite: rewrite.map { RecipientParts(address: $0.address, delimiters: rules.delimiters) },
            client: client, providers: providers
        ).verdict()
        return outcome(
            address, rules.location, selection, copies: copies, rewrite: rewrite, problems: problems,
            verdict: guardResult.verdict, note: guardResult.note, waived: guardResult.waived)
    }

    /// The section an unparsable recipient belongs to, as Postfix would route it: the domain of
    /// `{rcpt_addr}` (Postfix's own reading: `zed%example.org@this-host` is `zed@example.org` to it),
    /// else the rough domain of the argument as the client wrote it.
    func unusableSection(_ recipient: String, resolved: () -> String?) -> DomainRules? {
        if let resolved = resolved(), let domain = Self.roughDomain(of: resolved), let rules = section(for: domain) {
            return rules
        }
        return Self.roughDomain(of: recipient).flatMap { section(for: $0) }
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
