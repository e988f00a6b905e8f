/// The rule language: sections, includes, user lists, and every error at its file:line:col.

import Testing

@testable import SplitCore

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
        let result = parse(text)
        #expect(result.ruleSet == nil)
        let printed = result.errors.map(\.description)
        #expect(printed.count == 1, "\(printed)")
        #expect(printed.first.map { $0.hasPrefix("/etc/sm/" + expected) } == true, "\(printed)")
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
