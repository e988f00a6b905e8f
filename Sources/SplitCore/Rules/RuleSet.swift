/// The loaded rules: one immutable snapshot, looked up per recipient in O(1).
///
/// A `RuleSet` is a value: the daemon swaps a whole new one in on reload and each message keeps the
/// snapshot it started with. Users are keyed by lower-cased local part in hash sets, so a list of a
/// million users costs one hash lookup per recipient.
///
/// Built for rule files of a million lines: a rule keeps no text of its own (its `RuleReference`
/// points into the file's bytes, which the set keeps), a user's rules are one small object, and a
/// section is one reference wherever it is stored.
///
/// A shadow rule is an ordinary rule whose reference is marked (`RuleReference.isShadow`): it is
/// stored, looked up and decided like any other, so it costs nothing more to load, and a section
/// without one (`DomainRules.hasShadow`) costs nothing more to decide.

/// The bytes of one rule file, shared by every rule written in it: a rule's text is rebuilt from its
/// line when asked for (logs, `explain`), not stored once per line.
final class RuleFileText: Sendable {
    let path: String
    let bytes: [UInt8]
    /// Set for a reference made from a location and a text (`RuleReference(location:text:)`):
    /// `bytes` is then that text, as given.
    let verbatim: SourceLocation?

    init(path: String, bytes: [UInt8], verbatim: SourceLocation? = nil) {
        self.path = path
        self.bytes = bytes
        self.verbatim = verbatim
    }

    /// The words of the line that starts at `offset`, joined by single blanks: separators are
    /// blanks, tabs, carriage returns and commas, and `#` ends the line (as the parser reads it).
    func joinedWords(from offset: Int) -> String {
        bytes.withUnsafeBufferPointer { all in
            var end = offset
            while end < all.count, all[end] != UInt8(ascii: "\n"), all[end] != UInt8(ascii: "#") { end += 1 }
            return String(unsafeUninitializedCapacity: end - offset) { out in
                var count = 0
                var inWord = false
                for index in offset..<end {
                    let byte = all[index]
                    if isWordSeparator(byte) {
                        inWord = false
                        continue
                    }
                    if !inWord, count > 0 {
                        out[count] = UInt8(ascii: " ")
                        count += 1
                    }
                    inWord = true
                    out[count] = byte
                    count += 1
                }
                return count
            }
        }
    }
}

/// Blanks, tabs, carriage returns and commas separate the words of a rule line.
@inline(__always)
func isWordSeparator(_ byte: UInt8) -> Bool {
    byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: ",") || byte == UInt8(ascii: "\r")
}

/// A rule as the administrator wrote it, for logs and `explain`: where it is, what it says, and
/// whether it is a shadow rule.
///
/// Twenty-one bytes (the stride of the twenty it was before): the file (shared), the line's offset
/// in it, its number, the directive's column and the shadow mark.
public struct RuleReference: Sendable, Hashable, CustomStringConvertible {
    let file: RuleFileText
    let offset: UInt32
    let line: UInt32
    let column: UInt32
    /// A shadow rule: written after `shadow`, in a section with a `shadow` line, or loaded for a dry
    /// run. It decides as a live rule would; its targets are not sent and its refusals not answered,
    /// only logged.
    public let isShadow: Bool

    /// A rule that starts at byte `offset` of `file` (files are at most 1 GiB: offsets, lines and
    /// columns fit 32 bits).
    init(file: RuleFileText, offset: Int, line: Int, column: Int, shadow: Bool = false) {
        self.file = file
        self.offset = UInt32(truncatingIfNeeded: offset)
        self.line = UInt32(truncatingIfNeeded: line)
        self.column = UInt32(truncatingIfNeeded: column)
        self.isShadow = shadow
    }

    /// The same rule as a shadow rule (its section's `shadow` line came after it).
    var shadowed: RuleReference {
        RuleReference(file: file, offset: Int(offset), line: Int(line), column: Int(column), shadow: true)
    }

    public init(location: SourceLocation, text: String) {
        self.init(
            file: RuleFileText(path: location.file, bytes: Array(text.utf8), verbatim: location), offset: 0, line: 0,
            column: 0)
    }

    public var location: SourceLocation {
        file.verbatim ?? SourceLocation(file: file.path, line: Int(line), column: Int(column))
    }

    /// The directive, e.g. `copy %u@gapps.example.org`.
    public var text: String {
        file.verbatim == nil ? file.joinedWords(from: Int(offset)) : String(decoding: file.bytes, as: UTF8.self)
    }

    public var description: String { "\(location.fileAndLine) (\(text))" }

    public static func == (left: RuleReference, right: RuleReference) -> Bool {
        guard left.isShadow == right.isShadow else { return false }
        if left.file === right.file, left.offset == right.offset, left.line == right.line,
            left.column == right.column
        {
            return true
        }
        return left.location == right.location && left.text == right.text
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(location)
        hasher.combine(text)
        hasher.combine(isShadow)
    }
}

/// Which users of a domain the domain-wide `copy` and `rewrite` apply to.
public enum UserScope: Sendable, Hashable {
    case everyone
    case only(Set<String>)
    case except(Set<String>)

    /// `keys` are the lookup keys of one recipient, most specific first (see `UserKeys`); `prints`
    /// are the list's names' `NamePrints`.
    func includes(_ keys: UserKeys, prints: NamePrints) -> Bool {
        switch self {
        case .everyone: true
        case .only(let users): keys.any(in: users, prints: prints)
        case .except(let users): !keys.any(in: users, prints: prints)
        }
    }
}

/// A copy action and the rule it came from.
///
/// A class, immutable: a `user … copy` line is then one object, its target (nearly always one) held
/// inside it (`OneOrMany`), where a struct needed a box for the user's table and an array for its
/// targets; and taking the rule on the message path is one retain. (A struct holding its target
/// inline made every copy of it retain the template's strings one by one: +20% load time for a
/// million `user … copy` lines.)
public final class CopyRule: Sendable, Hashable {
    public let targets: OneOrMany<AddressTemplate>
    public let reference: RuleReference

    init(targets: OneOrMany<AddressTemplate>, reference: RuleReference) {
        self.targets = targets
        self.reference = reference
    }

    var shadowed: CopyRule { CopyRule(targets: targets, reference: reference.shadowed) }

    public static func == (left: CopyRule, right: CopyRule) -> Bool {
        left === right || (left.targets == right.targets && left.reference == right.reference)
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(targets)
        hasher.combine(reference)
    }
}

/// A rewrite action and the rule it came from.
public struct RewriteRule: Sendable, Hashable {
    public let target: AddressTemplate
    public let reference: RuleReference

    var shadowed: RewriteRule { RewriteRule(target: target, reference: reference.shadowed) }
}

/// Per-user overrides (`user NAME copy …` / `user NAME rewrite …`).
public struct UserRule: Sendable, Hashable {
    public var copy: CopyRule? {
        get {
            switch storage {
            case .copy(let rule): rule
            case .all(let box): box.value.copy
            case .empty, .rewrite: nil
            }
        }
        set { update { $0.copy = newValue } }
    }
    public var rewrite: RewriteRule? {
        get {
            switch storage {
            case .rewrite(let box): box.value
            case .all(let box): box.value.rewrite
            case .empty, .copy: nil
            }
        }
        set { update { $0.rewrite = newValue } }
    }
    /// Replaces the domain's `allow-clients` for this user.
    public var allowClients: ClientAllowList? {
        get {
            if case .all(let box) = storage { return box.value.allowClients }
            return nil
        }
        set { update { $0.allowClients = newValue } }
    }

    public init() {}

    /// One reference: a section with a million users keeps a million 8-byte entries in its table,
    /// and a user with only a copy (or only a rewrite), as nearly all are, owns one object: the copy
    /// rule itself, or a box just big enough for the rewrite. Setting a rule makes a new one.
    private var storage = Storage.empty

    private enum Storage: Sendable {
        case empty
        case copy(CopyRule)
        case rewrite(Box<RewriteRule>)
        case all(Box<All>)
    }

    private struct All: Sendable {
        var copy: CopyRule? = nil
        var rewrite: RewriteRule? = nil
        var allowClients: ClientAllowList? = nil
    }

    private final class Box<Value: Sendable>: Sendable {
        let value: Value
        init(_ value: Value) { self.value = value }
    }

    private mutating func update(_ change: (inout All) -> Void) {
        var all: All
        switch storage {
        case .empty: all = All()
        case .copy(let rule): all = All(copy: rule)
        case .rewrite(let box): all = All(rewrite: box.value)
        case .all(let box): all = box.value
        }
        change(&all)
        switch (all.copy, all.rewrite, all.allowClients) {
        case (nil, nil, nil): storage = .empty
        case (let copy?, nil, nil): storage = .copy(copy)
        case (nil, let rewrite?, nil): storage = .rewrite(Box(rewrite))
        default: storage = .all(Box(all))
        }
    }

    /// The same rules as shadow rules (their section's `shadow` line came after them).
    var shadowed: UserRule {
        var rule = UserRule()
        rule.copy = copy?.shadowed
        rule.rewrite = rewrite?.shadowed
        rule.allowClients = allowClients?.shadowed
        return rule
    }

    /// True when the user has a rule that is not a shadow rule: only such a rule names the user to
    /// a live `known` guard.
    var hasLiveRule: Bool {
        copy.map { !$0.reference.isShadow } ?? false || rewrite.map { !$0.reference.isShadow } ?? false
            || allowClients.map { !$0.reference.isShadow } ?? false
    }

    /// Which rules the user has, without copying them out (the summary counts a million users).
    var has: (copy: Bool, rewrite: Bool, allowClients: Bool) {
        switch storage {
        case .empty: (false, false, false)
        case .copy: (true, false, false)
        case .rewrite: (false, true, false)
        case .all(let box): (box.value.copy != nil, box.value.rewrite != nil, box.value.allowClients != nil)
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

/// The rules of one `domain` section: one reference to an immutable object, so the tables of a file
/// with a hundred thousand sections hold 8 bytes a name, not a copy of every field.
public struct DomainRules: Sendable, Hashable {
    /// The section's names as written (`example.org`, `*.example.org`).
    public var names: [String] { storage.names }
    public var location: SourceLocation { storage.location }
    /// Characters that separate a local part from its extension (Postfix recipient_delimiter).
    public var delimiters: String { storage.delimiters }
    public var scope: UserScope { storage.scope }
    public var scopeReference: RuleReference? { storage.scopeReference }
    public var copy: CopyRule? { storage.copy }
    public var rewrite: RewriteRule? { storage.rewrite }
    public var users: [String: UserRule] { storage.users }
    public var guards: DomainGuard { storage.guards }
    /// False when no rule of the section is a shadow rule: a recipient of it is decided without
    /// asking which of its rules are live.
    public var hasShadow: Bool { storage.hasShadow }

    /// The user rule of the first of `keys` that has one.
    func userRule(_ keys: UserKeys) -> UserRule? { keys.first(in: storage.users, prints: storage.userPrints) }

    /// Whether the domain-wide rules apply to the recipient of `keys` (its `only`/`except` line).
    func includes(_ keys: UserKeys) -> Bool { storage.scope.includes(keys, prints: storage.scopePrints) }

    private let storage: Storage

    init(
        names: [String], location: SourceLocation, delimiters: String, scope: UserScope,
        scopeReference: RuleReference?, copy: CopyRule?, rewrite: RewriteRule?, users: [String: UserRule],
        guards: DomainGuard, hasShadow: Bool
    ) {
        storage = Storage(
            names: names, location: location, delimiters: delimiters, scope: scope, scopeReference: scopeReference,
            copy: copy, rewrite: rewrite, users: users, guards: guards, hasShadow: hasShadow)
    }

    private final class Storage: Sendable {
        let names: [String]
        let location: SourceLocation
        let delimiters: String
        let scope: UserScope
        let scopeReference: RuleReference?
        let copy: CopyRule?
        let rewrite: RewriteRule?
        let users: [String: UserRule]
        let guards: DomainGuard
        let hasShadow: Bool
        /// The `NamePrints` of `users`' names and of the `only`/`except` list's.
        let userPrints: NamePrints
        let scopePrints: NamePrints

        init(
            names: [String], location: SourceLocation, delimiters: String, scope: UserScope,
            scopeReference: RuleReference?, copy: CopyRule?, rewrite: RewriteRule?, users: [String: UserRule],
            guards: DomainGuard, hasShadow: Bool
        ) {
            self.names = names
            self.location = location
            self.delimiters = delimiters
            self.scope = scope
            self.scopeReference = scopeReference
            self.copy = copy
            self.rewrite = rewrite
            self.users = users
            self.guards = guards
            self.hasShadow = hasShadow
            userPrints = NamePrints(users.keys)
            switch scope {
            case .everyone: scopePrints = NamePrints([String]())
            case .only(let names), .except(let names): scopePrints = NamePrints(names)
            }
        }
    }

    /// The same section, every rule of it a shadow rule.
    var shadowed: DomainRules {
        DomainRules(
            names: names, location: location, delimiters: delimiters, scope: scope, scopeReference: scopeReference,
            copy: copy?.shadowed, rewrite: rewrite?.shadowed, users: users.mapValues(\.shadowed),
            guards: guards.shadowed, hasShadow: true)
    }

    /// The same section object: equal without comparing a million users.
    func isSame(as other: DomainRules) -> Bool { storage === other.storage }

    /// The section object's identity, for tables about sections (`RuleLint`'s users to check).
    var identity: ObjectIdentifier { ObjectIdentifier(storage) }

    public static func == (left: DomainRules, right: DomainRules) -> Bool {
        if left.isSame(as: right) { return true }
        return left.names == right.names && left.location == right.location && left.delimiters == right.delimiters
            && left.scope == right.scope && left.scopeReference == right.scopeReference && left.copy == right.copy
            && left.rewrite == right.rewrite && left.users == right.users && left.guards == right.guards
            && left.hasShadow == right.hasShadow
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(names)
        hasher.combine(location)
    }
}

public struct RuleSet: Sendable {
    /// The sections, in one object shared by every copy of this rule set: whoever lets go of the
    /// last copy frees every rule, and `isOnlyCopy` tells the daemon when that is its own (it
    /// frees a million rules on a thread of its own, not on a connection's).
    final class Tables: Sendable {
        let exact: NameTable
        let subdomains: NameTable
        let domains: [DomainRules]

        init(exact: NameTable, subdomains: NameTable, domains: [DomainRules]) {
            self.exact = exact
            self.subdomains = subdomains
            self.domains = domains
        }
    }

    private var tables: Tables
    /// Sections by exact domain (lower-case), as their positions in `domains`.
    var exact: NameTable { tables.exact }
    /// Sections by parent domain for `*.parent` names (lower-case, without `*.`), as positions.
    var subdomains: NameTable { tables.subdomains }
    /// The distinct sections, in file order. A section's position here is what the session counts
    /// it by (`SessionCounters`): the metrics' table of this rule set is made in the same order.
    public var domains: [DomainRules] { tables.domains }
    /// Every file read to build this set (rule files and list files), in reading order.
    public let files: [String]
    public let trust: TrustPolicy
    /// True when some rule adds copies: the daemon then needs SMFIF_ADDRCPT_PAR and the marker header.
    public let makesCopies: Bool
    /// True when some rule rewrites recipients: the daemon then needs SMFIF_DELRCPT.
    public let rewrites: Bool
    /// True when some recipient can be refused at RCPT: the daemon must then answer every RCPT.
    public let checksRecipients: Bool
    /// Every domain named in an `spf:` source, for the daemon to resolve and refresh.
    public let spfDomains: [String]

    /// True when no other copy of this rule set exists anywhere in the process: dropping this one
    /// then frees every rule. (Asked of a set no one can take a new copy of, the answer stays true.)
    public mutating func isOnlyCopy() -> Bool { isKnownUniquelyReferenced(&tables) }

    public static let empty = RuleSet(sections: [], files: [], trust: .default)

    /// The same rules, every one a shadow rule (`--dry-run`): nothing is sent or refused. One pass
    /// over the rules, each made anew.
    public func everyRuleShadow() -> RuleSet {
        RuleSet(sections: domains.map(\.shadowed), files: files, trust: trust)
    }

    /// The summary properties are computed here once: the daemon reads them per connection.
    /// `sections` are the sections, each once (the parser has them in reading order); the lookup
    /// tables are made from their names.
    init(sections: [DomainRules], files: [String], trust: TrustPolicy) {
        self.files = files
        self.trust = trust
        var domains = sections
        if !zip(domains, domains.dropFirst()).allSatisfy({ !($1.location < $0.location) }) {
            domains.sort { $0.location < $1.location }
        }
        var exact: [String: Int] = [:]
        var subdomains: [String: Int] = [:]
        exact.reserveCapacity(domains.count)
        for (position, section) in domains.enumerated() {
            for name in section.names {
                if name.hasPrefix("*.") {
                    subdomains[String(name.dropFirst(2))] = position
                } else {
                    exact[name] = position
                }
            }
        }
        tables = Tables(exact: NameTable(exact), subdomains: NameTable(subdomains), domains: domains)
        // One pass over every user rule (a million-line file has a million): flags, counts, lists.
        var makesCopies = false
        var rewrites = false
        var checksRecipients = false
        var lists: [ClientAllowList] = []
        var userCount = 0
        var ruleCount = 0
        for domain in domains {
            let guards = domain.guards
            if domain.copy != nil {
                makesCopies = true
                ruleCount += 1
            }
            if domain.rewrite != nil {
                rewrites = true
                ruleCount += 1
            }
            checksRecipients = checksRecipients || guards.isActive
            if guards.knownUsers != nil { ruleCount += 1 }
            if let list = guards.allowClients {
                lists.append(list)
                ruleCount += 1
            }
            for rule in domain.users.values {
                let has = rule.has
                if has.copy {
                    makesCopies = true
                    ruleCount += 1
                }
                if has.rewrite {
                    rewrites = true
                    ruleCount += 1
                }
                if has.allowClients, let list = rule.allowClients {
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
        let users = domain.users
        // Most sections name users in one list only: a million names need no lookups in empty tables.
        func unnamed(_ name: String) -> Bool { users.isEmpty || users[name] == nil }
        var count = users.count
        count += known.count(where: unnamed)
        count += scoped.count { unnamed($0) && (known.isEmpty || !known.contains($0)) }
        count += domain.guards.anyClientUsers.count {
            unnamed($0) && !known.contains($0) && !scoped.contains($0)
        }
        return count
    }

    /// The section for `domain` (lower-case): an exact name first, then the nearest `*.parent`.
    public func section(for domain: String) -> DomainRules? { sectionPosition(for: domain).map { domains[$0] } }

    /// The same section's position in `domains`.
    func sectionPosition(for domain: String) -> Int? {
        if let position = exact[domain] { return position }
        var rest = domain[...]
        while let dot = rest.firstIndex(of: ".") {
            rest = rest[rest.index(after: dot)...]
            if let position = subdomains[String(rest)] { return position }
        }
        return nil
    }
}

/// Section positions by domain name: an array scanned while there are few names (a handful of short
/// strings compare for less than one of them hashes, and most servers have a domain or two), a
/// dictionary beyond.
struct NameTable: Sendable {
    static let scanLimit = 8
    private let few: [(name: String, position: Int)]
    private let many: [String: Int]

    init(_ table: [String: Int]) {
        if table.count <= Self.scanLimit {
            few = table.map { ($0.key, $0.value) }
            many = [:]
        } else {
            few = []
            many = table
        }
    }

    subscript(name: String) -> Int? {
        guard many.isEmpty else { return many[name] }
        for entry in few where entry.name == name { return entry.position }
        return nil
    }
}

/// One bit of 64 for each name of a table, from its length and its first and last bytes: a name
/// whose bit is not among them is not in the table, and is not hashed to find that out (most
/// recipients are in none of their section's lists, and a list of a few names has a few bits).
struct NamePrints: Sendable {
    let bits: UInt64

    init(_ names: some Sequence<String>) {
        var bits: UInt64 = 0
        for name in names {
            bits |= Self.bit(name)
            if bits == .max { break }
        }
        self.bits = bits
    }

    /// Read from the name's bytes in place (asked of every recipient's keys).
    static func bit(_ name: String) -> UInt64 {
        name.utf8.withContiguousStorageIfAvailable(bit(bytes:)) ?? bit(bytes: Array(name.utf8))
    }

    static func bit(bytes: some Collection<UInt8>) -> UInt64 {
        guard let first = bytes.first else { return 1 }
        let last = bytes[bytes.index(bytes.startIndex, offsetBy: bytes.count - 1)]
        return 1 << ((UInt64(bytes.count) &* 7 &+ UInt64(first) &* 3 &+ UInt64(last)) & 63)
    }

    func mayHold(_ bit: UInt64) -> Bool { bits & bit != 0 }
}

/// The lookup keys of a recipient's local part, most specific first: the full local part, then the
/// part before the extension. Lower-cased; at most two entries.
struct UserKeys: Sequence {
    let full: String
    let base: String?
    /// The keys' `NamePrints.bit`s.
    let fullBit: UInt64
    let baseBit: UInt64

    init(_ parts: RecipientParts) {
        full = parts.localPart.caseFolded
        let base = parts.base.caseFolded
        self.base = base == full ? nil : base
        fullBit = NamePrints.bit(full)
        baseBit = self.base.map(NamePrints.bit) ?? 0
    }

    /// Whether a key is in `names`, whose prints are `prints`.
    func any(in names: Set<String>, prints: NamePrints) -> Bool {
        (prints.mayHold(fullBit) && names.contains(full))
            || (prints.mayHold(baseBit) && base.map(names.contains) ?? false)
    }

    /// The value of the first key in `table`, whose names' prints are `prints`.
    func first<Value>(in table: [String: Value], prints: NamePrints) -> Value? {
        if prints.mayHold(fullBit), let value = table[full] { return value }
        guard prints.mayHold(baseBit), let base else { return nil }
        return table[base]
    }

    /// Without an array: asked on every RCPT, at most twice.
    func contains(where predicate: (String) -> Bool) -> Bool {
        predicate(full) || (base.map(predicate) ?? false)
    }

    func makeIterator() -> IndexingIterator<[String]> {
        (base.map { [full, $0] } ?? [full]).makeIterator()
    }
}
