/// The rule file language: lines of blank- or comma-separated words, `#` comments, `domain`
/// sections, `include` of files and globs. The README's "Rule file reference" documents it.
///
/// The parser collects every error with its `file:line:col` and returns a `RuleSet` only when
/// there is none, so a bad file can never half-replace good rules.

public struct RuleParseResult: Sendable {
    /// nil when `diagnostics` holds at least one error.
    public let ruleSet: RuleSet?
    public let diagnostics: [Diagnostic]

    public var errors: [Diagnostic] { diagnostics.filter { $0.severity == .error } }
    public var warnings: [Diagnostic] { diagnostics.filter { $0.severity == .warning } }
}

public enum RuleParser {
    /// Includes nest at most this deep; deeper is reported as an error (it is almost surely a cycle
    /// through globs).
    public static let maximumIncludeDepth = 16

    public static func parse(file: String, source: RuleSource) -> RuleParseResult {
        var state = ParserState(source: source)
        state.parseFile(file, includedFrom: nil, delimiters: "+", depth: 0)
        let diagnostics = state.diagnostics
        guard !diagnostics.contains(where: { $0.severity == .error }) else {
            return RuleParseResult(ruleSet: nil, diagnostics: diagnostics)
        }
        let trust = TrustPolicy(networks: state.trustedNetworks, trustAuthenticated: state.trustAuthenticated ?? true)
        let set = RuleSet(exact: state.exact, subdomains: state.subdomains, files: state.files, trust: trust)
        return RuleParseResult(ruleSet: set, diagnostics: diagnostics + RuleLint.warnings(set))
    }
}

/// One word of a line and where it starts.
struct Word {
    let text: String
    let column: Int
}

/// Splits a line into words. Separators are blanks and commas; `#` starts a comment. Each word is
/// made from its slice of the line at once (a million-line file has four million words).
func words(of line: ArraySlice<UInt8>) -> [Word] {
    var result: [Word] = []
    result.reserveCapacity(4)
    let end = line.firstIndex(of: UInt8(ascii: "#")) ?? line.endIndex
    var start: Int? = nil
    func add(upTo index: Int) {
        if let first = start {
            result.append(
                Word(text: String(decoding: line[first..<index], as: UTF8.self), column: first - line.startIndex + 1))
        }
        start = nil
    }
    for index in line.startIndex..<end {
        let byte = line[index]
        if byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: ",")
            || byte == UInt8(ascii: "\r")
        {
            add(upTo: index)
        } else if start == nil {
            start = index
        }
    }
    add(upTo: end)
    return result
}

/// The words of a line joined by single blanks, as rules quote their line (`user carol rewrite c`):
/// built from the line's bytes in one buffer.
func joinedText(of line: ArraySlice<UInt8>, _ words: [Word]) -> String {
    var bytes: [UInt8] = []
    bytes.reserveCapacity(line.count)
    for word in words {
        if !bytes.isEmpty { bytes.append(UInt8(ascii: " ")) }
        bytes += word.text.utf8
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// Calls `body` with each line (without its newline) and its 1-based number.
func forEachLine(_ bytes: [UInt8], _ body: (ArraySlice<UInt8>, Int) -> Void) {
    var lineNumber = 0
    var start = bytes.startIndex
    while start < bytes.endIndex {
        lineNumber += 1
        let end = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) ?? bytes.endIndex
        body(bytes[start..<end], lineNumber)
        start = end + 1
    }
}

/// A `domain` section while its lines are read.
struct SectionBuilder {
    let names: [String]
    let location: SourceLocation
    let headerText: String
    var delimiters: String
    var delimiterLocation: SourceLocation?
    var copy: CopyRule?
    var rewrite: RewriteRule?
    var scopeKind: String?
    var scopeReference: RuleReference?
    var scopeUsers = Set<String>()
    var users: [String: UserRule] = [:]
    var knownUsers: Set<String>?
    var knownReference: RuleReference?
    var allowClients: ClientAllowList?
    var anyClientUsers = Set<String>()
    var anyClientReference: RuleReference?
    var rejectText: String?
    var rejectTextLocation: SourceLocation?
}

struct ParserState {
    let source: RuleSource
    var diagnostics: [Diagnostic] = []
    var exact: [String: DomainRules] = [:]
    var subdomains: [String: DomainRules] = [:]
    var domainLocations: [String: SourceLocation] = [:]
    var files: [String] = []
    var includeStack: [String] = []
    var trustedNetworks: ClientAllowList?
    var trustAuthenticated: Bool?
    var trustAuthenticatedLocation: SourceLocation?

    init(source: RuleSource) { self.source = source }

    static let directives = [
        "include", "delimiter", "trusted-networks", "trust-authenticated", "domain", "copy", "rewrite", "only",
        "except", "user", "known", "allow-clients", "allow-any", "reject-text",
    ].joined(separator: ", ")

    mutating func error(_ message: String, _ location: SourceLocation) {
        diagnostics.append(.error(message, at: location))
    }

    mutating func warning(_ message: String, _ location: SourceLocation) {
        diagnostics.append(.warning(message, at: location))
    }

    mutating func parseFile(_ path: String, includedFrom: SourceLocation?, delimiters inherited: String, depth: Int) {
        let origin = includedFrom ?? SourceLocation(file: path, line: 1, column: 1)
        if includeStack.contains(path) {
            error("include cycle: '\(path)' is already being read", origin)
            return
        }
        if depth > RuleParser.maximumIncludeDepth {
            error("includes nest deeper than \(RuleParser.maximumIncludeDepth) levels", origin)
            return
        }
        let bytes: [UInt8]
        do {
            bytes = try source.contents(of: path)
        } catch {
            self.error("cannot read '\(path)': \(error)", origin)
            return
        }
        files.append(path)
        includeStack.append(path)
        defer { includeStack.removeLast() }

        var delimiters = inherited
        var delimiterLocation: SourceLocation? = nil
        var section: SectionBuilder? = nil
        forEachLine(bytes) { line, number in
            let lineWords = words(of: line)
            guard let keyword = lineWords.first else { return }
            let at = SourceLocation(file: path, line: number, column: keyword.column)
            let args = Array(lineWords.dropFirst())
            let location = { (word: Word) in SourceLocation(file: path, line: number, column: word.column) }
            let text = joinedText(of: line, lineWords)
            switch keyword.text {
            case "include":
                guard section == nil else {
                    error("'include' must come before the first 'domain' section of a file", at)
                    return
                }
                guard args.count == 1, let target = args.first else {
                    error("'include' takes one path or glob", at)
                    return
                }
                include(target.text, from: path, at: location(target), delimiters: delimiters, depth: depth)
            case "delimiter":
                guard args.count == 1, let value = args.first else {
                    error("'delimiter' takes one word of delimiter characters, e.g. 'delimiter +'", at)
                    return
                }
                guard let checked = checkDelimiters(value.text, at: location(value)) else { return }
                if section != nil {
                    if let first = section?.delimiterLocation {
                        error("duplicate 'delimiter' in this section; first at \(first)", at)
                        return
                    }
                    section?.delimiters = checked
                    section?.delimiterLocation = at
                } else {
                    if let first = delimiterLocation {
                        error("duplicate 'delimiter'; first at \(first)", at)
                        return
                    }
                    delimiters = checked
                    delimiterLocation = at
                }
            case "domain":
                if let finished = section { finish(finished) }
                section = openSection(args, at: at, text: text, delimiters: delimiters, location: location)
            case "trusted-networks":
                guard section == nil else {
                    error("'trusted-networks' must come before the first 'domain' section of a file", at)
                    return
                }
                if let first = trustedNetworks {
                    error("duplicate 'trusted-networks'; first at \(first.reference.location)", at)
                    return
                }
                guard let sources = parseSources(args, at: at, keyword: "trusted-networks", location: location) else {
                    return
                }
                trustedNetworks = ClientAllowList(sources: sources, reference: RuleReference(location: at, text: text))
            case "trust-authenticated":
                guard section == nil else {
                    error("'trust-authenticated' must come before the first 'domain' section of a file", at)
                    return
                }
                guard args.count == 1, let value = args.first, value.text == "yes" || value.text == "no" else {
                    error("'trust-authenticated' takes 'yes' or 'no'", at)
                    return
                }
                if let first = trustAuthenticatedLocation {
                    error("duplicate 'trust-authenticated'; first at \(first)", at)
                    return
                }
                trustAuthenticated = value.text == "yes"
                trustAuthenticatedLocation = at
            case "copy", "rewrite", "only", "except", "user", "known", "allow-clients", "allow-any", "reject-text":
                // Taken out, not copied: a copy would share the section's tables, and the first edit
                // would copy them whole, once per line (quadratic in `user` lines).
                guard var current = section.take() else {
                    error("'\(keyword.text)' must be inside a 'domain' section", at)
                    return
                }
                defer { section = current }
                switch keyword.text {
                case "copy": parseCopy(args, at: at, text: text, into: &current, location: location)
                case "rewrite": parseRewrite(args, at: at, text: text, into: &current, location: location)
                case "user": parseUser(args, at: at, text: text, into: &current, location: location)
                case "known": parseKnown(args, at: at, text: text, into: &current, location: location)
                case "allow-clients":
                    if let first = current.allowClients {
                        error("duplicate 'allow-clients' in this section; first at \(first.reference.location)", at)
                        return
                    }
                    if let sources = parseSources(args, at: at, keyword: "allow-clients", location: location) {
                        current.allowClients = ClientAllowList(
                            sources: sources, reference: RuleReference(location: at, text: text))
                    }
                case "allow-any": parseAllowAny(args, at: at, text: text, into: &current, location: location)
                case "reject-text":
                    if let first = current.rejectTextLocation {
                        error("duplicate 'reject-text' in this section; first at \(first)", at)
                        return
                    }
                    guard let start = args.first?.column else {
                        error("'reject-text' needs the text of the 550 reply", at)
                        return
                    }
                    current.rejectText = restOfLine(line, from: start)
                    current.rejectTextLocation = at
                default: parseScope(keyword.text, args, at: at, text: text, into: &current, location: location)
                }
            default:
                error(
                    "unknown directive '\(keyword.text)'; expected one of: \(Self.directives)",
                    at
                )
            }
        }
        if let finished = section { finish(finished) }
    }

    mutating func include(_ target: String, from path: String, at: SourceLocation, delimiters: String, depth: Int) {
        let resolved = RulePath.resolve(target, relativeTo: path)
        if RulePath.isGlob(resolved) {
            let matches: [String]
            do {
                matches = try source.expand(pattern: resolved)
            } catch {
                self.error("cannot expand include pattern '\(resolved)': \(error)", at)
                return
            }
            if matches.isEmpty { warning("include pattern '\(resolved)' matches no file", at) }
            for match in matches {
                parseFile(match, includedFrom: at, delimiters: delimiters, depth: depth + 1)
            }
        } else {
            parseFile(resolved, includedFrom: at, delimiters: delimiters, depth: depth + 1)
        }
    }

    mutating func checkDelimiters(_ value: String, at: SourceLocation) -> String? {
        for byte in value.utf8 {
            let allowed =
                byte > 0x20 && byte < 0x7F && !LocalPartCharacters.isAlphanumeric(byte)
                && byte != UInt8(ascii: "@") && byte != UInt8(ascii: "%") && byte != UInt8(ascii: "\"")
            if !allowed {
                error("'\(value)' is not a set of delimiter characters (punctuation such as + - = _)", at)
                return nil
            }
        }
        return value
    }

    mutating func openSection(
        _ args: [Word], at: SourceLocation, text: String, delimiters: String, location: (Word) -> SourceLocation
    ) -> SectionBuilder {
        // A section with bad names is still opened, so its lines are checked instead of each being
        // reported as "outside a section".
        if args.isEmpty { error("'domain' needs at least one domain name, e.g. 'domain example.org'", at) }
        var names: [String] = []
        for word in args {
            let name = word.text.lowercased()
            let bare = name.hasPrefix("*.") ? String(name.dropFirst(2)) : name
            if let problem = DomainName.problem(in: Array(bare.utf8)) {
                error("'\(word.text)' is not a domain name: \(problem)", location(word))
                continue
            }
            if let first = domainLocations[name] {
                error("duplicate domain '\(name)'; first defined at \(first)", location(word))
                continue
            }
            domainLocations[name] = location(word)
            names.append(name)
        }
        return SectionBuilder(names: names, location: at, headerText: text, delimiters: delimiters)
    }

    mutating func finish(_ section: SectionBuilder) {
        guard !section.names.isEmpty else { return }
        let scope: UserScope
        switch section.scopeKind {
        case "only": scope = .only(section.scopeUsers)
        case "except": scope = .except(section.scopeUsers)
        default: scope = .everyone
        }
        if section.copy == nil, section.rewrite == nil, section.users.isEmpty, section.knownUsers == nil,
            section.allowClients == nil
        {
            warning("domain section has no copy, rewrite or user rule; it does nothing", section.location)
        }
        if let reference = section.scopeReference, section.copy == nil, section.rewrite == nil {
            warning(
                "'\(section.scopeKind ?? "")' has no effect without a domain-wide 'copy' or 'rewrite'",
                reference.location
            )
        }
        if let reference = section.anyClientReference, section.allowClients == nil {
            warning("'allow-any' has no effect without 'allow-clients'", reference.location)
        }
        if let location = section.rejectTextLocation, section.allowClients == nil {
            warning("'reject-text' has no effect without 'allow-clients'", location)
        }
        if case .except(let excepted) = scope {
            for (name, rule) in section.users where rule.copy != nil && excepted.contains(name) {
                let at = rule.copy?.reference.location ?? section.location
                warning("user '\(name)' is excepted but has its own copy rule; the user rule wins", at)
            }
        }
        let rules = DomainRules(
            names: section.names,
            location: section.location,
            delimiters: section.delimiters,
            scope: scope,
            scopeReference: section.scopeReference,
            copy: section.copy,
            rewrite: section.rewrite,
            users: section.users,
            guards: DomainGuard(
                knownUsers: section.knownUsers,
                knownReference: section.knownReference,
                allowClients: section.allowClients,
                anyClientUsers: section.anyClientUsers,
                rejectText: section.rejectText
            )
        )
        for name in section.names {
            if name.hasPrefix("*.") {
                subdomains[String(name.dropFirst(2))] = rules
            } else {
                exact[name] = rules
            }
        }
    }

    mutating func parseTemplates(
        _ args: ArraySlice<Word>, allowBare: Bool, location: (Word) -> SourceLocation
    ) -> [AddressTemplate]? {
        var templates: [AddressTemplate] = []
        templates.reserveCapacity(args.count)
        // Duplicates only among several targets: a one-target line (nearly all) needs no table.
        var seen: [String: SourceLocation] = [:]
        var ok = true
        for word in args {
            switch AddressTemplate.parse(word.text, allowBareLocalPart: allowBare) {
            case .success(let template):
                guard args.count > 1 else {
                    templates.append(template)
                    continue
                }
                let key = template.source.lowercased()
                if let first = seen[key] {
                    error("duplicate target '\(word.text)'; first at \(first)", location(word))
                    ok = false
                } else {
                    seen[key] = location(word)
                    templates.append(template)
                }
            case .failure(.invalid(let why, let offset)):
                let start = location(word)
                error(
                    "bad template '\(word.text)': \(why)",
                    SourceLocation(file: start.file, line: start.line, column: start.column + offset)
                )
                ok = false
            }
        }
        return ok ? templates : nil
    }

    mutating func parseCopy(
        _ args: [Word], at: SourceLocation, text: String, into section: inout SectionBuilder,
        location: (Word) -> SourceLocation
    ) {
        guard !args.isEmpty else {
            error("'copy' needs at least one target, e.g. 'copy %u@gapps.example.org'", at)
            return
        }
        if let first = section.copy {
            error("duplicate 'copy' in this section; first at \(first.reference.location)", at)
            return
        }
        guard let templates = parseTemplates(args[...], allowBare: false, location: location) else { return }
        section.copy = CopyRule(targets: templates, reference: RuleReference(location: at, text: text))
    }

    mutating func parseRewrite(
        _ args: [Word], at: SourceLocation, text: String, into section: inout SectionBuilder,
        location: (Word) -> SourceLocation
    ) {
        guard args.count == 1 else {
            error("'rewrite' takes exactly one target, e.g. 'rewrite %u@example.com'", at)
            return
        }
        if let first = section.rewrite {
            error("duplicate 'rewrite' in this section; first at \(first.reference.location)", at)
            return
        }
        guard let template = parseTemplates(args[...], allowBare: true, location: location)?.first else { return }
        section.rewrite = RewriteRule(target: template, reference: RuleReference(location: at, text: text))
    }

    mutating func parseScope(
        _ kind: String, _ args: [Word], at: SourceLocation, text: String, into section: inout SectionBuilder,
        location: (Word) -> SourceLocation
    ) {
        guard !args.isEmpty else {
            error("'\(kind)' needs user names or 'file:PATH'", at)
            return
        }
        if let other = section.scopeKind, other != kind {
            let first = section.scopeReference?.location ?? at
            error("'\(kind)' cannot be combined with '\(other)' (at \(first)) in one section", at)
            return
        }
        if section.scopeKind == nil {
            section.scopeKind = kind
            section.scopeReference = RuleReference(location: at, text: text)
        }
        addUsers(args, listName: kind, allowFiles: true, at: at, into: &section.scopeUsers, location: location)
    }

    /// Adds user names, and with `allowFiles` the users of `file:PATH` lists, to `users`; a name
    /// given twice is an error at its second position.
    mutating func addUsers(
        _ args: [Word], listName: String, allowFiles: Bool, at: SourceLocation, into users: inout Set<String>,
        location: (Word) -> SourceLocation
    ) {
        for word in args {
            if allowFiles, word.text.hasPrefix("file:") {
                let listPath = RulePath.resolve(String(word.text.dropFirst(5)), relativeTo: at.file)
                readUserList(listPath, at: location(word), into: &users)
            } else if let user = checkUserName(word.text, at: location(word)), !users.insert(user).inserted {
                error("duplicate user '\(user)' in '\(listName)' list", location(word))
            }
        }
    }

    mutating func parseUser(
        _ args: [Word], at: SourceLocation, text: String, into section: inout SectionBuilder,
        location: (Word) -> SourceLocation
    ) {
        guard args.count >= 3 else {
            error("'user' needs a name, an action and its arguments, e.g. 'user carol.smith rewrite carol'", at)
            return
        }
        guard let name = checkUserName(args[0].text, at: location(args[0])) else { return }
        let action = args[1]
        let reference = RuleReference(location: at, text: text)
        var rule = section.users[name] ?? UserRule()
        switch action.text {
        case "copy":
            if let first = rule.copy {
                error("duplicate 'user \(name) copy'; first at \(first.reference.location)", at)
                return
            }
            guard let templates = parseTemplates(args[2...], allowBare: false, location: location) else { return }
            rule.copy = CopyRule(targets: templates, reference: reference)
        case "rewrite":
            guard args.count == 3 else {
                error("'user \(name) rewrite' takes exactly one target", location(action))
                return
            }
            if let first = rule.rewrite {
                error("duplicate 'user \(name) rewrite'; first at \(first.reference.location)", at)
                return
            }
            guard let template = parseTemplates(args[2...], allowBare: true, location: location)?.first else {
                return
            }
            rule.rewrite = RewriteRule(target: template, reference: reference)
        case "allow-clients":
            if let first = rule.allowClients {
                error("duplicate 'user \(name) allow-clients'; first at \(first.reference.location)", at)
                return
            }
            guard let sources = parseSources(Array(args[2...]), at: at, keyword: "allow-clients", location: location)
            else { return }
            rule.allowClients = ClientAllowList(sources: sources, reference: reference)
        default:
            error(
                "unknown user action '\(action.text)'; expected 'copy', 'rewrite' or 'allow-clients'", location(action))
            return
        }
        section.users[name] = rule
    }

    mutating func checkUserName(_ text: String, at: SourceLocation) -> String? {
        if let problem = LocalPartCharacters.problem(in: text.utf8) {
            error("'\(text)' is not a user name: \(problem)", at)
            return nil
        }
        return text.lowercased()
    }

    /// Reads one user per line; `#` comments and blank lines are allowed. Built for lists of a
    /// million names: one pass over the bytes, one hash insert per name.
    mutating func readUserList(_ path: String, at: SourceLocation, into users: inout Set<String>) {
        let bytes: [UInt8]
        do {
            bytes = try source.contents(of: path)
        } catch {
            self.error("cannot read user list '\(path)': \(error)", at)
            return
        }
        files.append(path)
        var errors = 0
        forEachLine(bytes) { line, number in
            guard errors < 20 else { return }
            var slice = line
            if let hash = slice.firstIndex(of: UInt8(ascii: "#")) { slice = slice[..<hash] }
            var leading = 0
            while let first = slice.first, first == 0x20 || first == 0x09 {
                slice = slice.dropFirst()
                leading += 1
            }
            while let last = slice.last, last == 0x20 || last == 0x09 || last == 0x0D { slice = slice.dropLast() }
            if slice.isEmpty { return }
            let position = SourceLocation(file: path, line: number, column: leading + 1)
            if let problem = LocalPartCharacters.problem(in: slice) {
                error("'\(String(decoding: slice, as: UTF8.self))' is not a user name: \(problem)", position)
                errors += 1
                return
            }
            let name = String(decoding: slice, as: UTF8.self).lowercased()
            if !users.insert(name).inserted {
                error("duplicate user '\(name)'", position)
                errors += 1
            }
        }
        if errors >= 20 { error("too many errors in user list '\(path)'; stopped reporting", at) }
    }
}

extension LocalPartCharacters {
    /// Letters and digits: never valid as delimiters.
    static func isAlphanumeric(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
            || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
    }
}

/// The guard directives: `known`, `allow-clients`, `allow-any`, `trusted-networks`.
extension ParserState {
    mutating func parseKnown(
        _ args: [Word], at: SourceLocation, text: String, into section: inout SectionBuilder,
        location: (Word) -> SourceLocation
    ) {
        guard !args.isEmpty else {
            error("'known' needs user names or 'file:PATH'", at)
            return
        }
        if section.knownReference == nil { section.knownReference = RuleReference(location: at, text: text) }
        var users = section.knownUsers ?? []
        addUsers(args, listName: "known", allowFiles: true, at: at, into: &users, location: location)
        section.knownUsers = users
    }

    mutating func parseAllowAny(
        _ args: [Word], at: SourceLocation, text: String, into section: inout SectionBuilder,
        location: (Word) -> SourceLocation
    ) {
        guard !args.isEmpty else {
            error("'allow-any' needs user names, e.g. 'allow-any postmaster abuse'", at)
            return
        }
        if section.anyClientReference == nil { section.anyClientReference = RuleReference(location: at, text: text) }
        addUsers(
            args, listName: "allow-any", allowFiles: false, at: at, into: &section.anyClientUsers, location: location)
    }

    /// CIDRs, `file:PATH` (one CIDR per line) and `spf:DOMAIN`.
    mutating func parseSources(
        _ args: [Word], at: SourceLocation, keyword: String, location: (Word) -> SourceLocation
    ) -> [NetworkSource]? {
        guard !args.isEmpty else {
            error("'\(keyword)' needs networks (192.0.2.0/24, 2001:db8::/32), 'file:PATH' or 'spf:DOMAIN'", at)
            return nil
        }
        var networks: [IPNetwork] = []
        var sources: [NetworkSource] = []
        var ok = true
        for word in args {
            if word.text.hasPrefix("spf:") {
                let domain = String(word.text.dropFirst(4)).lowercased()
                if let problem = DomainName.problem(in: Array(domain.utf8)) {
                    error("'\(word.text)' does not name a domain: \(problem)", location(word))
                    ok = false
                } else {
                    sources.append(.spf(domain))
                }
            } else if word.text.hasPrefix("file:") {
                let listPath = RulePath.resolve(String(word.text.dropFirst(5)), relativeTo: at.file)
                ok = readNetworkList(listPath, at: location(word), into: &networks) && ok
            } else if let network = IPNetwork(word.text) {
                networks.append(network)
            } else {
                error("'\(word.text)' is not a network (address or address/length)", location(word))
                ok = false
            }
        }
        if !networks.isEmpty { sources.insert(.networks(networks), at: 0) }
        return ok ? sources : nil
    }

    mutating func readNetworkList(_ path: String, at: SourceLocation, into networks: inout [IPNetwork]) -> Bool {
        let bytes: [UInt8]
        do {
            bytes = try source.contents(of: path)
        } catch {
            self.error("cannot read network list '\(path)': \(error)", at)
            return false
        }
        files.append(path)
        var ok = true
        forEachLine(bytes) { line, number in
            for word in words(of: line) {
                let position = SourceLocation(file: path, line: number, column: word.column)
                if let network = IPNetwork(word.text) {
                    networks.append(network)
                } else {
                    error("'\(word.text)' is not a network (address or address/length)", position)
                    ok = false
                }
            }
        }
        return ok
    }
}

/// The raw text of `line` from 1-based `column` to the end or a `#`, blanks trimmed.
func restOfLine(_ line: ArraySlice<UInt8>, from column: Int) -> String {
    var rest = line.dropFirst(column - 1)
    if let hash = rest.firstIndex(of: UInt8(ascii: "#")) { rest = rest[..<hash] }
    while let last = rest.last, last == 0x20 || last == 0x09 || last == 0x0D { rest = rest.dropLast() }
    return String(decoding: rest, as: UTF8.self)
}
