/// Fuzz target `rules`: whole rule files, with the files they include and the `file:` lists they
/// read, parsed from memory (`MemoryRuleSource`, the unit tests' in-memory `RuleSource`).
///
/// Input: the main file `/r/main.rules`; a line `@@ NAME` starts another file, `/r/NAME` (an
/// include, a glob match, a user or network list).
///
/// Properties:
///   1. a rule set comes back exactly when there is no error;
///   2. every diagnostic names a file that exists, a line of it and a column within that line (or
///      just past its end); a file with no line at all can only be named at 1:1;
///   3. a rule set's `check` summary is consistent: the first file read is the main file and every
///      file read exists; sections are in file order, their names lower-case host names (or
///      `*.` one) found by `section(for:)`; the flags (copies, rewrites, guards), the rule count,
///      the listed-user count (distinct users a section names, counted here with plain sets) and
///      the `spf:` domains agree with the sections;
///   4. every copy or rewrite target of the rule set names a lower-case host name, and a probe
///      recipient of each section decides without trapping, adding only addresses at those
///      domains.

import SplitCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let main = "/r/main.rules"
    var files: [String: String] = [:]
    var name = main
    var current: [ArraySlice<UInt8>] = []
    let marker = Array("@@ ".utf8)
    for line in pieces(input(data, size), by: UInt8(ascii: "\n")) {
        if line.starts(with: marker) {
            files[name] = current.map(text).joined(separator: "\n")
            name = "/r/" + text(line.dropFirst(marker.count))
            current = []
        } else {
            current.append(line)
        }
    }
    files[name] = current.map(text).joined(separator: "\n")

    let result = RuleParser.parse(file: main, source: MemoryRuleSource(files: files))
    require((result.ruleSet == nil) == !result.errors.isEmpty, "rule set and errors disagree: \(result.errors)")
    for diagnostic in result.diagnostics { checkLocation(diagnostic, files) }
    if let set = result.ruleSet { checkSummary(set, main: main, files: files) }
    return 0
}

func checkLocation(_ diagnostic: Diagnostic, _ files: [String: String]) {
    let location = diagnostic.location
    guard let content = files[location.file] else {
        return require(false, "\(diagnostic): names a file that does not exist")
    }
    // Lines as the parser counts them: cut at "\n", a last empty piece is not a line.
    var lines = Array(content.utf8).split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
    if lines.last?.isEmpty == true { lines.removeLast() }
    guard !lines.isEmpty else {
        return require(location.line == 1 && location.column == 1, "\(diagnostic): position in an empty file")
    }
    require((1...lines.count).contains(location.line), "\(diagnostic): line outside 1...\(lines.count)")
    let length = lines[location.line - 1].count
    require((1...(length + 1)).contains(location.column), "\(diagnostic): column outside 1...\(length + 1)")
}

func checkSummary(_ set: RuleSet, main: String, files: [String: String]) {
    require(set.files.first == main, "first file read is \(set.files.first ?? "none"), not \(main)")
    for file in set.files { require(files[file] != nil, "read \(file), which does not exist") }

    var makesCopies = false
    var rewrites = false
    var checksRecipients = false
    var rules = 0
    var users = 0
    var spf = Set<String>()
    var targets: [AddressTemplate] = []
    var names = Set<String>()
    set.trust.networks.map { spf.formUnion($0.spfDomains) }
    for (index, section) in set.domains.enumerated() {
        if index > 0 {
            require(set.domains[index - 1].location < section.location, "sections out of file order")
        }
        require(!section.names.isEmpty, "section at \(section.location) has no name")
        for name in section.names {
            require(names.insert(name).inserted, "domain \(name) in two sections")
            let bare = name.hasPrefix("*.") ? String(name.dropFirst(2)) : name
            require(isLowerCaseHostName(bare), "section name \(name.debugDescription) is not a lower-case host name")
            let probe = name.hasPrefix("*.") ? "fuzz-probe." + bare : name
            if !name.hasPrefix("*.") || set.domains.allSatisfy({ !$0.names.contains(probe) }) {
                require(
                    set.section(for: probe)?.location == section.location,
                    "section(for: \(probe)) is not the section of \(name) at \(section.location)")
            }
        }
        makesCopies = makesCopies || section.copy != nil
        rewrites = rewrites || section.rewrite != nil
        checksRecipients = checksRecipients || section.guards.knownUsers != nil || section.guards.allowClients != nil
        rules +=
            [section.copy != nil, section.rewrite != nil, section.guards.knownUsers != nil]
            .filter { $0 }.count
        if let list = section.guards.allowClients {
            rules += 1
            spf.formUnion(list.spfDomains)
        }
        targets += section.copy?.targets ?? []
        section.rewrite.map { targets.append($0.target) }
        var named = Set(section.users.keys)
        named.formUnion(section.guards.knownUsers ?? [])
        named.formUnion(section.guards.anyClientUsers)
        switch section.scope {
        case .everyone: break
        case .only(let list), .except(let list): named.formUnion(list)
        }
        users += named.count
        for rule in section.users.values {
            if let copy = rule.copy {
                makesCopies = true
                rules += 1
                targets += copy.targets
            }
            if let rewrite = rule.rewrite {
                rewrites = true
                rules += 1
                targets.append(rewrite.target)
            }
            if let list = rule.allowClients {
                checksRecipients = true
                rules += 1
                spf.formUnion(list.spfDomains)
            }
        }
    }
    require(set.makesCopies == makesCopies, "makesCopies is \(set.makesCopies)")
    require(set.rewrites == rewrites, "rewrites is \(set.rewrites)")
    require(set.checksRecipients == checksRecipients, "checksRecipients is \(set.checksRecipients)")
    require(set.ruleCount == rules, "ruleCount is \(set.ruleCount), the sections hold \(rules)")
    require(set.userCount == users, "userCount is \(set.userCount), the sections name \(users)")
    require(set.spfDomains == spf.sorted(), "spfDomains is \(set.spfDomains), the lists name \(spf.sorted())")

    let domains = Set(targets.map(\.domain))
    for domain in domains where !domain.isEmpty {
        require(isLowerCaseHostName(domain), "target domain \(domain.debugDescription) is not a lower-case host name")
    }
    // A probe of every section (the first few), and of its named users: whatever is added is at a
    // domain some target names.
    for section in set.domains.prefix(4) {
        let name = section.names[0].hasPrefix("*.") ? "x" + section.names[0].dropFirst() : section.names[0]
        for user in ["probe"] + section.users.keys.sorted().prefix(3) {
            let decision = set.decide(recipient: "<\(user)@\(name)>", parameters: ["NOTIFY=NEVER"])
            for target in decision.copies.map(\.address) + (decision.rewrite.map { [$0.address] } ?? []) {
                require(domains.contains(target.domain), "\(user)@\(name) gets \(target), a domain no target names")
                require(isSafeDotAtom(target.localPart), "\(user)@\(name) gets \(target), not a safe dot-atom")
            }
        }
    }
}
