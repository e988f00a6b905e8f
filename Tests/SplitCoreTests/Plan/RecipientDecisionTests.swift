/// Which rule fires for a recipient: domain-wide, excluded, per user, subdomains, unusable local parts,
/// shadow rules.

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
            domain shadowed.example
                copy %u@gapps.example.org
                rewrite %u@primary.example
                shadow user allie copy alice@new.example
                shadow user bob rewrite bob@new.example
                user carol copy carol@archive.example
                shadow user carol rewrite carol@new.example
                shadow user dan copy dan@shadowed.example
            domain new.example
                shadow
                copy %u@gw.example
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

    /// argv[0] comes back byte for byte, whether the decision keeps it (any spelling but
    /// `<address>`) or makes it from the address when asked; from its bytes as from a string.
    @Test func recipientIsArgvZeroAsSent() {
        for raw in [
            "<alice@example.org>", "<Alice@EXAMPLE.ORG>", "<alice@example.org.>", "alice@example.org",
            " <alice@example.org> ", "<alice@example.com>", "<postmaster>", "<>", "<alice@@example.org>",
            "<\"a b\"@example.org>", "<caf\u{E9}@example.org>",
        ] {
            #expect(set.decide(recipient: raw).recipient == raw)
            var bytes = raw
            let decision = bytes.withUTF8 {
                set.decide(recipient: $0, parameters: [], client: .unknown, providers: .empty, resolved: { nil })
            }
            #expect(decision.recipient == raw)
            #expect(decision == set.decide(recipient: raw))
        }
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

    // Shadow rules decide as live ones do; their targets are marked, and a live target a shadow
    // user rule takes the place of is superseded (still sent).

    func targets(_ targets: PlannedTargets) -> [String] {
        targets.map { "\($0.address) \($0.standing)" }
    }

    @Test func aRecipientWithoutShadowRulesIsDecidedAsBefore() {
        let dave = set.decide(recipient: "<dave@shadowed.example>")
        #expect(targets(dave.copies) == ["dave@gapps.example.org live"])
        #expect(dave.rewrite?.standing == .live)
        #expect(dave.sentRewrite?.address.description == "dave@primary.example")
        #expect(!dave.involvesShadow)
    }

    @Test func aShadowUserCopySupersedesTheDomainCopy() throws {
        let allie = set.decide(recipient: "<allie@shadowed.example>")
        #expect(targets(allie.copies) == ["alice@new.example shadow", "allie@gapps.example.org superseded"])
        #expect(allie.rewrite?.address.description == "allie@primary.example", "no user rewrite: the domain's")
        #expect(allie.involvesShadow)
        guard case .user(let rule) = allie.selection else {
            Issue.record("allie is selected by her user rule: \(allie.selection)")
            return
        }
        #expect(rule.isShadow)
        #expect(rule.text == "shadow user allie copy alice@new.example")
    }

    @Test func aShadowUserRewriteSupersedesTheDomainRewrite() {
        let bob = set.decide(recipient: "<bob@shadowed.example>")
        #expect(bob.rewrite?.address.description == "bob@new.example")
        #expect(bob.rewrite?.isShadow == true)
        #expect(bob.supersededRewrite?.address.description == "bob@primary.example")
        #expect(bob.supersededRewrite?.standing == .superseded)
        #expect(bob.sentRewrite == bob.supersededRewrite)
        #expect(targets(bob.copies) == ["bob@gapps.example.org live"])
        let carol = set.decide(recipient: "<carol@shadowed.example>")
        #expect(targets(carol.copies) == ["carol@archive.example live"])
        #expect(carol.rewrite?.isShadow == true)
        #expect(carol.sentRewrite?.address.description == "carol@primary.example")
    }

    @Test func aShadowSectionMarksEveryTarget() {
        let erin = set.decide(recipient: "<erin@new.example>")
        #expect(targets(erin.copies) == ["erin@gw.example shadow"])
        #expect(erin.involvesShadow)
    }

    /// What keeps a shadow rule from a target is a shadow problem, apart from the live ones.
    @Test func aShadowRuleProblemIsKeptApart() {
        let dan = set.decide(recipient: "<dan@shadowed.example>")
        #expect(dan.problems.isEmpty)
        #expect(
            dan.shadowProblems == ["copy target dan@shadowed.example is the recipient itself (/etc/sm/main.rules:21)"])
        #expect(targets(dan.copies) == ["dan@gapps.example.org superseded"])
        #expect(dan.involvesShadow)
    }
}
