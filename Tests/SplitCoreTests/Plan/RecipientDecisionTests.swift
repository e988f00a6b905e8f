/// Which rule fires for a recipient: domain-wide, excluded, per user, subdomains, unusable local parts.

import Testing

@testable import SplitCore

@Suite struct RecipientDecisionTests {
    let set: RuleSet

    init() throws {
        set = try rules(
            """
            domain example.org
                copy %u@gapps.example.org
                except dave
                user allie copy alice@gapps.example.org
                user frank rewrite frank@mda.example.test
            domain example.net
                user carol.smith rewrite carol
            domain *.lists.example
                only bob
                copy %b@copy.example
                rewrite %b@local.example
            domain sub.lists.example
                copy exact@copy.example
            """)
    }

    func copies(_ recipient: String) -> [String] {
        set.decide(recipient: recipient).copies.map(\.address.description)
    }

    @Test func splitDeliveryCopiesEveryoneButTheExcepted() {
        #expect(copies("<alice@example.org>") == ["alice@gapps.example.org"])
        #expect(copies("<Alice+Tag@EXAMPLE.ORG>") == ["Alice+Tag@gapps.example.org"])
        #expect(copies("<dave@example.org>") == [])
        #expect(copies("<dave+x@example.org>") == [], "the extension is stripped before the except lookup")
        #expect(copies("<alice@example.com>") == [], "a domain without a section gets nothing")
        let excluded = set.decide(recipient: "<dave@example.org>")
        guard case .excluded(let reference) = excluded.selection else {
            Issue.record("dave must be excluded by the except line: \(excluded.selection)")
            return
        }
        #expect(reference.location.line == 3)
    }

    @Test func userRulesOverrideTheDomain() {
        #expect(copies("<allie@example.org>") == ["alice@gapps.example.org"])
        let frank = set.decide(recipient: "<frank@example.org>")
        #expect(frank.rewrite?.address.description == "frank@mda.example.test")
        #expect(frank.rewrite?.rule.location.line == 5)
        #expect(frank.copies.map(\.address.description) == ["frank@gapps.example.org"])
    }

    @Test func secondaryMxRewritesOneUserOnly() {
        #expect(set.decide(recipient: "<carol.smith@example.net>").rewrite?.address.description == "carol")
        let other = set.decide(recipient: "<zed@example.net>")
        #expect(other.rewrite == nil)
        #expect(other.copies.isEmpty)
    }

    @Test func subdomainSectionsYieldToExactOnes() {
        #expect(copies("<bob@a.lists.example>") == ["bob@copy.example"])
        #expect(set.decide(recipient: "<bob@a.lists.example>").rewrite?.address.description == "bob@local.example")
        #expect(copies("<eve@a.lists.example>") == [], "only bob is selected")
        #expect(copies("<eve@sub.lists.example>") == ["exact@copy.example"])
        #expect(copies("<bob@lists.example>") == [], "*.lists.example does not match lists.example")
    }

    @Test func unusableLocalPartsGetNoCopyAndAReason() {
        let quoted = set.decide(recipient: "<\"alice smith\"@example.org>")
        #expect(quoted.copies.isEmpty)
        #expect(quoted.selection == .unusable)
        #expect(quoted.problems == ["quoted local part is not placed into templates"])
        let percent = set.decide(recipient: "<alice%evil.example@example.org>")
        #expect(percent.copies.isEmpty)
        #expect(percent.problems.count == 1)
        #expect(set.decide(recipient: "<\"x y\"@example.com>").problems.isEmpty, "no word about unlisted domains")
    }

    @Test func aCopyToTheRecipientItselfIsDropped() throws {
        let selfCopy = try rules("domain example.org\n  copy %u@example.org other@copy.example\n")
        let decision = selfCopy.decide(recipient: "<alice@Example.org>")
        #expect(decision.copies.map(\.address.description) == ["other@copy.example"])
        #expect(decision.problems.count == 1)
    }
}
