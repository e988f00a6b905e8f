/// `pgsql:LIST` in rule files: user lists (`only`, `except`, `known`, `allow-any`) and user rules
/// (`user pgsql:LIST`) read from the database's rows, checked as a file's lines are, and deciding
/// as the same names and lines written in the file do.

import Testing

@testable import SplitCore

/// Rule files in memory and database lists: rendered from `rows` (as the daemon renders them), or
/// given as raw text, which takes precedence.
struct DatabaseMemorySource: RuleSource {
    var files: [String: String]
    var rows: DatabaseRows
    var raw: [DatabaseTable: [String: String]]

    init(files: [String: String], rows: DatabaseRows = DatabaseRows(), raw: [DatabaseTable: [String: String]] = [:]) {
        self.files = files
        self.rows = rows
        self.raw = raw
    }

    func contents(of path: String) throws -> [UInt8] { try MemoryRuleSource(files: files).contents(of: path) }

    func expand(pattern: String) throws -> [String] { try MemoryRuleSource(files: files).expand(pattern: pattern) }

    func databaseList(_ name: String, in table: DatabaseTable) throws -> [UInt8] {
        if let text = raw[table]?[name] { return Array(text.utf8) }
        return try rows.text(of: name, in: table)
    }

    /// Raw text stands for rows that cannot be rendered: the parser then reads every list whole.
    var databaseRows: DatabaseRows? { raw.isEmpty ? rows : nil }
}

@Suite struct DatabaseListParserTests {
    typealias Rule = DatabaseRows.Rule
    static let main = "/etc/sm/main.rules"

    func parse(_ text: String, rows: DatabaseRows = DatabaseRows(), raw: [DatabaseTable: [String: String]] = [:])
        -> RuleParseResult
    {
        RuleParser.parse(file: Self.main, source: DatabaseMemorySource(files: [Self.main: text], rows: rows, raw: raw))
    }

    func ruleSet(
        _ text: String, rows: DatabaseRows = DatabaseRows(), raw: [DatabaseTable: [String: String]] = [:],
        sourceLocation: Testing.SourceLocation = #_sourceLocation
    ) throws -> RuleSet {
        let result = parse(text, rows: rows, raw: raw)
        return try #require(result.ruleSet, "\(result.diagnostics)", sourceLocation: sourceLocation)
    }

    func members(_ list: String, _ names: [String]) -> DatabaseRows {
        DatabaseRows(changeID: 1, members: names.map { (list: list, name: $0) }, rules: [])
    }

    func userRules(_ list: String, _ rows: [(String, String, String)]) -> DatabaseRows {
        DatabaseRows(
            changeID: 1, members: [],
            rules: rows.map { (list: list, rule: Rule(name: $0.0, action: $0.1, targets: $0.2)) })
    }

    /// What a recipient gets, without where the rules are written: copies (shadow ones marked),
    /// rewrite, how it was selected and the guards' verdict.
    func outcome(_ set: RuleSet, _ recipient: String, from ip: String = "198.51.100.1") -> String {
        let client = ClientContext(address: IPAddress(ip), authenticatedAs: nil)
        let decision = set.decide(recipient: recipient, client: client)
        let copies = decision.copies.map { "\($0.address)\($0.isShadow ? " (shadow)" : "")" }
        let selection: String =
            switch decision.selection {
            case .noSection: "no section"
            case .unusable: "unusable"
            case .user: "user"
            case .domainWide: "domain-wide"
            case .excluded: "excluded"
            }
        let verdict: String =
            switch decision.verdict {
            case .accept: "accept"
            case .reject(let reply, _, _), .tempfail(let reply, _, _): "\(reply.code) \(reply.enhanced)"
            }
        let rewrite = decision.rewrite.map { "\($0.address)\($0.isShadow ? " (shadow)" : "")" } ?? "-"
        return "copies \(copies) rewrite \(rewrite) \(selection) \(verdict)"
    }

    func expectSameDecisions(
        _ database: RuleSet, _ inline: RuleSet, _ recipients: [String], from ip: String = "198.51.100.1",
        sourceLocation: Testing.SourceLocation = #_sourceLocation
    ) {
        for recipient in recipients {
            #expect(
                outcome(database, recipient, from: ip) == outcome(inline, recipient, from: ip), "\(recipient)",
                sourceLocation: sourceLocation)
        }
    }

    static let recipients = [
        "<alice@example.org>", "<Bob+tag@EXAMPLE.org>", "<carol@example.org>", "<dave@example.org>",
        "<carol.smith@example.org>", "<postmaster@example.org>", "<zed@example.org>", "<bob@other.example>",
    ]

    @Test func onlyAListDecidesAsTheSameNamesInline() throws {
        let rows = members("google", ["alice", "Bob", "carol"])
        let text = "domain example.org\n  copy %u@gapps.example.org\n  only pgsql:google\n"
        let database = try ruleSet(text, rows: rows)
        let inline = try ruleSet("domain example.org\n  copy %u@gapps.example.org\n  only alice Bob carol\n")
        #expect(database.section(for: "example.org")?.scope == .only(["alice", "bob", "carol"]))
        expectSameDecisions(database, inline, Self.recipients)
        #expect(
            outcome(database, "<Bob+tag@example.org>")
                == "copies [\"Bob+tag@gapps.example.org\"] rewrite - domain-wide accept")
        #expect(outcome(database, "<dave@example.org>") == "copies [] rewrite - excluded accept")
        #expect(database.files == [Self.main, "pgsql:google"])
    }

    @Test func exceptAListDecidesAsTheSameNamesInline() throws {
        let rows = members("gone", ["dave", "zed"])
        let database = try ruleSet(
            "domain example.org\n  rewrite %u@primary.example\n  except pgsql:gone bob\n", rows: rows)
        let inline = try ruleSet("domain example.org\n  rewrite %u@primary.example\n  except dave zed bob\n")
        #expect(database.section(for: "example.org")?.scope == .except(["dave", "zed", "bob"]))
        expectSameDecisions(database, inline, Self.recipients)
    }

    @Test func knownAndAllowAnyListsGuardAsTheSameNamesInline() throws {
        let rows = DatabaseRows(
            changeID: 1,
            members: [("staff", "alice"), ("staff", "Carol"), ("admins", "postmaster"), ("admins", "abuse")],
            rules: [])
        let database = try ruleSet(
            """
            domain example.org
                allow-clients 192.0.2.0/24
                allow-any pgsql:admins
                known pgsql:staff postmaster
            """, rows: rows)
        let inline = try ruleSet(
            """
            domain example.org
                allow-clients 192.0.2.0/24
                allow-any postmaster abuse
                known alice carol postmaster
            """)
        let guards = try #require(database.section(for: "example.org")?.guards)
        #expect(guards.knownUsers == ["alice", "carol", "postmaster"])
        #expect(guards.anyClientUsers == ["postmaster", "abuse"])
        for ip in ["198.51.100.1", "192.0.2.9"] {
            expectSameDecisions(database, inline, Self.recipients + ["<abuse@example.org>"], from: ip)
        }
        #expect(outcome(database, "<postmaster@example.org>") == "copies [] rewrite - domain-wide accept")
        #expect(outcome(database, "<alice@example.org>") == "copies [] rewrite - domain-wide 550 5.7.1")
        #expect(outcome(database, "<alice@example.org>", from: "192.0.2.9") == "copies [] rewrite - domain-wide accept")
        #expect(
            outcome(database, "<zed@example.org>", from: "192.0.2.9") == "copies [] rewrite - domain-wide 550 5.1.1")
        #expect(database.files == [Self.main, "pgsql:admins", "pgsql:staff"])
    }

    /// `allow-any` now reads `file:` lists too.
    @Test func allowAnyReadsAFileList() throws {
        let result = RuleParser.parse(
            file: Self.main,
            source: MemoryRuleSource(files: [
                Self.main: "domain example.org\n  allow-clients 192.0.2.0/24\n  allow-any file:admins.txt\n",
                "/etc/sm/admins.txt": "postmaster\n# the abuse desk\nabuse\n",
            ]))
        let set = try #require(result.ruleSet, "\(result.diagnostics)")
        #expect(set.section(for: "example.org")?.guards.anyClientUsers == ["postmaster", "abuse"])
    }

    static let userRows = [
        ("bob", "copy", "bob@gapps.example.org archive+%u@archive.example"),
        ("carol.smith", "rewrite", "carol"),
        ("dave", "allow-clients", "198.51.100.7"),
        ("dave", "copy", "%b@gapps.example.org"),
        ("alice", "rewrite", "alice@primary.example"),
    ]

    @Test func userRulesDecideAsTheSameLinesInline() throws {
        let text = """
            domain example.org
                copy %u@gapps.example.org
                allow-clients 192.0.2.0/24
                user pgsql:users
                user erin copy erin@elsewhere.example
            """
        let database = try ruleSet(text, rows: userRules("users", Self.userRows))
        let lines = Self.userRows.map { "    user \($0.0) \($0.1) \($0.2)" }.joined(separator: "\n")
        let inline = try ruleSet(
            """
            domain example.org
                copy %u@gapps.example.org
                allow-clients 192.0.2.0/24
            \(lines)
                user erin copy erin@elsewhere.example
            """)
        for ip in ["198.51.100.1", "198.51.100.7", "192.0.2.9"] {
            expectSameDecisions(
                database, inline, Self.recipients + ["<erin@example.org>", "<dave+x@example.org>"], from: ip)
        }
        #expect(
            outcome(database, "<bob@example.org>", from: "192.0.2.9")
                == "copies [\"bob@gapps.example.org\", \"archive+bob@archive.example\"] rewrite - user accept")
        #expect(database.ruleCount == inline.ruleCount)
        let section = try #require(database.section(for: "example.org"))
        let bob = try #require(section.users["bob"]?.copy?.reference)
        // The rows are sorted by name, then action: alice rewrite, bob copy, carol.smith rewrite, ...
        #expect(bob.location == SourceLocation(file: "pgsql:users", line: 2, column: 1))
        #expect(bob.text == "user bob copy bob@gapps.example.org archive+%u@archive.example")
        #expect(!bob.isShadow)
        #expect(section.users["carol.smith"]?.rewrite?.reference.location.file == "pgsql:users")
        #expect(section.users["dave"]?.allowClients?.reference.location.file == "pgsql:users")
        #expect(section.users["erin"]?.copy?.reference.location.file == Self.main)
        #expect(database.files == [Self.main, "pgsql:users"])
    }

    /// The identity the parser appends to an error of a row.
    static func identity(_ name: String, _ action: String) -> String {
        " (row list='users' name='\(name)' action='\(action)')"
    }

    @Test(
        arguments: [
            (
                ("bob", "copy", "%q@x.org"),
                "pgsql:users:1:15: error: bad template '%q@x.org': unknown token '%q'; use %u, %b, %e or %d"
                    + identity("bob", "copy")
            ),
            (
                ("b!d", "copy", "b@x.org"),
                "pgsql:users:1:6: error: 'b!d' is not a user name: character '!' is not allowed"
                    + identity("b!d", "copy")
            ),
            (
                ("bob", "forward", "b@x.org"),
                "pgsql:users:1:10: error: unknown user action 'forward'; expected 'copy', 'rewrite' or 'allow-clients'"
                    + identity("bob", "forward")
            ),
            (
                ("bob", "rewrite", "a@x.org b@x.org"),
                "pgsql:users:1:10: error: 'user bob rewrite' takes exactly one target" + identity("bob", "rewrite")
            ),
            (
                ("bob", "allow-clients", "not-a-network"),
                "pgsql:users:1:24: error: 'not-a-network' is not a network (address or address/length)"
                    + identity("bob", "allow-clients")
            ),
            (
                ("bob", "copy", ""),
                "pgsql:users:1:1: error: 'user' needs a name, an action and its arguments, e.g. 'user carol.smith rewrite carol'"
                    + identity("bob", "copy")
            ),
        ] as [((String, String, String), String)])
    func reportsABadRowWithItsIdentity(row: (String, String, String), expected: String) {
        let result = parse("domain example.org\n  user pgsql:users\n", rows: userRules("users", [row]))
        #expect(result.ruleSet == nil)
        #expect(result.errors.map(\.description) == [expected])
        #expect(result.errors.first?.location.file == "pgsql:users")
        #expect(result.errors.first?.message.hasSuffix(Self.identity(row.0, row.1)) == true)
    }

    @Test func reportsEveryBadRowAmongGoodOnes() {
        let rows = userRules(
            "users", [("alice", "copy", "a@x.org"), ("bob", "copy", "%q@x.org"), ("carol", "forward", "c@x.org")])
        let result = parse("domain example.org\n  user pgsql:users\n", rows: rows)
        #expect(result.errors.map(\.location.line) == [2, 3])
        #expect(result.errors.map(\.location.file) == ["pgsql:users", "pgsql:users"])
        #expect(result.errors[0].message.hasSuffix(Self.identity("bob", "copy")))
        #expect(result.errors[1].message.hasSuffix(Self.identity("carol", "forward")))
    }

    @Test func aRowThatRepeatsAFileLineIsADuplicate() {
        let rows = userRules("users", [("Bob", "copy", "b@y.org")])
        let after = parse("domain example.org\n  user bob copy b@x.org\n  user pgsql:users\n", rows: rows)
        #expect(
            after.errors.map(\.description) == [
                "pgsql:users:1:1: error: duplicate 'user bob copy'; first at /etc/sm/main.rules:2:3"
                    + Self.identity("Bob", "copy")
            ])
        let before = parse("domain example.org\n  user pgsql:users\n  user bob copy b@x.org\n", rows: rows)
        #expect(
            before.errors.map(\.description) == [
                "/etc/sm/main.rules:3:3: error: duplicate 'user bob copy'; first at pgsql:users:1:1"
            ])
        // Another action of the same user is no duplicate.
        let other = parse("domain example.org\n  user bob rewrite b@x.org\n  user pgsql:users\n", rows: rows)
        #expect(other.errors.isEmpty, "\(other.errors)")
    }

    @Test func aUserListReadTwiceHasDuplicates() {
        let result = parse(
            "domain example.org\n  copy %u@x.org\n  only pgsql:a pgsql:a\n", rows: members("a", ["alice"]))
        #expect(result.errors.map(\.description) == ["pgsql:a:1:1: error: duplicate user 'alice'"])
    }

    @Test func reportsBadNamesOfAUserListAtTheirRow() {
        let result = parse(
            "domain example.org\n  copy %u@x.org\n  except pgsql:google\n",
            rows: members("google", ["alice", "bad!name", "ALICE"]))
        #expect(
            result.errors.map(\.description) == [
                // Bytewise, "ALICE" comes first: "alice" is its duplicate.
                "pgsql:google:2:1: error: duplicate user 'alice'",
                "pgsql:google:3:1: error: 'bad!name' is not a user name: character '!' is not allowed",
            ])
    }

    /// A row that cannot be one line is refused whole: the list is not read.
    @Test func aRowThatIsNotOneLineMakesTheListUnreadable() {
        let list = parse("domain example.org\n  copy %u@x.org\n  only pgsql:google\n", rows: members("google", ["a b"]))
        #expect(
            list.errors.map(\.description) == [
                "/etc/sm/main.rules:3:8: error: cannot read user list 'pgsql:google': row of list_members"
                    + " list='google' name='a b': a key holds a blank, a comma, '#' or a control character"
            ])
        let rules = parse(
            "domain example.org\n  user pgsql:users\n",
            rows: userRules("users", [("bob", "copy", "b@x.org\nuser mallory copy m@evil.example")]))
        #expect(
            rules.errors.map(\.description) == [
                "/etc/sm/main.rules:2:8: error: cannot read user rules 'pgsql:users': row of user_rules list='users'"
                    + " name='bob' action='copy': the targets hold '#' or a control character"
            ])
    }

    @Test(arguments: [
        (
            "domain example.org\n  copy %u@x.org\n  only alice pgsql:\n",
            "/etc/sm/main.rules:3:14: error: 'pgsql:' does not name a database list: the list name is empty"
        ),
        (
            "domain example.org\n  copy %u@x.org\n  except pgsql:a/b\n",
            "/etc/sm/main.rules:3:10: error: 'pgsql:a/b' does not name a database list: a list name has only letters, digits, '.', '_' and '-'"
        ),
        (
            "domain example.org\n  allow-clients 192.0.2.1\n  allow-any pgsql:a:b\n",
            "/etc/sm/main.rules:3:13: error: 'pgsql:a:b' does not name a database list: a list name has only letters, digits, '.', '_' and '-'"
        ),
        (
            "domain example.org\n  known pgsql:\(String(repeating: "x", count: 129))\n",
            "/etc/sm/main.rules:2:9: error: 'pgsql:\(String(repeating: "x", count: 129))' does not name a database list: the list name is longer than 128 bytes"
        ),
        (
            "domain example.org\n    user pgsql:\n",
            "/etc/sm/main.rules:2:10: error: 'pgsql:' does not name a database list: the list name is empty"
        ),
        (
            "domain example.org\n  shadow user pgsql:a/b\n",
            "/etc/sm/main.rules:2:15: error: 'pgsql:a/b' does not name a database list: a list name has only letters, digits, '.', '_' and '-'"
        ),
    ])
    func reportsABadListNameAtItsWord(text: String, expected: String) {
        let result = parse(text, rows: members("a", ["alice"]))
        #expect(result.ruleSet == nil)
        #expect(result.errors.map(\.description) == [expected])
    }

    @Test func aListNameOfEveryAllowedCharacterIsRead() throws {
        let name = "Ab-9_z." + String(repeating: "x", count: 121)
        #expect(name.utf8.count == 128)
        let set = try ruleSet(
            "domain example.org\n  copy %u@x.org\n  only pgsql:\(name)\n", rows: members(name, ["alice"]))
        #expect(set.section(for: "example.org")?.scope == .only(["alice"]))
        #expect(set.files == [Self.main, "pgsql:" + name])
    }

    @Test func withoutADatabaseAListCannotBeRead() {
        let source = MemoryRuleSource(files: [
            Self.main: "domain example.org\n  copy %u@x.org\n  only pgsql:x\n  user pgsql:x\n"
        ])
        let result = RuleParser.parse(file: Self.main, source: source)
        #expect(result.ruleSet == nil)
        #expect(
            result.errors.map(\.description) == [
                "/etc/sm/main.rules:3:8: error: cannot read user list 'pgsql:x': no database is configured (splitmilter --database FILE)",
                "/etc/sm/main.rules:4:8: error: cannot read user rules 'pgsql:x': no database is configured (splitmilter --database FILE)",
            ])
    }

    @Test func anEmptyListIsNoUsers() throws {
        let set = try ruleSet(
            "domain example.org\n  copy %u@x.org\n  except pgsql:none\n  user pgsql:none\n  known pgsql:none\n")
        let section = try #require(set.section(for: "example.org"))
        #expect(section.scope == .except([]))
        #expect(section.users.isEmpty)
        #expect(section.guards.knownUsers == [])
        #expect(set.files == [Self.main, "pgsql:none", "pgsql:none", "pgsql:none"])
    }

    @Test func shadowUserRowsAreShadowRules() throws {
        let rows = userRules("users", Self.userRows)
        let set = try ruleSet(
            "domain example.org\n  copy %u@gapps.example.org\n  shadow user pgsql:users\n  user erin rewrite erin\n",
            rows: rows)
        let section = try #require(set.section(for: "example.org"))
        #expect(section.hasShadow)
        #expect(section.copy?.reference.isShadow == false)
        let references = Self.userRows.map { row in
            switch row.1 {
            case "copy": section.users[row.0]?.copy?.reference
            case "rewrite": section.users[row.0]?.rewrite?.reference
            default: section.users[row.0]?.allowClients?.reference
            }
        }
        #expect(references.allSatisfy { $0?.isShadow == true && $0?.location.file == "pgsql:users" }, "\(references)")
        #expect(section.users["erin"]?.rewrite?.reference.isShadow == false)
        #expect(
            outcome(set, "<bob@example.org>", from: "192.0.2.1")
                == "copies [\"bob@gapps.example.org (shadow)\", \"archive+bob@archive.example (shadow)\", \"bob@gapps.example.org\"] rewrite - user accept"
        )
        // A section's `shadow` line makes the rows shadow rules too.
        let whole = try ruleSet("domain example.org\n  user pgsql:users\n  shadow\n", rows: rows)
        #expect(whole.section(for: "example.org")?.users["bob"]?.copy?.reference.isShadow == true)
        let first = try ruleSet("domain example.org\n  shadow\n  user pgsql:users\n", rows: rows)
        #expect(first.section(for: "example.org")?.users["bob"]?.copy?.reference.isShadow == true)
    }

    @Test func stopsAfterTwentyBadRows() {
        let rows = userRules("users", (0..<25).map { ("user\($0 + 10)", "copy", "%q@x.org") })
        let result = parse("domain example.org\n  user pgsql:users\n  user bob frobnicate x\n", rows: rows)
        let rowErrors = result.errors.filter { $0.location.file == "pgsql:users" }
        #expect(rowErrors.count == 20)
        #expect(rowErrors.map(\.location.line) == Array(1...20))
        #expect(rowErrors.allSatisfy { $0.message.hasPrefix("bad template '%q@x.org'") })
        #expect(
            result.errors.dropFirst(20).map(\.description) == [
                "/etc/sm/main.rules:2:8: error: too many errors in user rules 'pgsql:users'; stopped reporting",
                "/etc/sm/main.rules:3:12: error: unknown user action 'frobnicate'; expected 'copy', 'rewrite' or 'allow-clients'",
            ])
    }

    /// Nineteen errors are not too many (twenty are, as in a file list); errors before the rows do
    /// not count.
    @Test func nineteenBadRowsAreAllReported() {
        let rows = userRules("users", (0..<19).map { ("user\($0 + 10)", "copy", "%q@x.org") })
        let result = parse("domain example.org\n  user bob frobnicate x\n  user pgsql:users\n", rows: rows)
        #expect(result.errors.count == 20)
        #expect(!result.errors.contains { $0.message.hasPrefix("too many errors") })
    }
}
