/// `DatabaseListParses`: a parse that patches the database lists the previous parse read gives the
/// rules and the diagnostics a whole read of the same rows gives, and a one-row change is patched,
/// not read whole.

import Testing

@testable import SplitCore

@Suite struct DatabaseListParsesTests {
    typealias Rule = DatabaseRows.Rule
    static let main = "/etc/sm/main.rules"
    static let rules = """
        domain example.org
            copy %u@gapps.example.org
            only pgsql:big
            user pgsql:people
        domain example.net
            allow-clients 192.0.2.0/24
            allow-any pgsql:admins
            known pgsql:big
            shadow user pgsql:people
        domain example.com
            rewrite %u@primary.example
            except pgsql:admins pgsql:staff
        """

    /// Parses `rows` with the lists of the previous parse (`lists`, replaced), and whole.
    func parseBoth(_ rows: DatabaseRows, _ lists: inout DatabaseListParses) -> (
        patched: RuleParseResult, whole: RuleParseResult
    ) {
        let source = DatabaseMemorySource(files: [Self.main: Self.rules], rows: rows)
        return (
            RuleParser.parse(file: Self.main, source: source, lists: &lists),
            RuleParser.parse(file: Self.main, source: source)
        )
    }

    /// The rules of a set without the line numbers of database rows (a patched row keeps the line
    /// it was read at; see `DatabaseListParses`): every section's lists and every user's rules with
    /// their targets, texts and shadow marks.
    func dump(_ set: RuleSet) -> [String] {
        func names(_ users: Set<String>?) -> String { users.map { $0.sorted().joined(separator: ",") } ?? "-" }
        func reference(_ reference: RuleReference?) -> String {
            reference.map { "\($0.location.file) \($0.text)\($0.isShadow ? " shadow" : "")" } ?? "-"
        }
        var lines: [String] = []
        for section in set.domains {
            let scope: String =
                switch section.scope {
                case .everyone: "everyone"
                case .only(let users): "only \(names(users))"
                case .except(let users): "except \(names(users))"
                }
            lines.append(
                "\(section.names) \(scope) known \(names(section.guards.knownUsers)) any \(names(section.guards.anyClientUsers))"
            )
            for (name, rule) in section.users.sorted(by: { $0.key < $1.key }) {
                let copy = rule.copy.map { "\($0.targets.map(\.description)) \(reference($0.reference))" } ?? "-"
                let rewrite = rule.rewrite.map { "\($0.target.description) \(reference($0.reference))" } ?? "-"
                let clients = reference(rule.allowClients?.reference)
                lines.append("  \(name): copy \(copy); rewrite \(rewrite); clients \(clients)")
            }
        }
        lines.append("users \(set.userCount) rules \(set.ruleCount) files \(set.files)")
        return lines
    }

    /// The same rules and errors; the patched parse's warnings are among the whole read's (rows not
    /// read again are not linted again: `RuleLint`).
    func expectSame(
        _ results: (patched: RuleParseResult, whole: RuleParseResult),
        sourceLocation: Testing.SourceLocation = #_sourceLocation
    ) {
        #expect(
            results.patched.errors.map(\.description) == results.whole.errors.map(\.description),
            sourceLocation: sourceLocation)
        let whole = results.whole.warnings.map(\.description)
        #expect(
            results.patched.warnings.map(\.description).allSatisfy(whole.contains), sourceLocation: sourceLocation)
        #expect((results.patched.ruleSet == nil) == (results.whole.ruleSet == nil), sourceLocation: sourceLocation)
        if let patched = results.patched.ruleSet, let whole = results.whole.ruleSet {
            #expect(dump(patched) == dump(whole), sourceLocation: sourceLocation)
        }
    }

    func apply(
        _ rows: inout DatabaseRows, _ change: DatabaseRows.Change,
        sourceLocation: Testing.SourceLocation = #_sourceLocation
    ) {
        let applied = rows.apply(change)
        #expect(applied, sourceLocation: sourceLocation)
    }

    static func bigRows(_ count: Int) -> DatabaseRows {
        DatabaseRows(
            changeID: 1, members: (0..<count).map { ("big", "u\($0)") } + [("admins", "postmaster"), ("staff", "s-0")],
            rules: (0..<count).map { ("people", Rule(name: "u\($0)", action: "copy", targets: "u\($0)@copy.example")) })
    }

    @Test func aOneRowChangeIsPatchedNotReadWhole() throws {
        var rows = Self.bigRows(1000)
        var lists = DatabaseListParses()
        expectSame(parseBoth(rows, &lists))
        let before = try #require(lists.rules[.init(list: "people", shadow: false)])
        #expect(before.patched == 0 && before.users.count == 1000)
        #expect(lists.members["big"]?.patched == 0)

        apply(&rows, .setRule(list: "people", Rule(name: "u5", action: "copy", targets: "u5@new.example")))
        apply(&rows, .setMember(list: "big", name: "newcomer"))
        apply(&rows, .deleteMember(list: "big", name: "u7"))
        expectSame(parseBoth(rows, &lists))
        let after = try #require(lists.rules[.init(list: "people", shadow: false)])
        // An update is a removed row and an added one; the other 999 rules are the objects read before.
        #expect(after.patched == 2)
        #expect(lists.rules[.init(list: "people", shadow: true)]?.patched == 2)
        #expect(lists.members["big"]?.patched == 2)
        #expect(lists.members["admins"]?.patched == 0)
        let unchanged = try #require(after.users["u999"]?.copy?.reference)
        #expect(unchanged.file === before.users["u999"]?.copy?.reference.file)
        #expect(after.users["u5"]?.copy?.reference.text == "user u5 copy u5@new.example")
        let row = try #require(rows.rules["people"]?.firstIndex { $0.name == "u5" })
        #expect(after.users["u5"]?.copy?.reference.location.description == "pgsql:people:\(row + 1):1")
        let set = try #require(parseBoth(rows, &lists).patched.ruleSet)
        #expect(set.section(for: "example.org")?.users["u5"]?.copy?.targets.map(\.description) == ["u5@new.example"])
    }

    @Test func aBadRowGivesTheWholeReadsErrorAndTheFixIsReadWhole() throws {
        var rows = Self.bigRows(50)
        var lists = DatabaseListParses()
        expectSame(parseBoth(rows, &lists))
        apply(&rows, .setRule(list: "people", Rule(name: "frank", action: "copy", targets: "frank@")))
        let bad = parseBoth(rows, &lists)
        expectSame(bad)
        #expect(bad.patched.ruleSet == nil)
        #expect(
            bad.patched.errors.map(\.description).contains {
                $0.contains("bad template 'frank@'") && $0.hasSuffix("(row list='people' name='frank' action='copy')")
            })
        #expect(lists.rules[.init(list: "people", shadow: false)] == nil)
        apply(&rows, .setRule(list: "people", Rule(name: "frank", action: "copy", targets: "frank@x.example")))
        expectSame(parseBoth(rows, &lists))
        #expect(lists.rules[.init(list: "people", shadow: false)]?.patched == 0)
    }

    /// A row read in a patch is linted; the rows read before are not linted again.
    @Test func onlyTheRowsReadInAPatchAreLinted() throws {
        var rows = Self.bigRows(10)
        apply(&rows, .setRule(list: "people", Rule(name: "ann", action: "copy", targets: "ann@example.com")))
        var lists = DatabaseListParses()
        let first = parseBoth(rows, &lists)
        let warning = "has rules of its own (/etc/sm/main.rules:10:1), but added recipients are not looked up again"
        // The row of `ann` in both sections (live and shadow): two warnings, in the patch and whole.
        #expect(first.patched.warnings.filter { $0.description.contains(warning) }.count == 2)
        apply(&rows, .setRule(list: "people", Rule(name: "bob", action: "copy", targets: "bob@example.com")))
        let second = parseBoth(rows, &lists)
        expectSame(second)
        #expect(lists.rules[.init(list: "people", shadow: false)]?.patched == 1)
        let patched = second.patched.warnings.map(\.description).filter { $0.contains(warning) }
        #expect(patched.count == 2 && patched.allSatisfy { $0.contains("pgsql:people:") })
        #expect(second.patched.warnings.allSatisfy { !$0.description.contains("ann") })
        #expect(second.whole.warnings.filter { $0.description.contains(warning) }.count == 4)
    }

    /// Random changes (names that differ only in case or in bytes, bad names, bad targets, every
    /// action, many rows at once): after each, the patched parse equals the whole one.
    @Test(arguments: [1, 2, 3, 4] as [UInt64])
    func randomChangesPatchAsAWholeReadReads(seed: UInt64) {
        var random = SeededGenerator(seed: seed)
        // Mostly good rows, so that most steps have rules to patch; now and then one of the rows
        // that make errors: a name equal to another but for case, or equal as a string but not
        // in bytes; a bad name, action or target; an allow-clients row.
        func pick(_ good: [String], rarely bad: [String]) -> String {
            Int.random(in: 0..<20, using: &random) == 0
                ? bad.randomElement(using: &random)! : good.randomElement(using: &random)!
        }
        let names = ["ann", "bob", "carol", "dave", "u1", "u2", "u3", "x.y"]
        let oddNames = ["Ann", "caf\u{E9}", "bad\"name", "U2"]
        var rows = Self.bigRows(30)
        var parses = DatabaseListParses()
        var patchedSteps = 0
        var failedSteps = 0
        for _ in 0..<300 {
            for _ in 0..<Int.random(in: 1...3, using: &random) {
                let name = pick(names, rarely: oddNames)
                // `staff` shares the `except` line with `admins`: its names are its own.
                let list = ["big", "admins", "staff"].randomElement(using: &random)!
                let action = pick(["copy", "rewrite"], rarely: ["allow-clients", "forward"])
                let target =
                    action == "rewrite"
                    ? pick(["u@a.example", "carol", "%u@primary.example"], rarely: ["a@b.example c@d.example", "x@"])
                    : pick(
                        ["%u@gapps.example.org", "u@a.example", "a@b.example c@d.example"], rarely: ["x@", "carol"])
                let change: DatabaseRows.Change =
                    switch Int.random(in: 0..<4, using: &random) {
                    case 0: .setMember(list: list, name: list == "staff" ? "s-" + name : name)
                    case 1: .deleteMember(list: list, name: list == "staff" ? "s-" + name : name)
                    case 2: .setRule(list: "people", Rule(name: name, action: action, targets: target))
                    default: .deleteRule(list: "people", name: name, action: action)
                    }
                _ = rows.apply(change)
            }
            // Now and then the rows that make errors go, as an administrator would fix them.
            if Int.random(in: 0..<3, using: &random) == 0 {
                let odd = Set(oddNames + ["s-Ann", "s-caf\u{E9}", "s-bad\"name", "s-U2"])
                for (list, members) in rows.members {
                    for name in members where odd.contains(name) {
                        _ = rows.apply(.deleteMember(list: list, name: name))
                    }
                }
                for rule in rows.rules["people"] ?? []
                where odd.contains(rule.name) || !["copy", "rewrite"].contains(rule.action)
                    || ["x@", "carol"].contains(rule.targets) && rule.action == "copy"
                    || rule.targets.contains(" ") && rule.action == "rewrite" || rule.targets == "x@"
                {
                    _ = rows.apply(.deleteRule(list: "people", name: rule.name, action: rule.action))
                }
            }
            let previous = parses.rules[.init(list: "people", shadow: false)]?.patched ?? -1
            let results = parseBoth(rows, &parses)
            expectSame(results)
            if results.whole.ruleSet == nil { failedSteps += 1 }
            if let now = parses.rules[.init(list: "people", shadow: false)]?.patched, now > max(previous, 0) {
                patchedSteps += 1
            }
        }
        // Most steps keep good rules, and those are patched.
        #expect(patchedSteps > 20, "\(failedSteps) steps with errors")
    }
}
