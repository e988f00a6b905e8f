/// The rule file language: lines of blank- or comma-separated words, `#` comments, `domain`
/// sections, `include` of files and globs. The README's "Rule file reference" documents it.
///
/// The parser collects every error with its `file:line:col` and returns a `RuleSet` only when
/// there is none, so a bad file can never half-replace good rules.
///
/// Built for files of a million lines: a line is read in place from the file's bytes (its words are
/// offsets, made into strings only where a rule keeps one), and a rule keeps a reference to its
/// line instead of a copy of its text.
///
/// `shadow` before a rule's directive (`copy`, `rewrite`, `user`, `allow-clients`, `known`), or a
/// section's `shadow` line, marks the rules' references as shadow; the line is then read as the
/// directive's own, so a shadow rule loads as fast as a live one. A dry run (`dryRun`) marks every
/// rule once the file is read (`RuleSet.everyRuleShadow`).

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

    /// `dryRun`: every rule is a shadow rule (`splitmilter --dry-run`).
    public static func parse(file: String, source: RuleSource, dryRun: Bool = false) -> RuleParseResult {
        var lists = DatabaseListParses()
        return parse(file: file, source: source, dryRun: dryRun, lists: &lists)
    }

    /// `lists`: the database lists as the previous parse read them; they are patched to the
    /// source's rows where that is cheaper than reading them whole, and replaced with this
    /// parse's (`DatabaseListParses`).
    public static func parse(
        file: String, source: RuleSource, dryRun: Bool = false, lists: inout DatabaseListParses
    ) -> RuleParseResult {
        var state = ParserState(source: source, previousLists: lists)
        lists = DatabaseListParses()
        state.parseFile(file, includedFrom: nil, delimiters: "+", depth: 0)
        lists = state.lists
        let diagnostics = state.diagnostics
        guard !diagnostics.contains(where: { $0.severity == .error }) else {
            return RuleParseResult(ruleSet: nil, diagnostics: diagnostics)
        }
        let trust = TrustPolicy(networks: state.trustedNetworks, trustAuthenticated: state.trustAuthenticated ?? true)
        let parsed = RuleSet(sections: state.sections, files: state.files, trust: trust)
        let set = dryRun ? parsed.everyRuleShadow() : parsed
        let warnings = RuleLint.warnings(set, checkingOnly: state.usersToLint)
        return RuleParseResult(ruleSet: set, diagnostics: warnings.isEmpty ? diagnostics : diagnostics + warnings)
    }
}

/// One word of a line and where it starts, as other line formats (the SPF cache) use them.
struct LineWord {
    let text: String
    let column: Int
}

/// Splits a line into words. Separators are blanks, tabs, carriage returns and commas; `#` starts
/// a comment.
func words(of line: ArraySlice<UInt8>) -> [LineWord] {
    line.withUnsafeBufferPointer { bytes in
        var reader = Line(file: RuleFileText(path: "", bytes: []), bytes: bytes)
        _ = reader.read(from: 0, number: 1)
        return reader.words.map { LineWord(text: reader.text($0), column: $0.column) }
    }
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

/// One word of a rule line: its bytes `start..<end` in the file, and its 1-based column.
struct Word {
    let start: Int
    let end: Int
    let column: Int
}

/// The line being parsed: the file's bytes, where the line is, and its words. One is made per file
/// and refilled for each line, so reading a line allocates nothing.
struct Line {
    let file: RuleFileText
    let bytes: UnsafeBufferPointer<UInt8>
    /// The line is `bytes[start..<end]`, without its newline.
    private(set) var start = 0
    private(set) var end = 0
    private(set) var number = 0
    private(set) var words: [Word] = []
    /// The rule of this line is a shadow rule: its reference says so.
    var shadow = false

    init(file: RuleFileText, bytes: UnsafeBufferPointer<UInt8>) {
        self.file = file
        self.bytes = bytes
        words.reserveCapacity(8)
    }

    /// Reads the line that starts at `start` into `words`; returns where the next line starts.
    mutating func read(from start: Int, number: Int) -> Int {
        self.start = start
        self.number = number
        shadow = false
        words.removeAll(keepingCapacity: true)
        let count = bytes.count
        var index = start
        var wordStart = -1
        while index < count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "#") { break }
            if isWordSeparator(byte) {
                if wordStart >= 0 { words.append(Word(start: wordStart, end: index, column: wordStart - start + 1)) }
                wordStart = -1
            } else if wordStart < 0 {
                wordStart = index
            }
            index += 1
        }
        if wordStart >= 0 { words.append(Word(start: wordStart, end: index, column: wordStart - start + 1)) }
        while index < count, bytes[index] != UInt8(ascii: "\n") { index += 1 }
        end = index
        return index + 1
    }

    /// The words after the directive.
    var arguments: ArraySlice<Word> { words.dropFirst() }

    /// Reads the rest of a `shadow …` line as the directive's own line, of a shadow rule: the
    /// directive is then the first word, and the rule's text (from the line's start) keeps `shadow`.
    mutating func dropShadowWord() {
        words.removeFirst()
        shadow = true
    }

    func bytes(of word: Word) -> UnsafeBufferPointer<UInt8> {
        UnsafeBufferPointer(rebasing: bytes[word.start..<word.end])
    }

    func text(_ word: Word) -> String { String(decoding: bytes(of: word), as: UTF8.self) }

    func location(_ word: Word) -> SourceLocation {
        SourceLocation(file: file.path, line: number, column: word.column)
    }

    /// Where the directive starts.
    var at: SourceLocation { location(words[0]) }

    /// The rule this line states, for logs and `explain`.
    var reference: RuleReference {
        RuleReference(file: file, offset: start, line: number, column: words[0].column, shadow: shadow)
    }

    func word(_ word: Word, is name: StaticString) -> Bool {
        sameBytes(bytes(of: word), UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount))
    }

    /// How many lines from this one on are `user` lines (or `shadow user` lines), blank and comment
    /// lines passed over, up to the first other line: a section's user table is made that big at its
    /// first user, instead of growing (and rehashing) twenty times on the way to a million.
    func userLinesAhead() -> Int {
        var count = 0
        var index = start
        let total = bytes.count
        while index < total {
            while index < total, isWordSeparator(bytes[index]) { index += 1 }
            if startsShadowWord(at: index) {
                index += 7
                while index < total, isWordSeparator(bytes[index]) { index += 1 }
            }
            if index < total, bytes[index] != UInt8(ascii: "\n"), bytes[index] != UInt8(ascii: "#") {
                guard index + 4 < total, bytes[index] == UInt8(ascii: "u"), bytes[index + 1] == UInt8(ascii: "s"),
                    bytes[index + 2] == UInt8(ascii: "e"), bytes[index + 3] == UInt8(ascii: "r"),
                    isWordSeparator(bytes[index + 4])
                else { break }
                count += 1
            }
            while index < total, bytes[index] != UInt8(ascii: "\n") { index += 1 }
            index += 1
        }
        return count
    }

    /// True when the word `shadow` (and a separator after it) starts at `index`.
    func startsShadowWord(at index: Int) -> Bool {
        let name: StaticString = "shadow"
        let count = name.utf8CodeUnitCount
        guard index + count < bytes.count, isWordSeparator(bytes[index + count]) else { return false }
        return sameBytes(
            UnsafeBufferPointer(rebasing: bytes[index..<(index + count)]),
            UnsafeBufferPointer(start: name.utf8Start, count: count))
    }

    /// The raw text from 1-based `column` to the end of the line or a `#`, blanks trimmed.
    func rest(from column: Int) -> String {
        var last = start + column - 1
        while last < end, bytes[last] != UInt8(ascii: "#") { last += 1 }
        while last > start + column - 1, [0x20, 0x09, 0x0D].contains(bytes[last - 1]) { last -= 1 }
        return String(decoding: UnsafeBufferPointer(rebasing: bytes[(start + column - 1)..<last]), as: UTF8.self)
    }
}

/// `bytes` lower-cased as a string: without a second copy when, as nearly always, the bytes are
/// ASCII with no upper-case letter.
func lowercasedString(_ bytes: UnsafeBufferPointer<UInt8>) -> String {
    let text = String(decoding: bytes, as: UTF8.self)
    return bytes.allSatisfy({ $0 < 0x80 && !isUpperCaseASCII($0) }) ? text : text.lowercased()
}

@inline(__always)
func isUpperCaseASCII(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") }

/// Byte-wise equality, without the generic collection machinery (it runs for every word compared).
@inline(__always)
func sameBytes(_ left: UnsafeBufferPointer<UInt8>, _ right: UnsafeBufferPointer<UInt8>) -> Bool {
    guard left.count == right.count else { return false }
    for index in 0..<left.count where left[index] != right[index] { return false }
    return true
}

/// The directives, in the order the parser tries them (`user` lines are the many).
enum Directive: CaseIterable {
    case user, copy, rewrite, domain, only, except, known, allowClients, allowAny, rejectText, include, delimiter
    case trustedNetworks, trustAuthenticated

    var name: StaticString {
        switch self {
        case .user: "user"
        case .copy: "copy"
        case .rewrite: "rewrite"
        case .domain: "domain"
        case .only: "only"
        case .except: "except"
        case .known: "known"
        case .allowClients: "allow-clients"
        case .allowAny: "allow-any"
        case .rejectText: "reject-text"
        case .include: "include"
        case .delimiter: "delimiter"
        case .trustedNetworks: "trusted-networks"
        case .trustAuthenticated: "trust-authenticated"
        }
    }

    /// The list for the unknown-directive error, in the documentation's order.
    static let documented = [
        "include", "delimiter", "trusted-networks", "trust-authenticated", "domain", "copy", "rewrite", "only",
        "except", "user", "known", "allow-clients", "allow-any", "reject-text", "shadow",
    ].joined(separator: ", ")

    init?(_ word: Word, of line: Line) {
        guard let found = Self.allCases.first(where: { line.word(word, is: $0.name) }) else { return nil }
        self = found
    }

    /// The directives `shadow` may stand before: the rules that add, replace or refuse.
    var canBeShadow: Bool {
        switch self {
        case .copy, .rewrite, .user, .allowClients, .known: true
        case .domain, .only, .except, .allowAny, .rejectText, .include, .delimiter, .trustedNetworks,
            .trustAuthenticated:
            false
        }
    }

    static let shadowable = "copy, rewrite, user, allow-clients or known"
}

/// A `domain` section while its lines are read.
struct SectionBuilder {
    let names: [String]
    let location: SourceLocation
    var delimiters: String
    var delimiterLocation: SourceLocation?
    var copy: CopyRule?
    var rewrite: RewriteRule?
    var scopeKind: String?
    var scopeReference: RuleReference?
    var scopeUsers = Set<String>()
    var users: [String: UserRule] = [:]
    var usersReserved = false
    var knownUsers: Set<String>?
    var knownReference: RuleReference?
    var allowClients: ClientAllowList?
    var anyClientUsers = Set<String>()
    var anyClientReference: RuleReference?
    var rejectText: String?
    var rejectTextLocation: SourceLocation?
    /// The section's `shadow` line: every rule of the section is a shadow rule.
    var shadowLocation: SourceLocation?
    /// Some rule of the section is a shadow rule.
    var hasShadow = false
    /// Set when the section's users came from a patched database list: the users whose rules
    /// `RuleLint` has not seen (rows read in the patch, lines after it). nil: every user.
    var usersToLint: [String]?

    /// Makes every rule read so far a shadow rule (the section's `shadow` line); the lines after it
    /// are read as shadow rules. Once per section: linear in the rules before the line.
    mutating func markShadow(at location: SourceLocation) {
        shadowLocation = location
        hasShadow = true
        copy = copy?.shadowed
        rewrite = rewrite?.shadowed
        knownReference = knownReference?.shadowed
        allowClients = allowClients?.shadowed
        if !users.isEmpty { users = users.mapValues(\.shadowed) }
    }
}

struct ParserState {
    let source: RuleSource
    var diagnostics: [Diagnostic] = []
    /// The sections in reading order.
    var sections: [DomainRules] = []
    var domainLocations: [String: SourceLocation] = [:]
    var files: [String] = []
    var includeStack: [String] = []
    var trustedNetworks: ClientAllowList?
    var trustAuthenticated: Bool?
    var trustAuthenticatedLocation: SourceLocation?
    /// The last target parsed: the next one with the same domain shares its domain string.
    var lastTemplate: AddressTemplate?
    /// The database lists as the previous parse read them, and as this one reads them.
    let previousLists: DatabaseListParses
    var lists = DatabaseListParses()
    /// Sections (`DomainRules.identity`) whose users came from a patched list: the users to lint.
    var usersToLint: [ObjectIdentifier: [String]] = [:]

    init(source: RuleSource, previousLists: DatabaseListParses = DatabaseListParses()) {
        self.source = source
        self.previousLists = previousLists
    }

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
        let file: RuleFileText
        do {
            file = RuleFileText(path: path, bytes: try source.contents(of: path))
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
        file.bytes.withUnsafeBufferPointer { bytes in
            var line = Line(file: file, bytes: bytes)
            var next = 0
            var number = 0
            while next < bytes.count {
                number += 1
                next = line.read(from: next, number: number)
                guard var keyword = line.words.first else { continue }
                if line.word(keyword, is: "shadow") {
                    guard line.words.count > 1 else {
                        shadowSection(line, &section)
                        continue
                    }
                    line.dropShadowWord()
                    keyword = line.words[0]
                    guard let directive = Directive(keyword, of: line), directive.canBeShadow else {
                        error(
                            "'shadow' goes before \(Directive.shadowable), not before '\(line.text(keyword))'",
                            line.at)
                        continue
                    }
                }
                guard let directive = Directive(keyword, of: line) else {
                    error(
                        "unknown directive '\(line.text(keyword))'; expected one of: \(Directive.documented)", line.at)
                    continue
                }
                switch directive {
                case .include:
                    guard section == nil else {
                        error("'include' must come before the first 'domain' section of a file", line.at)
                        continue
                    }
                    guard line.arguments.count == 1, let target = line.arguments.first else {
                        error("'include' takes one path or glob", line.at)
                        continue
                    }
                    include(
                        line.text(target), from: path, at: line.location(target), delimiters: delimiters,
                        depth: depth)
                case .delimiter:
                    guard line.arguments.count == 1, let value = line.arguments.first else {
                        error("'delimiter' takes one word of delimiter characters, e.g. 'delimiter +'", line.at)
                        continue
                    }
                    guard let checked = checkDelimiters(line.text(value), at: line.location(value)) else { continue }
                    if section != nil {
                        if let first = section?.delimiterLocation {
                            error("duplicate 'delimiter' in this section; first at \(first)", line.at)
                            continue
                        }
                        section?.delimiters = checked
                        section?.delimiterLocation = line.at
                    } else {
                        if let first = delimiterLocation {
                            error("duplicate 'delimiter'; first at \(first)", line.at)
                            continue
                        }
                        delimiters = checked
                        delimiterLocation = line.at
                    }
                case .domain:
                    if let finished = section.take() { finish(finished) }
                    section = openSection(line, delimiters: delimiters)
                case .trustedNetworks:
                    guard section == nil else {
                        error("'trusted-networks' must come before the first 'domain' section of a file", line.at)
                        continue
                    }
                    if let first = trustedNetworks {
                        error("duplicate 'trusted-networks'; first at \(first.reference.location)", line.at)
                        continue
                    }
                    guard let sources = parseSources(line, line.arguments, keyword: "trusted-networks") else {
                        continue
                    }
                    trustedNetworks = ClientAllowList(sources: sources, reference: line.reference)
                case .trustAuthenticated:
                    guard section == nil else {
                        error("'trust-authenticated' must come before the first 'domain' section of a file", line.at)
                        continue
                    }
                    guard line.arguments.count == 1, let value = line.arguments.first,
                        line.word(value, is: "yes") || line.word(value, is: "no")
                    else {
                        error("'trust-authenticated' takes 'yes' or 'no'", line.at)
                        continue
                    }
                    if let first = trustAuthenticatedLocation {
                        error("duplicate 'trust-authenticated'; first at \(first)", line.at)
                        continue
                    }
                    trustAuthenticated = line.word(value, is: "yes")
                    trustAuthenticatedLocation = line.at
                case .copy, .rewrite, .only, .except, .user, .known, .allowClients, .allowAny, .rejectText:
                    // Taken out while edited: a copy left in `section` would share the section's
                    // tables, and the first edit would copy them whole, once per line (quadratic).
                    guard var current = section.take() else {
                        error("'\(line.text(keyword))' must be inside a 'domain' section", line.at)
                        continue
                    }
                    if current.shadowLocation != nil { line.shadow = true }
                    if line.shadow { current.hasShadow = true }
                    parseSectionLine(directive, line, into: &current)
                    section = current
                }
            }
        }
        if let finished = section { finish(finished) }
    }

    /// A line that is only `shadow`: its section's rules are all shadow rules.
    mutating func shadowSection(_ line: Line, _ section: inout SectionBuilder?) {
        guard var current = section.take() else {
            error("'shadow' alone makes a 'domain' section shadow; it must be inside one", line.at)
            return
        }
        if let first = current.shadowLocation {
            error("duplicate 'shadow' in this section; first at \(first)", line.at)
        } else {
            current.markShadow(at: line.at)
        }
        section = current
    }

    /// A line inside a section.
    mutating func parseSectionLine(_ directive: Directive, _ line: Line, into current: inout SectionBuilder) {
        switch directive {
        case .user: parseUser(line, into: &current)
        case .copy: parseCopy(line, into: &current)
        case .rewrite: parseRewrite(line, into: &current)
        case .known: parseKnown(line, into: &current)
        case .allowClients:
            if let first = current.allowClients {
                error("duplicate 'allow-clients' in this section; first at \(first.reference.location)", line.at)
                return
            }
            if let sources = parseSources(line, line.arguments, keyword: "allow-clients") {
                current.allowClients = ClientAllowList(sources: sources, reference: line.reference)
            }
        case .allowAny: parseAllowAny(line, into: &current)
        case .rejectText:
            if let first = current.rejectTextLocation {
                error("duplicate 'reject-text' in this section; first at \(first)", line.at)
                return
            }
            guard let start = line.arguments.first?.column else {
                error("'reject-text' needs the text of the 550 reply", line.at)
                return
            }
            current.rejectText = line.rest(from: start)
            current.rejectTextLocation = line.at
        case .only: parseScope("only", line, into: &current)
        case .except: parseScope("except", line, into: &current)
        case .include, .delimiter, .domain, .trustedNetworks, .trustAuthenticated: break
        }
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

    mutating func openSection(_ line: Line, delimiters: String) -> SectionBuilder {
        // A section with bad names is still opened, so its lines are checked instead of each being
        // reported as "outside a section".
        if line.arguments.isEmpty {
            error("'domain' needs at least one domain name, e.g. 'domain example.org'", line.at)
        }
        var names: [String] = []
        for word in line.arguments {
            let name = lowercasedString(line.bytes(of: word))
            let bare = name.hasPrefix("*.") ? name.dropFirst(2) : name[...]
            if let problem = DomainName.problem(in: bare.utf8) {
                error("'\(line.text(word))' is not a domain name: \(problem)", line.location(word))
                continue
            }
            if let first = domainLocations[name] {
                error("duplicate domain '\(name)'; first defined at \(first)", line.location(word))
                continue
            }
            domainLocations[name] = line.location(word)
            names.append(name)
        }
        return SectionBuilder(names: names, location: line.at, delimiters: delimiters)
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
            ),
            hasShadow: section.hasShadow
        )
        if let users = section.usersToLint { usersToLint[rules.identity] = users }
        sections.append(rules)
    }

    mutating func parseTemplates(
        _ line: Line, _ args: ArraySlice<Word>, allowBare: Bool
    ) -> OneOrMany<AddressTemplate>? {
        var templates = OneOrMany<AddressTemplate>()
        // Duplicates only among several targets: a one-target line (nearly all) needs no table.
        var seen: [String: SourceLocation] = [:]
        var ok = true
        for word in args {
            switch AddressTemplate.parse(line.bytes(of: word), allowBareLocalPart: allowBare, sharing: lastTemplate) {
            case .success(let template):
                lastTemplate = template
                guard args.count > 1 else {
                    templates.append(template)
                    continue
                }
                let key = template.source.lowercased()
                if let first = seen[key] {
                    error("duplicate target '\(line.text(word))'; first at \(first)", line.location(word))
                    ok = false
                } else {
                    seen[key] = line.location(word)
                    templates.append(template)
                }
            case .failure(.invalid(let why, let offset)):
                error(
                    "bad template '\(line.text(word))': \(why)",
                    SourceLocation(file: line.file.path, line: line.number, column: word.column + offset)
                )
                ok = false
            }
        }
        return ok ? templates : nil
    }

    mutating func parseCopy(_ line: Line, into section: inout SectionBuilder) {
        guard !line.arguments.isEmpty else {
            error("'copy' needs at least one target, e.g. 'copy %u@gapps.example.org'", line.at)
            return
        }
        if let first = section.copy {
            error("duplicate 'copy' in this section; first at \(first.reference.location)", line.at)
            return
        }
        guard let templates = parseTemplates(line, line.arguments, allowBare: false) else { return }
        section.copy = CopyRule(targets: templates, reference: line.reference)
    }

    mutating func parseRewrite(_ line: Line, into section: inout SectionBuilder) {
        guard line.arguments.count == 1 else {
            error("'rewrite' takes exactly one target, e.g. 'rewrite %u@example.com'", line.at)
            return
        }
        if let first = section.rewrite {
            error("duplicate 'rewrite' in this section; first at \(first.reference.location)", line.at)
            return
        }
        guard let template = parseTemplates(line, line.arguments, allowBare: true)?.first else { return }
        section.rewrite = RewriteRule(target: template, reference: line.reference)
    }

    mutating func parseScope(_ kind: String, _ line: Line, into section: inout SectionBuilder) {
        guard !line.arguments.isEmpty else {
            error("'\(kind)' needs user names, 'file:PATH' or 'pgsql:LIST'", line.at)
            return
        }
        if let other = section.scopeKind, other != kind {
            let first = section.scopeReference?.location ?? line.at
            error("'\(kind)' cannot be combined with '\(other)' (at \(first)) in one section", line.at)
            return
        }
        if section.scopeKind == nil {
            section.scopeKind = kind
            section.scopeReference = line.reference
        }
        addUsers(line, listName: kind, into: &section.scopeUsers)
    }

    /// Adds the user names of the line, the users of `file:PATH` lists and of `pgsql:LIST` lists to
    /// `users`; a name given twice is an error at its second position.
    mutating func addUsers(_ line: Line, listName: String, into users: inout Set<String>) {
        let source = self.source
        for word in line.arguments {
            let bytes = line.bytes(of: word)
            if bytes.starts(with: "file:".utf8), line.text(word).hasPrefix("file:") {
                let listPath = RulePath.resolve(String(line.text(word).dropFirst(5)), relativeTo: line.file.path)
                readUserList(listPath, at: line.location(word), into: &users) { try source.contents(of: listPath) }
            } else if bytes.starts(with: DatabaseListName.prefix.utf8) {
                guard let name = checkListName(line, word) else { continue }
                readDatabaseMembers(name, at: line.location(word), into: &users)
            } else if let user = checkUserName(bytes, at: line.location(word)), !users.insert(user).inserted {
                error("duplicate user '\(user)' in '\(listName)' list", line.location(word))
            }
        }
    }

    /// The names of the database list `name`: patched from the previous parse when `users` has
    /// none yet (`DatabaseListParses`), else read whole.
    mutating func readDatabaseMembers(_ name: String, at: SourceLocation, into users: inout Set<String>) {
        let path = DatabaseListName.prefix + name
        let rows = users.isEmpty ? source.databaseRows.map { $0.members[name] ?? [] } : nil
        if let rows, let patched = patchedMembers(name, rows: rows) {
            source.databaseListPatched(name, in: .members)
            files.append(path)
            users = patched
            return
        }
        let before = diagnostics.count
        let source = self.source
        readUserList(path, at: at, into: &users) { try source.databaseList(name, in: .members) }
        if let rows, diagnostics.count == before {
            lists.members[name] = DatabaseListParses.Members(rows: rows, users: users, patched: 0)
        }
    }

    /// The list name of a `pgsql:LIST` word, or nil (and an error at the word).
    mutating func checkListName(_ line: Line, _ word: Word) -> String? {
        let text = line.text(word)
        let name = text.dropFirst(DatabaseListName.prefix.utf8.count)
        if let problem = DatabaseListName.problem(in: name) {
            error("'\(text)' does not name a database list: \(problem)", line.location(word))
            return nil
        }
        return String(name)
    }

    mutating func parseUser(_ line: Line, into section: inout SectionBuilder) {
        let args = line.arguments
        if args.count == 1, let word = args.first, line.bytes(of: word).starts(with: DatabaseListName.prefix.utf8) {
            parseDatabaseUserRules(line, word, into: &section)
            return
        }
        guard args.count >= 3 else {
            error("'user' needs a name, an action and its arguments, e.g. 'user carol.smith rewrite carol'", line.at)
            return
        }
        let nameWord = args[args.startIndex]
        let action = args[args.startIndex + 1]
        let targets = args.dropFirst(2)
        guard let name = checkUserName(line.bytes(of: nameWord), at: line.location(nameWord)) else { return }
        if !section.usersReserved {
            section.usersReserved = true
            section.users.reserveCapacity(line.userLinesAhead())
        }
        var rule = section.users[name] ?? UserRule()
        if line.word(action, is: "copy") {
            if let first = rule.copy {
                error("duplicate 'user \(name) copy'; first at \(first.reference.location)", line.at)
                return
            }
            guard let templates = parseTemplates(line, targets, allowBare: false) else { return }
            rule.copy = CopyRule(targets: templates, reference: line.reference)
        } else if line.word(action, is: "rewrite") {
            guard args.count == 3 else {
                error("'user \(name) rewrite' takes exactly one target", line.location(action))
                return
            }
            if let first = rule.rewrite {
                error("duplicate 'user \(name) rewrite'; first at \(first.reference.location)", line.at)
                return
            }
            guard let template = parseTemplates(line, targets, allowBare: true)?.first else { return }
            rule.rewrite = RewriteRule(target: template, reference: line.reference)
        } else if line.word(action, is: "allow-clients") {
            if let first = rule.allowClients {
                error("duplicate 'user \(name) allow-clients'; first at \(first.reference.location)", line.at)
                return
            }
            guard let sources = parseSources(line, targets, keyword: "allow-clients") else { return }
            rule.allowClients = ClientAllowList(sources: sources, reference: line.reference)
        } else {
            error(
                "unknown user action '\(line.text(action))'; expected 'copy', 'rewrite' or 'allow-clients'",
                line.location(action))
            return
        }
        section.users[name] = rule
        section.usersToLint?.append(name)
    }

    /// `user pgsql:LIST`: the list's rows, each read as a `user` line of this section (after a
    /// `shadow`, each a shadow rule). A row's errors end with its key (`nameRow`), since its line
    /// number in the list's text means nothing in the database; after 20 the rest go unread.
    mutating func parseDatabaseUserRules(_ line: Line, _ word: Word, into section: inout SectionBuilder) {
        guard let name = checkListName(line, word) else { return }
        let path = DatabaseListName.prefix + name
        let rows = section.users.isEmpty ? source.databaseRows.map { $0.rules[name] ?? [] } : nil
        if let rows, let (users, added) = patchedUserRules(name, shadow: line.shadow, rows: rows) {
            source.databaseListPatched(name, in: .rules)
            files.append(path)
            section.users = users
            section.usersReserved = true
            section.usersToLint = added
            return
        }
        let file: RuleFileText
        do {
            file = RuleFileText(path: path, bytes: try source.databaseList(name, in: .rules))
        } catch {
            self.error("cannot read user rules '\(path)': \(error)", line.location(word))
            return
        }
        files.append(path)
        let errorsBefore = diagnostics.count
        let filesBefore = files.count
        file.bytes.withUnsafeBufferPointer { bytes in
            let rows = bytes.count(where: { $0 == UInt8(ascii: "\n") })
            section.users.reserveCapacity(section.users.count + rows)
            section.usersReserved = true
            var row = Line(file: file, bytes: bytes)
            var next = 0
            var number = 0
            while next < bytes.count, diagnostics.count - errorsBefore < 20 {
                number += 1
                next = row.read(from: next, number: number)
                guard let keyword = row.words.first else { continue }
                guard row.word(keyword, is: "user") else {
                    error("a row of '\(path)' must read as a 'user' line", row.at)
                    continue
                }
                row.shadow = line.shadow
                let before = diagnostics.count
                parseUser(row, into: &section)
                if diagnostics.count > before { nameRow(row, list: name, since: before) }
            }
        }
        if diagnostics.count - errorsBefore >= 20 {
            error("too many errors in user rules '\(path)'; stopped reporting", line.location(word))
        }
        if let rows, diagnostics.count == errorsBefore, files.count == filesBefore {
            lists.rules[DatabaseListParses.RulesKey(list: name, shadow: line.shadow)] = DatabaseListParses.Rules(
                rows: rows, users: section.users, patched: 0)
        }
    }

    /// Adds the row's identity (its key columns) to the diagnostics from `since` on: the line
    /// number of a row in its list's text is not something the administrator can look up.
    mutating func nameRow(_ row: Line, list: String, since: Int) {
        let key = row.words.dropFirst().prefix(2).map(row.text)
        let identity = " (row list='\(list)' name='\(key.first ?? "")' action='\(key.dropFirst().first ?? "")')"
        for index in since..<diagnostics.count {
            let found = diagnostics[index]
            diagnostics[index] =
                found.severity == .error
                ? .error(found.message + identity, at: found.location)
                : .warning(found.message + identity, at: found.location)
        }
    }

    /// The lower-cased user name in `bytes`, or nil (and an error at `at`) when it is not one.
    mutating func checkUserName(_ bytes: UnsafeBufferPointer<UInt8>, at: SourceLocation) -> String? {
        if let problem = LocalPartCharacters.problem(in: bytes) {
            error("'\(String(decoding: bytes, as: UTF8.self))' is not a user name: \(problem)", at)
            return nil
        }
        return lowercasedString(bytes)
    }

    /// Reads one user per line of what `read` returns (a file, or a database list's rows as text);
    /// `#` comments and blank lines are allowed. `path` names the list in errors. Built for lists
    /// of a million names: one pass over the bytes, one hash insert per name.
    mutating func readUserList(
        _ path: String, at: SourceLocation, into users: inout Set<String>, read: () throws -> [UInt8]
    ) {
        let bytes: [UInt8]
        do {
            bytes = try read()
        } catch {
            self.error("cannot read user list '\(path)': \(error)", at)
            return
        }
        files.append(path)
        var errors = 0
        bytes.withUnsafeBufferPointer { all in
            // Sized once for every line (a name a line, at most): no rehashing on the way to a million.
            var lines = 1
            for byte in all where byte == UInt8(ascii: "\n") { lines += 1 }
            users.reserveCapacity(users.count + lines)
            var start = 0
            var number = 0
            while start < all.count, errors < 20 {
                number += 1
                var end = start
                while end < all.count, all[end] != UInt8(ascii: "\n") { end += 1 }
                defer { start = end + 1 }
                var first = start
                var last = start
                while last < end, all[last] != UInt8(ascii: "#") { last += 1 }
                while first < last, all[first] == 0x20 || all[first] == 0x09 { first += 1 }
                while last > first, all[last - 1] == 0x20 || all[last - 1] == 0x09 || all[last - 1] == 0x0D {
                    last -= 1
                }
                if first == last { continue }
                let name = UnsafeBufferPointer(rebasing: all[first..<last])
                let position = SourceLocation(file: path, line: number, column: first - start + 1)
                if let problem = LocalPartCharacters.problem(in: name) {
                    error("'\(String(decoding: name, as: UTF8.self))' is not a user name: \(problem)", position)
                    errors += 1
                    continue
                }
                let user = lowercasedString(name)
                if !users.insert(user).inserted {
                    error("duplicate user '\(user)'", position)
                    errors += 1
                }
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
    mutating func parseKnown(_ line: Line, into section: inout SectionBuilder) {
        guard !line.arguments.isEmpty else {
            error("'known' needs user names, 'file:PATH' or 'pgsql:LIST'", line.at)
            return
        }
        if let first = section.knownReference, first.isShadow != line.shadow {
            error(
                "'\(line.shadow ? "shadow known" : "known")' cannot be combined with"
                    + " '\(first.isShadow ? "shadow known" : "known")' (at \(first.location)) in one section",
                line.at)
            return
        }
        if section.knownReference == nil { section.knownReference = line.reference }
        var users = section.knownUsers ?? []
        section.knownUsers = nil
        addUsers(line, listName: "known", into: &users)
        section.knownUsers = users
    }

    mutating func parseAllowAny(_ line: Line, into section: inout SectionBuilder) {
        guard !line.arguments.isEmpty else {
            error("'allow-any' needs user names, e.g. 'allow-any postmaster abuse'", line.at)
            return
        }
        if section.anyClientReference == nil { section.anyClientReference = line.reference }
        addUsers(line, listName: "allow-any", into: &section.anyClientUsers)
    }

    /// CIDRs, `file:PATH` (one CIDR per line) and `spf:DOMAIN`.
    mutating func parseSources(_ line: Line, _ args: ArraySlice<Word>, keyword: String) -> [NetworkSource]? {
        guard !args.isEmpty else {
            error("'\(keyword)' needs networks (192.0.2.0/24, 2001:db8::/32), 'file:PATH' or 'spf:DOMAIN'", line.at)
            return nil
        }
        var networks: [IPNetwork] = []
        var sources: [NetworkSource] = []
        var ok = true
        for word in args {
            let text = line.text(word)
            if text.hasPrefix("spf:") {
                let domain = String(text.dropFirst(4)).lowercased()
                if let problem = DomainName.problem(in: domain.utf8) {
                    error("'\(text)' does not name a domain: \(problem)", line.location(word))
                    ok = false
                } else {
                    sources.append(.spf(domain))
                }
            } else if text.hasPrefix("file:") {
                let listPath = RulePath.resolve(String(text.dropFirst(5)), relativeTo: line.file.path)
                ok = readNetworkList(listPath, at: line.location(word), into: &networks) && ok
            } else if let network = IPNetwork(text) {
                networks.append(network)
            } else {
                error("'\(text)' is not a network (address or address/length)", line.location(word))
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
