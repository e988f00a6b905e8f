/// The loaded rules: one immutable snapshot, looked up per recipient in O(1).
///
/// A `RuleSet` is a value: the daemon swaps a whole new one in on reload and each message keeps the
/// snapshot it started with. Users are keyed by lower-cased local part in hash sets, so a list of a
/// million users costs one hash lookup per recipient.

/// A rule as the administrator wrote it, for logs and `explain`: where it is and what it says.
public struct RuleReference: Sendable, Hashable, CustomStringConvertible {
    public let location: SourceLocation
    /// The directive, e.g. `copy %u@gapps.example.org`.
    public let text: String

    public init(location: SourceLocation, text: String) {
        self.location = location
        self.text = text
    }

    public var description: String { "\(location.fileAndLine) (\(text))" }
}

/// Which users of a domain the domain-wide `copy` and `rewrite` apply to.
public enum UserScope: Sendable, Hashable {
    case everyone
    case only(Set<String>)
    case except(Set<String>)

    /// `keys` are the lookup keys of one recipient, most specific first (see `UserKeys`).
    func includes(_ keys: UserKeys) -> Bool {
        switch self {
        case .everyone: true
        case .only(let users): keys.contains(where: users.contains)
        case .except(let users): !keys.contains(where: users.contains)
        }
    }
}

/// A copy or rewrite action and the rule it came from.
public struct CopyRule: Sendable, Hashable {
    public let targets: [AddressTemplate]
    public let reference: RuleReference
}

public struct RewriteRule: Sendable, Hashable {
    public let target: AddressTemplate
    public let reference: RuleReference
}

/// Per-user overrides (`user NAME copy …` / `user NAME rewrite …`).
public struct UserRule: Sendable, Hashable {
    public var copy: CopyRule?
    public var rewrite: RewriteRule?
    /// Replaces the domain's `allow-clients` for this user.
    public var allowClients: ClientAllowList?
}

/// The rules of one `domain` section.
public struct DomainRules: Sendable, Hashable {
    /// The section's names as written (`example.org`, `*.example.org`).
    public let names: [String]
    public let location: SourceLocation
    /// Characters that separate a local part from its extension (Postfix recipient_delimiter).
    public let delimiters: String
    public let scope: UserScope
    public let scopeReference: RuleReference?
    public let copy: CopyRule?
    public let rewrite: RewriteRule?
    public let users: [String: UserRule]
    public let guards: DomainGuard
}

public struct RuleSet: Sendable {
    /// Sections by exact domain (lower-case).
    let exact: [String: DomainRules]
    /// Sections by parent domain for `*.parent` names (lower-case, without `*.`).
    let subdomains: [String: DomainRules]
    /// Every file read to build this set (rule files and list files), in reading order.
    public let files: [String]
    public let trust: TrustPolicy
    /// The distinct sections, in file order.
    public let domains: [DomainRules]
    /// True when some rule adds copies: the daemon then needs SMFIF_ADDRCPT_PAR and the marker header.
    public let makesCopies: Bool
    /// True when some rule rewrites recipients: the daemon then needs SMFIF_DELRCPT.
    public let rewrites: Bool
    /// True when some recipient can be refused at RCPT: the daemon must then answer every RCPT.
    public let checksRecipients: Bool
    /// Every domain named in an `spf:` source, for the daemon to resolve and refresh.
    public let spfDomains: [String]

    public static let empty = RuleSet(exact: [:], subdomains: [:], files: [], trust: .default)

    /// The summary properties are computed here once: the daemon reads them per connection.
    init(exact: [String: DomainRules], subdomains: [String: DomainRules], files: [String], trust: TrustPolicy) {
        self.exact = exact
        self.subdomains = subdomains
        self.files = files
        self.trust = trust
        var seen = Set<SourceLocation>()
        let domains = (Array(exact.values) + Array(subdomains.values))
            .filter { seen.insert($0.location).inserted }
            .sorted { $0.location < $1.location }
        self.domains = domains
        makesCopies = domains.contains { $0.copy != nil || $0.users.values.contains { $0.copy != nil } }
        rewrites = domains.contains { $0.rewrite != nil || $0.users.values.contains { $0.rewrite != nil } }
        checksRecipients = domains.contains {
            $0.guards.isActive || $0.users.values.contains { $0.allowClients != nil }
        }
        var lists = domains.compactMap(\.guards.allowClients)
        lists += domains.flatMap { $0.users.values.compactMap(\.allowClients) }
        if let trusted = trust.networks { lists.append(trusted) }
        spfDomains = Array(Set(lists.flatMap(\.spfDomains))).sorted()
    }

    /// Counts for `check`'s summary line: the users each section names anywhere (user rules,
    /// only/except, known, allow-any), counted once per section.
    public var userCount: Int {
        domains.reduce(0) { total, domain in
            var named = domain.guards.knownUsers ?? []
            switch domain.scope {
            case .everyone: break
            case .only(let users), .except(let users): named.formUnion(users)
            }
            named.formUnion(domain.users.keys)
            named.formUnion(domain.guards.anyClientUsers)
            return total + named.count
        }
    }

    /// Copy, rewrite, known and allow-clients rules, domain-wide and per user.
    public var ruleCount: Int {
        func count(_ present: Bool...) -> Int { present.filter { $0 }.count }
        return domains.reduce(0) { total, domain in
            total
                + count(
                    domain.copy != nil, domain.rewrite != nil, domain.guards.knownUsers != nil,
                    domain.guards.allowClients != nil)
                + domain.users.values.reduce(0) {
                    $0 + count($1.copy != nil, $1.rewrite != nil, $1.allowClients != nil)
                }
        }
    }

    /// The section for `domain` (lower-case): an exact name first, then the nearest `*.parent`.
    public func section(for domain: String) -> DomainRules? {
        if let rules = exact[domain] { return rules }
        var rest = domain[...]
        while let dot = rest.firstIndex(of: ".") {
            rest = rest[rest.index(after: dot)...]
            if let rules = subdomains[String(rest)] { return rules }
        }
        return nil
    }
}

/// The lookup keys of a recipient's local part, most specific first: the full local part, then the
/// part before the extension. Lower-cased; at most two entries.
struct UserKeys: Sequence {
    let full: String
    let base: String?

    init(_ parts: RecipientParts) {
        full = parts.localPart.lowercased()
        let base = parts.base.lowercased()
        self.base = base == full ? nil : base
    }

    func makeIterator() -> IndexingIterator<[String]> {
        (base.map { [full, $0] } ?? [full]).makeIterator()
    }
}
