/// The database's rows in memory: bytewise order whatever order they come in, one change at a time,
/// and each list as the rule text the parser reads.

import Testing

@testable import SplitCore

/// A seeded generator (SplitMix64): the same changes in every run.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var mixed = state
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        return mixed ^ (mixed >> 31)
    }
}

/// The rows as bytes, one entry a row, lists in byte order: `String`'s `==` takes canonically
/// equivalent spellings (`é`, `e` + U+0301) for equal, the database and these rows do not.
func rowBytes(_ rows: DatabaseRows) -> [[UInt8]] {
    var out: [[UInt8]] = []
    let separator: [UInt8] = [0]
    for list in rows.members.keys.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }) {
        for name in rows.members[list] ?? [] {
            out.append(Array("m".utf8) + Array(list.utf8) + separator + Array(name.utf8))
        }
    }
    for list in rows.rules.keys.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }) {
        for rule in rows.rules[list] ?? [] {
            out.append(
                Array("r".utf8) + Array(list.utf8) + separator + Array(rule.name.utf8) + separator
                    + Array(rule.action.utf8) + separator + Array(rule.targets.utf8))
        }
    }
    return out
}

func utf8Arrays(_ strings: [String]) -> [[UInt8]] { strings.map { Array($0.utf8) } }

/// Whether every list is non-empty and strictly ascending by its key's bytes.
func isSortedBytewise(_ rows: DatabaseRows) -> Bool {
    for names in rows.members.values {
        if names.isEmpty { return false }
        for (left, right) in zip(names, names.dropFirst()) where !left.utf8.lexicographicallyPrecedes(right.utf8) {
            return false
        }
    }
    for list in rows.rules.values {
        if list.isEmpty { return false }
        for (left, right) in zip(list, list.dropFirst()) {
            let leftKey = Array(left.name.utf8) + [0] + Array(left.action.utf8)
            let rightKey = Array(right.name.utf8) + [0] + Array(right.action.utf8)
            if !leftKey.lexicographicallyPrecedes(rightKey) { return false }
        }
    }
    return true
}

extension DatabaseRows {
    /// Applies `change`, which must be one these rows can apply.
    mutating func expectApplied(
        _ change: Change, _ comment: Comment? = nil, sourceLocation: Testing.SourceLocation = #_sourceLocation
    ) {
        let applied = apply(change)
        #expect(applied, comment, sourceLocation: sourceLocation)
    }
}

@Suite struct DatabaseRowsTests {
    typealias Rule = DatabaseRows.Rule

    /// `é` written as one scalar (C3 A9) and as `e` + a combining accent (65 CC 81): equal as
    /// Swift strings, different bytes, and so different rows.
    static let composed = "\u{E9}"
    static let decomposed = "e\u{301}"

    @Test func sortsMembersBytewiseWhateverTheInputOrder() {
        let names = ["b", "B", "a", Self.composed, Self.decomposed, "Z", "_", "aa", "a-"]
        let expected = ["B", "Z", "_", "a", "a-", "aa", "b", Self.decomposed, Self.composed]
        var random = SeededGenerator(seed: 1)
        for _ in 0..<50 {
            let rows = DatabaseRows(
                changeID: 7, members: names.shuffled(using: &random).map { (list: "g", name: $0) }, rules: [])
            #expect(utf8Arrays(rows.members["g"] ?? []) == utf8Arrays(expected))
            #expect(rows.changeID == 7)
            #expect(rows.memberCount == names.count)
        }
    }

    @Test func sortsRulesByNameThenActionBytewiseWhateverTheInputOrder() {
        let rules = [
            Rule(name: "bob", action: "rewrite", targets: "bob@x.org"),
            Rule(name: "bob", action: "copy", targets: "bob@y.org"),
            Rule(name: "alice", action: "copy", targets: "a@y.org"),
            Rule(name: Self.composed, action: "copy", targets: "c@y.org"),
            Rule(name: Self.decomposed, action: "rewrite", targets: "d@y.org"),
            Rule(name: "f", action: "copy", targets: "f@y.org"),
            Rule(name: "Bob", action: "copy", targets: "B@y.org"),
            Rule(name: "bob", action: "allow-clients", targets: "192.0.2.1"),
        ]
        let expected: [(String, String)] = [
            ("Bob", "copy"), ("alice", "copy"), ("bob", "allow-clients"), ("bob", "copy"), ("bob", "rewrite"),
            (Self.decomposed, "rewrite"), ("f", "copy"), (Self.composed, "copy"),
        ]
        var random = SeededGenerator(seed: 2)
        for _ in 0..<50 {
            let rows = DatabaseRows(
                changeID: 1, members: [], rules: rules.shuffled(using: &random).map { (list: "u", rule: $0) })
            let got = (rows.rules["u"] ?? []).map { [Array($0.name.utf8), Array($0.action.utf8)] }
            #expect(got == expected.map { [Array($0.0.utf8), Array($0.1.utf8)] })
            #expect(rows.ruleCount == rules.count)
        }
        // Applied one at a time, in any order, the rows end up in the same order.
        for _ in 0..<50 {
            var rows = DatabaseRows()
            for rule in rules.shuffled(using: &random) { rows.expectApplied(.setRule(list: "u", rule)) }
            let got = (rows.rules["u"] ?? []).map { [Array($0.name.utf8), Array($0.action.utf8)] }
            #expect(got == expected.map { [Array($0.0.utf8), Array($0.1.utf8)] })
        }
    }

    @Test func keepsNoRowOfAListNoRuleFileCanName() {
        // Both spellings of é are one dictionary key but two lists in the database; a rule file
        // names lists in ASCII only, so such rows are never used and not kept.
        var rows = DatabaseRows(
            changeID: 1,
            members: [
                (list: "caf\u{E9}", name: "alice"), (list: "cafe\u{301}", name: "alice"), (list: "ok", name: "bob"),
            ],
            rules: [(list: "a b", rule: Rule(name: "carol", action: "copy", targets: "c@x.org"))])
        #expect(rows.members == ["ok": ["bob"]])
        #expect(rows.rules.isEmpty)
        let appliedMember = rows.apply(.setMember(list: "caf\u{E9}", name: "dave"))
        let appliedRule = rows.apply(.setRule(list: "", Rule(name: "x", action: "copy", targets: "x@y.org")))
        #expect(appliedMember && appliedRule)
        #expect(rows.members == ["ok": ["bob"]])
        #expect(rows.rules.isEmpty)
    }

    @Test func appliesMemberChanges() {
        var rows = DatabaseRows(
            changeID: 3, members: [(list: "g", name: "carol"), (list: "g", name: "alice"), (list: "h", name: "x")],
            rules: [])
        rows.expectApplied(.setMember(list: "g", name: "bob"))
        #expect(rows.members["g"] == ["alice", "bob", "carol"])
        rows.expectApplied(.setMember(list: "g", name: "bob"), "setting a present row changes nothing")
        #expect(rows.members["g"] == ["alice", "bob", "carol"])
        rows.expectApplied(.setMember(list: "new", name: "zed"))
        #expect(rows.members["new"] == ["zed"])
        let before = rows
        rows.expectApplied(.deleteMember(list: "g", name: "dave"), "deleting a missing row is a no-op")
        rows.expectApplied(.deleteMember(list: "none", name: "alice"))
        #expect(rows == before)
        #expect(rows.members["none"] == nil)
        rows.expectApplied(.deleteMember(list: "g", name: "bob"))
        #expect(rows.members["g"] == ["alice", "carol"])
        rows.expectApplied(.deleteMember(list: "h", name: "x"))
        #expect(rows.members["h"] == nil, "a list without rows disappears")
        #expect(rows.memberCount == 3)
        #expect(rows.changeID == 3)
        #expect(
            rows == DatabaseRows(changeID: 3, members: [("new", "zed"), ("g", "carol"), ("g", "alice")], rules: []))
    }

    @Test func appliesRuleChanges() {
        var rows = DatabaseRows(
            changeID: 1,
            members: [],
            rules: [
                (list: "u", rule: Rule(name: "alice", action: "copy", targets: "a@x.org")),
                (list: "u", rule: Rule(name: "carol", action: "copy", targets: "c@x.org")),
            ])
        rows.expectApplied(.setRule(list: "u", Rule(name: "bob", action: "rewrite", targets: "b@x.org")))
        rows.expectApplied(.setRule(list: "u", Rule(name: "alice", action: "rewrite", targets: "a@y.org")))
        #expect(
            rows.rules["u"] == [
                Rule(name: "alice", action: "copy", targets: "a@x.org"),
                Rule(name: "alice", action: "rewrite", targets: "a@y.org"),
                Rule(name: "bob", action: "rewrite", targets: "b@x.org"),
                Rule(name: "carol", action: "copy", targets: "c@x.org"),
            ])
        // The same key again: its targets are replaced, in place.
        rows.expectApplied(.setRule(list: "u", Rule(name: "bob", action: "rewrite", targets: "bob@new.example")))
        #expect(rows.rules["u"]?[2] == Rule(name: "bob", action: "rewrite", targets: "bob@new.example"))
        #expect(rows.ruleCount == 4)
        let before = rows
        rows.expectApplied(.deleteRule(list: "u", name: "bob", action: "copy"), "deleting a missing row is a no-op")
        rows.expectApplied(.deleteRule(list: "none", name: "bob", action: "rewrite"))
        #expect(rows == before)
        #expect(rows.rules["none"] == nil)
        rows.expectApplied(.deleteRule(list: "u", name: "alice", action: "copy"))
        #expect(rows.rules["u"]?.map(\.name) == ["alice", "bob", "carol"])
        for (name, action) in [("alice", "rewrite"), ("bob", "rewrite"), ("carol", "copy")] {
            rows.expectApplied(.deleteRule(list: "u", name: name, action: action))
        }
        #expect(rows.rules["u"] == nil, "a list without rows disappears")
        #expect(rows.ruleCount == 0)
        #expect(rows == DatabaseRows(changeID: 1))
    }

    @Test func aReloadCannotBeApplied() {
        var rows = DatabaseRows(changeID: 9, members: [("g", "alice")], rules: [])
        let before = rows
        let applied = rows.apply(.reload)
        #expect(!applied)
        #expect(rows == before)
    }

    @Test func rendersAUserListOneNameALine() throws {
        let rows = DatabaseRows(
            changeID: 1, members: [("google", "carol"), ("google", "Alice"), ("other", "x"), ("google", "bob")],
            rules: [(list: "users", rule: Rule(name: "bob", action: "copy", targets: "b@x.org"))])
        #expect(try rows.text(of: "google", in: .members) == Array("Alice\nbob\ncarol\n".utf8))
        #expect(try rows.text(of: "other", in: .members) == Array("x\n".utf8))
        #expect(try rows.text(of: "missing", in: .members) == [])
        #expect(try rows.text(of: "users", in: .members) == [], "a list of the other table is not a user list")
    }

    @Test func rendersUserRulesOneUserLineARow() throws {
        let rows = DatabaseRows(
            changeID: 1, members: [("google", "alice")],
            rules: [
                (list: "users", rule: Rule(name: "carol.smith", action: "rewrite", targets: "carol")),
                (list: "users", rule: Rule(name: "bob", action: "copy", targets: "bob@gapps.example.org, b@y.org")),
                (list: "users", rule: Rule(name: "bob", action: "allow-clients", targets: "192.0.2.0/24")),
                (list: "other", rule: Rule(name: "zed", action: "copy", targets: "z@x.org")),
            ])
        let expected =
            "user bob allow-clients 192.0.2.0/24\nuser bob copy bob@gapps.example.org, b@y.org\n"
            + "user carol.smith rewrite carol\n"
        #expect(try rows.text(of: "users", in: .rules) == Array(expected.utf8))
        #expect(try rows.text(of: "other", in: .rules) == Array("user zed copy z@x.org\n".utf8))
        #expect(try rows.text(of: "missing", in: .rules) == [])
        #expect(try rows.text(of: "google", in: .rules) == [])
        #expect(try DatabaseRows().text(of: "users", in: .rules) == [])
    }

    @Test(arguments: ["a b", "a,b", "a#b", "a\nb", "a\tb", "a\rb", "a\u{7F}b", ""])
    func refusesAMemberThatIsNotOneWord(name: String) throws {
        let rows = DatabaseRows(changeID: 1, members: [("google", "alice"), ("google", name)], rules: [])
        #expect {
            try rows.text(of: "google", in: .members)
        } throws: { error in
            guard let error = error as? DatabaseRows.RowError else { return false }
            return error.list == "google" && error.table == .members && error.key == "name='\(name)'"
                && error.description
                    == "row of list_members list='google' name='\(name)': a key holds a blank, a comma, '#' or a control character"
        }
        #expect(try rows.text(of: "other", in: .members) == [], "other lists are not affected")
    }

    @Test(arguments: [
        ("a b", "copy", "x@y.org"), ("a,b", "copy", "x@y.org"), ("a#b", "copy", "x@y.org"),
        ("a\nb", "copy", "x@y.org"), ("bob", "co py", "x@y.org"), ("bob", "copy\n", "x@y.org"),
        ("bob", "", "x@y.org"), ("bob", "co#py", "x@y.org"),
    ])
    func refusesARuleWhoseKeyIsNotOneWord(name: String, action: String, targets: String) {
        let rows = DatabaseRows(
            changeID: 1, members: [], rules: [(list: "users", rule: Rule(name: name, action: action, targets: targets))]
        )
        #expect {
            try rows.text(of: "users", in: .rules)
        } throws: { error in
            guard let error = error as? DatabaseRows.RowError else { return false }
            return error.list == "users" && error.table == .rules
                && error.key == "name='\(name)' action='\(action)'"
                && error.description.hasPrefix("row of user_rules list='users' name='\(name)' action='\(action)': ")
        }
    }

    @Test(arguments: ["x@y.org # comment", "x@y.org\nuser mallory copy m@evil.example", "a@x.org\tb@x.org", "a\r"])
    func refusesTargetsThatAreNotOneLine(targets: String) {
        let rows = DatabaseRows(
            changeID: 1, members: [],
            rules: [
                (list: "users", rule: Rule(name: "alice", action: "copy", targets: "a@x.org")),
                (list: "users", rule: Rule(name: "bob", action: "copy", targets: targets)),
            ])
        #expect {
            try rows.text(of: "users", in: .rules)
        } throws: { error in
            (error as? DatabaseRows.RowError)?.description
                == "row of user_rules list='users' name='bob' action='copy': the targets hold '#' or a control character"
        }
    }

    /// Random set and delete changes, applied one by one, give the rows a whole read of the final
    /// state gives, sorted bytewise after every change.
    @Test(arguments: [UInt64(1), 2, 3, 0xDB])
    func changesAppliedOneByOneEqualAWholeRead(seed: UInt64) {
        var random = SeededGenerator(seed: seed)
        let lists = ["google", "users", "a"]
        let names = [
            "alice", "bob", "Bob", "carol.smith", "b", "bo", Self.composed, Self.decomposed, "z\u{FC}rich", "_x",
        ]
        let actions = ["copy", "rewrite", "allow-clients"]
        var members: [[UInt8]: (list: String, name: String)] = [:]
        var rules: [[UInt8]: (list: String, rule: Rule)] = [:]
        var rows = DatabaseRows(changeID: 0)
        for step in 0..<3000 {
            let list = lists.randomElement(using: &random)!
            let name = names.randomElement(using: &random)!
            let action = actions.randomElement(using: &random)!
            let memberKey = Array(list.utf8) + [0] + Array(name.utf8)
            let ruleKey = memberKey + [0] + Array(action.utf8)
            let change: DatabaseRows.Change
            switch Int.random(in: 0..<4, using: &random) {
            case 0:
                change = .setMember(list: list, name: name)
                members[memberKey] = (list, name)
            case 1:
                change = .deleteMember(list: list, name: name)
                members[memberKey] = nil
            case 2:
                let rule = Rule(name: name, action: action, targets: "t\(Int.random(in: 0..<5, using: &random))@x.org")
                change = .setRule(list: list, rule)
                rules[ruleKey] = (list, rule)
            default:
                change = .deleteRule(list: list, name: name, action: action)
                rules[ruleKey] = nil
            }
            rows.expectApplied(change)
            #expect(isSortedBytewise(rows), "step \(step): \(change)")
            if step % 500 == 499 || step == 2999 {
                let whole = DatabaseRows(changeID: 0, members: Array(members.values), rules: Array(rules.values))
                #expect(rowBytes(rows) == rowBytes(whole), "step \(step)")
                #expect(rows == whole)
                #expect(rows.memberCount == members.count && rows.ruleCount == rules.count)
            }
        }
    }
}
