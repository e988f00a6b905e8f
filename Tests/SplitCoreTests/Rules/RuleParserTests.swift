/// The rule language: sections, includes, user lists, and every error at its file:line:col.

import Testing

@testable import SplitCore

/// `text` gives no rules and one error, which starts with `/etc/sm/` and `expected`.
func expectOneError(_ text: String, _ expected: String, sourceLocation: Testing.SourceLocation = #_sourceLocation) {
    let result = parse(text)
    #expect(result.ruleSet == nil, sourceLocation: sourceLocation)
    let printed = result.errors.map(\.description)
    #expect(printed.count == 1, "\(printed)", sourceLocation: sourceLocation)
    #expect(
        printed.first.map { $0.hasPrefix("/etc/sm/" + expected) } == true, "\(printed)", sourceLocation: sourceLocation)
}

@Suite struct RuleParserTests {
    @Test func parsesSectionsAndCountsRules() throws {
        let set = try rules(
            """
            # comment
            delimiter +
            domain example.org, example.com
                copy %u@gapps.example.org archive+%b=%d@archive.example   # two targets
                except dave eve
                user allie copy alice@gapps.example.org
                user carol.smith rewrite carol
            domain *.example.net
                rewrite %u@primary.example.net
            """)
        #expect(set.domains.count == 2)
        #expect(set.domains[0].names == ["example.org", "example.com"])
        #expect(set.ruleCount == 4)
        #expect(set.makesCopies)
        #expect(set.rewrites)
        #expect(set.section(for: "example.com")?.copy?.targets.count == 2)
        #expect(set.section(for: "a.b.example.net")?.rewrite != nil)
        #expect(set.section(for: "example.net") == nil)
    }

    /// Each bad line yields one error at the exact column of the offending word.
    @Test(arguments: [
        ("domain example.org\n  frobnicate x\n", "main.rules:2:3: error: unknown directive 'frobnicate'"),
        (
            "domain example.org\n  copy alice@gapps.example.org %q@x.org\n",
            "main.rules:2:32: error: bad template '%q@x.org': unknown token '%q'"
        ),
        (
            "domain example.org\n  copy %u@%d.google.com\n",
            "main.rules:2:11: error: bad template '%u@%d.google.com': the domain of a target must be written out"
        ),
        ("domain example.org\n  copy %u\n", "main.rules:2:10: error: bad template '%u': copy target needs a domain"),
        (
            "domain example.org\n  copy a\"b@x.org\n",
            "main.rules:2:9: error: bad template 'a\"b@x.org': character '\"' is not allowed"
        ),
        (
            "domain example.org\n  copy a@x.org\n  copy b@x.org\n",
            "main.rules:3:3: error: duplicate 'copy' in this section; first at /etc/sm/main.rules:2:3"
        ),
        (
            "domain example.org\n copy a@x.org\ndomain EXAMPLE.org\n",
            "main.rules:3:8: error: duplicate domain 'example.org'; first defined at /etc/sm/main.rules:1:8"
        ),
        (
            "domain example.org\n  copy a@x.org\n  except bob bob\n",
            "main.rules:3:14: error: duplicate user 'bob' in 'except' list"
        ),
        (
            "domain example.org\n  copy a@x.org\n  only bob\n  except carol\n",
            "main.rules:4:3: error: 'except' cannot be combined with 'only'"
        ),
        (
            "domain example.org\n  user bob copy a@x.org\n  user BOB copy b@x.org\n",
            "main.rules:3:3: error: duplicate 'user bob copy'; first at /etc/sm/main.rules:2:3"
        ),
        ("domain example.org\n  user bob forward a@x.org\n", "main.rules:2:12: error: unknown user action 'forward'"),
        (
            "domain example.org\n  user b@d copy a@x.org\n",
            "main.rules:2:8: error: 'b@d' is not a user name: character '@' is not allowed"
        ),
        ("copy a@x.org\n", "main.rules:1:1: error: 'copy' must be inside a 'domain' section"),
        (
            "domain exa_mple..org\n",
            "main.rules:1:8: error: 'exa_mple..org' is not a domain name: empty label in domain"
        ),
        (
            "domain example.org\n  copy a@x.org\ninclude other.rules\n",
            "main.rules:3:1: error: 'include' must come before the first 'domain' section"
        ),
        (
            "include missing.rules\n",
            "main.rules:1:9: error: cannot read '/etc/sm/missing.rules': No such file or directory"
        ),
        (
            "domain example.org\n  copy a@x.org\n  only file:users.txt\n",
            "main.rules:3:8: error: cannot read user list '/etc/sm/users.txt'"
        ),
        ("delimiter a\n", "main.rules:1:11: error: 'a' is not a set of delimiter characters"),
        (
            "domain example.org\n  rewrite a@x.org b@x.org\n",
            "main.rules:2:3: error: 'rewrite' takes exactly one target"
        ),
    ])
    func reportsErrorAtItsColumn(text: String, expected: String) {
        expectOneError(text, expected)
    }

    /// A rule keeps no text of its own: its text is rebuilt from its line, words joined by single
    /// blanks (commas, tabs and carriage returns are separators, `#` ends the line), in every file.
    @Test func referencesGiveTheirLineAsWritten() throws {
        let result = parse([
            "/etc/sm/main.rules":
                "include more.rules\ndomain example.org\n\tuser  Allie ,copy alice@x.org,\tb@Y.org # c\r\n",
            "/etc/sm/more.rules": "domain example.net\n  rewrite %u@Primary.Example  # relay\n",
        ])
        let set = try #require(result.ruleSet, "\(result.diagnostics)")
        let copy = try #require(set.section(for: "example.org")?.users["allie"]?.copy)
        #expect(copy.reference.text == "user Allie copy alice@x.org b@Y.org")
        #expect(copy.reference.location == SourceLocation(file: "/etc/sm/main.rules", line: 3, column: 2))
        #expect(copy.reference.description == "/etc/sm/main.rules:3 (user Allie copy alice@x.org b@Y.org)")
        #expect(copy.targets.map(\.source) == ["alice@x.org", "b@Y.org"])
        #expect(copy.targets.map(\.domain) == ["x.org", "y.org"])
        let rewrite = try #require(set.section(for: "example.net")?.rewrite)
        #expect(rewrite.reference.text == "rewrite %u@Primary.Example")
        #expect(rewrite.reference.location.fileAndLine == "/etc/sm/more.rules:2")
        #expect(rewrite.target.source == "%u@Primary.Example")
        #expect(rewrite.reference == RuleReference(location: rewrite.reference.location, text: rewrite.reference.text))
        #expect(rewrite.reference != copy.reference)
    }

    @Test func collectsEveryErrorOfAFile() {
        let result = parse("domain example.org\n  copy %x@y.org\n  bogus\n  user z nope q\n")
        #expect(result.errors.map(\.location.line) == [2, 3, 4])
    }

    @Test func includesFilesAndGlobsRelativeToTheIncludingFile() throws {
        let result = parse([
            "/etc/sm/main.rules": "delimiter -\ninclude domains/*.rules\n",
            "/etc/sm/domains/a.rules": "domain a.example\n  copy %b@copy.example\n",
            "/etc/sm/domains/b.rules": "domain b.example\n  copy %u@copy.example\n  only file:b-users.txt\n",
            "/etc/sm/domains/b-users.txt": "# users of b\nbob\n  Carol  \n\n",
        ])
        let set = try #require(result.ruleSet, "\(result.diagnostics)")
        #expect(set.files.count == 4)
        #expect(set.section(for: "a.example")?.delimiters == "-")
        #expect(set.section(for: "b.example")?.scope == .only(["bob", "carol"]))
    }

    @Test func reportsIncludeCyclesAndUnmatchedGlobs() {
        let result = parse([
            "/etc/sm/main.rules": "include loop.rules\ninclude none/*.rules\n",
            "/etc/sm/loop.rules": "include main.rules\n",
        ])
        #expect(
            result.errors.map(\.description) == [
                "/etc/sm/loop.rules:1:9: error: include cycle: '/etc/sm/main.rules' is already being read"
            ])
        #expect(
            result.warnings.map(\.description) == [
                "/etc/sm/main.rules:2:9: warning: include pattern '/etc/sm/none/*.rules' matches no file"
            ])
    }

    @Test func reportsBadLinesOfAUserListWithTheirPosition() {
        let result = parse([
            "/etc/sm/main.rules": "domain example.org\n  copy %u@x.org\n  except file:users.txt\n",
            "/etc/sm/users.txt": "alice\n  bad!name\nalice\n",
        ])
        #expect(
            result.errors.map(\.description) == [
                "/etc/sm/users.txt:2:3: error: 'bad!name' is not a user name: character '!' is not allowed",
                "/etc/sm/users.txt:3:1: error: duplicate user 'alice'",
            ])
    }

    @Test func warnsAboutRulesThatCannotFire() {
        let result = parse("domain example.org\n  only bob\ndomain example.com\n")
        #expect(result.ruleSet != nil)
        #expect(result.warnings.map(\.location.line) == [1, 2, 3])
    }
}

@Suite struct RuleLintTests {
    @Test func warnsAboutTargetsThatAreTheRecipientOrHaveRulesOfTheirOwn() {
        let result = parse(
            """
            domain example.org
                copy %u@example.org %u@gapps.example.org
                user carol rewrite carol@example.org
                user dave copy dave@example.net
            domain gapps.example.org
                copy %u@archive.example
            domain *.example.net
                rewrite %u@primary.example
            """)
        #expect(result.ruleSet != nil)
        #expect(
            result.warnings.map(\.description) == [
                "/etc/sm/main.rules:2:5: warning: target '%u@example.org' is the recipient itself; this rule never changes anything",
                "/etc/sm/main.rules:2:5: warning: 'gapps.example.org' has rules of its own (/etc/sm/main.rules:5:1), but added recipients are not looked up again: they get none of them",
                "/etc/sm/main.rules:3:5: warning: target 'carol@example.org' is the recipient itself; this rule never changes anything",
            ])
    }
}

/// `shadow`: before a rule, alone as a section's line, or for the whole file (a dry run). A shadow
/// rule is stored as a live one, its reference marked.
@Suite struct ShadowRuleParserTests {
    @Test func shadowBeforeADirectiveMarksThatRuleOnly() throws {
        let set = try rules(
            """
            domain example.org
                shadow copy %u@gapps.example.org
                rewrite %u@primary.example
                shadow user allie copy alice@gapps.example.org
                shadow user carol rewrite carol
                user carol copy carol@archive.example
                shadow user dave allow-clients 198.51.100.0/24
                shadow allow-clients 192.0.2.0/24
                shadow known alice allie
                shadow known file:users.txt
            domain example.net
                copy %u@archive.example
            """, files: ["/etc/sm/users.txt": "carol\ndave\n"])
        let org = try #require(set.section(for: "example.org"))
        #expect(org.hasShadow)
        #expect(org.copy?.reference.isShadow == true)
        #expect(org.rewrite?.reference.isShadow == false)
        #expect(org.users["allie"]?.copy?.reference.isShadow == true)
        #expect(org.users["carol"]?.rewrite?.reference.isShadow == true)
        #expect(org.users["carol"]?.copy?.reference.isShadow == false)
        #expect(org.users["carol"]?.hasLiveRule == true)
        #expect(org.users["allie"]?.hasLiveRule == false)
        #expect(org.users["dave"]?.allowClients?.reference.isShadow == true)
        #expect(org.guards.allowClients?.reference.isShadow == true)
        #expect(org.guards.knownReference?.isShadow == true)
        #expect(org.guards.knownUsers == ["alice", "allie", "carol", "dave"])
        let net = try #require(set.section(for: "example.net"))
        #expect(!net.hasShadow)
        #expect(net.copy?.reference.isShadow == false)
        #expect(set.ruleCount == 9)
    }

    /// The rule's text is its line as written, `shadow` included; its position is the directive's.
    @Test func aShadowRuleKeepsItsLineAndPointsAtItsDirective() throws {
        let set = try rules("domain example.org\n  shadow   user Allie copy alice@x.org\n")
        let copy = try #require(set.section(for: "example.org")?.users["allie"]?.copy)
        #expect(copy.reference.text == "shadow user Allie copy alice@x.org")
        #expect(copy.reference.location == SourceLocation(file: "/etc/sm/main.rules", line: 2, column: 12))
        #expect(copy.reference != RuleReference(location: copy.reference.location, text: copy.reference.text))
    }

    /// A `shadow` line anywhere in a section makes every rule of it shadow, those before it too.
    @Test func aShadowLineMakesTheWholeSectionShadow() throws {
        let set = try rules(
            """
            domain example.org
                copy %u@gapps.example.org
                user carol rewrite carol
                known alice carol
                allow-clients 192.0.2.0/24
                shadow
                user dave copy dave@gapps.example.org
                user erin allow-clients 198.51.100.7
                known dave
                rewrite %u@primary.example
            domain example.net
                copy %u@archive.example
            """)
        let org = try #require(set.section(for: "example.org"))
        #expect(org.hasShadow)
        let references = [
            org.copy?.reference, org.rewrite?.reference, org.users["carol"]?.rewrite?.reference,
            org.users["dave"]?.copy?.reference, org.users["erin"]?.allowClients?.reference,
            org.guards.allowClients?.reference, org.guards.knownReference,
        ]
        #expect(references.allSatisfy { $0?.isShadow == true }, "\(references)")
        #expect(set.section(for: "example.net")?.hasShadow == false)
    }

    /// A dry run marks every rule of the file read, in every section, wherever it is looked up.
    @Test func aDryRunMakesEveryRuleShadow() throws {
        let text = """
            domain example.org
              copy %u@gapps.example.org
              user bob rewrite bob@x.org
              known bob
            domain *.example.net, example.com
              allow-clients 192.0.2.0/24
              user carol allow-clients 198.51.100.7
            """
        let result = RuleParser.parse(
            file: "/etc/sm/main.rules", source: MemoryRuleSource(files: ["/etc/sm/main.rules": text]), dryRun: true)
        let set = try #require(result.ruleSet, "\(result.diagnostics)")
        let org = try #require(set.section(for: "example.org"))
        #expect(org.hasShadow)
        #expect(org.copy?.reference.isShadow == true)
        #expect(org.users["bob"]?.rewrite?.reference.isShadow == true)
        #expect(org.guards.knownReference?.isShadow == true)
        let net = try #require(set.section(for: "a.example.net"))
        #expect(net.isSame(as: try #require(set.section(for: "example.com"))))
        #expect(net.guards.allowClients?.reference.isShadow == true)
        #expect(net.users["carol"]?.allowClients?.reference.isShadow == true)
        #expect(set.domains.count == 2 && set.domains.allSatisfy(\.hasShadow))
        #expect(set.ruleCount == 5)
        let live = try rules(text)
        #expect(live.section(for: "example.org")?.copy?.reference.isShadow == false)
        #expect(live.domains.allSatisfy { !$0.hasShadow })
    }

    @Test(arguments: [
        (
            "domain example.org\n  copy a@x.org\n  shadow only bob\n",
            "main.rules:3:10: error: 'shadow' goes before copy, rewrite, user, allow-clients or known, not before 'only'"
        ),
        ("domain example.org\n  copy a@x.org\n  shadow except bob\n", "main.rules:3:10: error: 'shadow' goes before"),
        (
            "domain example.org\n  allow-clients 192.0.2.1\n  shadow allow-any postmaster\n",
            "main.rules:3:10: error: 'shadow' goes before copy, rewrite, user, allow-clients or known, not before 'allow-any'"
        ),
        (
            "domain example.org\n  allow-clients 192.0.2.1\n  shadow reject-text go away\n",
            "main.rules:3:10: error: 'shadow' goes before copy, rewrite, user, allow-clients or known, not before 'reject-text'"
        ),
        ("domain example.org\n  copy a@x.org\n  shadow delimiter -\n", "main.rules:3:10: error: 'shadow' goes before"),
        ("shadow domain example.org\n", "main.rules:1:8: error: 'shadow' goes before"),
        ("shadow include other.rules\n", "main.rules:1:8: error: 'shadow' goes before"),
        ("shadow trusted-networks 192.0.2.0/24\n", "main.rules:1:8: error: 'shadow' goes before"),
        ("shadow trust-authenticated no\n", "main.rules:1:8: error: 'shadow' goes before"),
        ("shadow delimiter +\n", "main.rules:1:8: error: 'shadow' goes before"),
        (
            "domain example.org\n  shadow shadow copy a@x.org\n",
            "main.rules:2:10: error: 'shadow' goes before copy, rewrite, user, allow-clients or known, not before 'shadow'"
        ),
        ("domain example.org\n  shadow cpy a@x.org\n", "main.rules:2:10: error: 'shadow' goes before"),
        ("shadow copy a@x.org\n", "main.rules:1:8: error: 'copy' must be inside a 'domain' section"),
        (
            "shadow\ndomain example.org\n  copy a@x.org\n",
            "main.rules:1:1: error: 'shadow' alone makes a 'domain' section shadow"
        ),
        (
            "domain example.org\n  shadow\n  copy a@x.org\n  shadow\n",
            "main.rules:4:3: error: duplicate 'shadow' in this section; first at /etc/sm/main.rules:2:3"
        ),
        (
            "domain example.org\n  known alice\n  shadow known bob\n",
            "main.rules:3:10: error: 'shadow known' cannot be combined with 'known' (at /etc/sm/main.rules:2:3) in one section"
        ),
        (
            "domain example.org\n  shadow known alice\n  known bob\n",
            "main.rules:3:3: error: 'known' cannot be combined with 'shadow known' (at /etc/sm/main.rules:2:10) in one section"
        ),
        (
            "domain example.org\n  copy a@x.org\n  shadow copy b@x.org\n",
            "main.rules:3:10: error: duplicate 'copy' in this section; first at /etc/sm/main.rules:2:3"
        ),
        ("domain example.org\n  shadow copy\n", "main.rules:2:10: error: 'copy' needs at least one target"),
    ])
    func reportsShadowErrorsAtTheDirective(text: String, expected: String) {
        expectOneError(text, expected)
    }

    /// A section's user table is sized at its first user line, `shadow user` lines counted too.
    @Test func countsShadowUserLinesAhead() {
        let text = "shadow user a copy a@x.org\n\n  # note\nuser b copy b@x.org\n\tshadow,user c rewrite c\nshadowy\n"
        let count = Array(text.utf8).withUnsafeBufferPointer { bytes in
            var line = Line(file: RuleFileText(path: "/r", bytes: []), bytes: bytes)
            _ = line.read(from: 0, number: 1)
            return line.userLinesAhead()
        }
        #expect(count == 3)
    }
}
