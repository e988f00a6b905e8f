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
    public var copy: CopyRule? {
        get { storage.copy }
        set { unique().copy = newValue }
    }
    public var rewrite: RewriteRule? {
        get { storage.rewrite }
        set { unique().rewrite = newValue }
    }
    /// Replaces the domain's `allow-clients` for this user.
    public var allowClients: ClientAllowList? {
        get { storage.allowClients }
        set { unique().allowClients = newValue }
    }

    public init() {}

    /// The three rules live in one heap object, copied on write: a section with a million users
    /// keeps a million references in its table, not a million inline copies of three optional rules
    /// (and a table resize moves 8 bytes per user, not 200).
    private var storage = Storage()

    private mutating func unique() -> Storage {
        if !isKnownUniquelyReferenced(&storage) { storage = storage.duplicate() }
        return storage
    }

    /// Mutated only through `unique()`, i.e. never while shared: safe to send.
    private final class Storage: @unchecked Sendable {
        var copy: CopyRule?
        var rewrite: RewriteRule?
        var allowClients: ClientAllowList?

        func duplicate() -> Storage {
            let other = Storage()
            other.copy = copy
            other.rewrite = rewrite
            other.allowClients = allowClients
            return other
        }
    }

    public static func == (left: UserRule, right: UserRule) -> Bool {
        left.copy == right.copy && left.rewrite == right.rewrite && left.allowClients == right.allowClients
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(copy)
        hasher.combine(rewrite)
        hasher.combine(allowClients)
    }
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
        // One pass over every user rule (a million-line file has a million): flags, counts, lists.
        var makesCopies = false
        var rewrites = false
        var checksRecipients = false
        var lists: [ClientAllowList] = []
        var userCount = 0
        var ruleCount = 0
        for domain in domains {
            makesCopies = makesCopies || domain.copy != nil
            rewrites = rewrites || domain.rewrite != nil
            checksRecipients = checksRecipients || domain.guards.isActive
            if let list = domain.guards.allowClients { lists.append(list) }
            for present in [domain.copy != nil, domain.rewrite != nil, domain.guards.knownUsers != nil] where present {
                ruleCount += 1
            }
            if domain.guards.allowClients != nil { ruleCount += 1 }
            for rule in domain.users.values {
                if rule.copy != nil {
                    makesCopies = true
                    ruleCount += 1
                }
                if rule.rewrite != nil {
                    rewrites = true
                    ruleCount += 1
                }
                if let list = rule.allowClients {
                    checksRecipients = true
                    lists.append(list)
                    ruleCount += 1
                }
            }
            userCount += Self.namedUsers(domain)
        }
        self.makesCopies = makesCopies
        self.rewrites = rewrites
        self.checksRecipients = checksRecipients
        self.userCount = userCount
        self.ruleCount = ruleCount
        if let trusted = trust.networks { lists.append(trusted) }
        spfDomains = Array(Set(lists.flatMap(\.spfDomains))).sorted()
    }

    /// Counts for `check`'s summary line: the users each section names anywhere (user rules,
    /// only/except, known, allow-any), counted once per section.
    public let userCount: Int

    /// Copy, rewrite, known and allow-clients rules, domain-wide and per user.
    public let ruleCount: Int

    /// The distinct users a section names, without building their union: each list counts the
    /// names that no list before it has.
    static func namedUsers(_ domain: DomainRules) -> Int {
        let scoped: Set<String>
        switch domain.scope {
        case .everyone: scoped = []
        case .only(let users), .except(let users): scoped = users
        }
        let known = domain.guards.knownUsers ?? []
        var count = domain.users.count
        count += known.count { domain.users[$0] == nil }
        count += scoped.count { domain.users[$0] == nil && !known.contains($0) }
        count += domain.guards.anyClientUsers.count {
            domain.users[$0] == nil && !known.contains($0) && !scoped.contains($0)
        }
        return count
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
        full = parts.localPart.caseFolded
        let base = parts.base.caseFolded
        self.base = base == full ? nil : base
    }

    /// Without an array: asked on every RCPT, at most twice.
    func contains(where predicate: (String) -> Bool) -> Bool {
        predicate(full) || (base.map(predicate) ?? false)
    }

    /// The first non-nil `transform` of the keys, most specific first.
    func firstMatch<T>(_ transform: (String) -> T?) -> T? {
        transform(full) ?? base.flatMap(transform)
    }

    func makeIterator() -> IndexingIterator<[String]> {
        (base.map { [full, $0] } ?? [full]).makeIterator()
    }
}
