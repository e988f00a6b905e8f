/// RCPT verdicts of the guards: allowed clients, trusted clients, known users, spf: lists not yet resolved.

import Testing

@testable import SplitCore

@Suite struct GuardTests {
    let set: RuleSet
    let providers = ProviderNetworks(["provider.example": [IPNetwork("203.0.113.0/24")].compactMap { $0 }])

    init() throws {
        set = try rules(
            """
            trusted-networks 127.0.0.0/8, ::1
            domain cache.example
                allow-clients 192.0.2.0/24 spf:provider.example
                allow-any postmaster abuse
                known alice bob carol postmaster
                user carol allow-clients 198.51.100.9
                reject-text 5.7.1 mail for cache.example comes through the provider only
            domain open.example
                known alice
            domain pending.example
                allow-clients spf:unresolved.example
            """)
    }

    func verdict(_ rcpt: String, from ip: String?, auth: String? = nil) -> Verdict {
        let client = ClientContext(address: ip.flatMap(IPAddress.init), authenticatedAs: auth)
        return set.decide(recipient: rcpt, client: client, providers: providers).verdict
    }

    func code(_ verdict: Verdict) -> String {
        switch verdict {
        case .accept: "accept"
        case .reject(let reply, _, _), .tempfail(let reply, _, _): "\(reply.code) \(reply.enhanced)"
        }
    }

    @Test(
        arguments: [
            ("<alice@cache.example>", "192.0.2.10", nil, "accept"),
            ("<alice@cache.example>", "203.0.113.99", nil, "accept"),  // from the provider's SPF list
            ("<alice@cache.example>", "198.51.100.1", nil, "550 5.7.1"),
            ("<alice@cache.example>", "198.51.100.1", "alice", "accept"),  // SASL-authenticated
            ("<alice@cache.example>", "127.0.0.1", nil, "accept"),  // trusted network
            ("<postmaster@cache.example>", "198.51.100.1", nil, "accept"),  // allow-any
            ("<mallory@cache.example>", "198.51.100.1", nil, "550 5.7.1"),  // client check first: no user probing
            ("<mallory@cache.example>", "192.0.2.10", nil, "550 5.1.1"),
            ("<alice+tag@cache.example>", "192.0.2.10", nil, "accept"),  // extension stripped
            ("<\"x y\"@cache.example>", "192.0.2.10", nil, "550 5.1.1"),
            ("<carol@cache.example>", "198.51.100.9", nil, "accept"),  // per-user networks
            ("<carol@cache.example>", "192.0.2.10", nil, "550 5.7.1"),  // … replace the domain's
            ("<zed@open.example>", "198.51.100.1", nil, "550 5.1.1"),
            ("<alice@open.example>", "198.51.100.1", nil, "accept"),
            ("<anyone@elsewhere.example>", "198.51.100.1", nil, "accept"),
            ("<a@pending.example>", "198.51.100.1", nil, "451 4.7.1"),  // spf list not resolved yet
            ("<alice@cache.example>", nil, nil, "550 5.7.1"),
        ] as [(String, String?, String?, String)])
    func decidesAtRcpt(rcpt: String, ip: String?, auth: String?, expected: String) {
        #expect(code(verdict(rcpt, from: ip, auth: auth)) == expected)
    }

    @Test func usesTheConfiguredRejectText() {
        guard case .reject(let reply, let because, _) = verdict("<bob@cache.example>", from: "198.51.100.1") else {
            Issue.record("expected a reject")
            return
        }
        #expect(reply.text == "5.7.1 mail for cache.example comes through the provider only")
        #expect(because == "client 198.51.100.1 not in allow-clients (/etc/sm/main.rules:3)")
    }

    @Test func collectsSpfDomainsAndReportsGuards() throws {
        #expect(set.spfDomains == ["provider.example", "unresolved.example"])
        #expect(set.checksRecipients)
        let unguarded = try rules("domain a.example\n  copy %u@b.example\n")
        #expect(!unguarded.checksRecipients)
    }

    @Test func rejectsBadGuardSyntax() {
        let result = parse(
            "domain a.example\n  allow-clients 192.0.2.0/33 spf:bad_domain..x\n  known a a\n  allow-any\n")
        #expect(result.errors.map(\.location.column) == [17, 30, 11, 3])
    }

    @Test func refusedRecipientsGetNoCopies() throws {
        let copying = try rules("domain a.example\n  copy %u@b.example\n  known alice\n")
        let refused = copying.decide(recipient: "<zed@a.example>")
        #expect(refused.copies.isEmpty)
        #expect(copying.decide(recipient: "<alice@a.example>").copies.count == 1)
    }

    /// Spellings Postfix accepts in its default non-strict mode and delivers to the plain address
    /// (docs/recipient-forms.md): a guard must decide each exactly as it decides the plain address.
    @Test(
        arguments: [
            ("<zed@open.example >", "550 5.1.1"),  // a blank before '>'
            ("<zed@open.example\t>", "550 5.1.1"),  // a tab before '>'
            ("< zed@open.example>", "550 5.1.1"),
            (" <zed@OPEN.example.> ", "550 5.1.1"),
            ("<zed @open.example>", "550 5.1.1"),  // unparsable here: decided on its rough domain
            ("<zed@open.example (comment)>", "550 5.1.1"),
            ("<@relay.example:zed@open.example>", "550 5.1.1"),  // source route
            ("<zed%elsewhere.example@open.example>", "550 5.1.1"),
            ("<alice@open.example >", "accept"),
            ("<frank@cache.example >", "550 5.7.1"),
            ("<frank@cache.example\t>", "550 5.7.1"),
        ] as [(String, String)])
    func guardsCannotBeEscapedBySpelling(rcpt: String, expected: String) {
        #expect(code(verdict(rcpt, from: "198.51.100.1")) == expected)
    }

    /// An argument too odd to read is decided on the domain Postfix itself resolved (`{rcpt_addr}`):
    /// with `allow_percent_hack`, `zed%cache.example@this-host` is routed to zed@cache.example.
    @Test func anUnparsableRecipientIsDecidedOnPostfixsReading() {
        let client = ClientContext(address: IPAddress("198.51.100.1"), authenticatedAs: nil)
        let decision = set.decide(
            recipient: "<zed%cache.example@mx.elsewhere.example>", client: client, providers: providers,
            resolved: { "zed@cache.example" })
        #expect(code(decision.verdict) == "550 5.7.1")
        let unresolved = set.decide(
            recipient: "<zed%cache.example@mx.elsewhere.example>", client: client, providers: providers)
        #expect(code(unresolved.verdict) == "accept")
    }
}

/// A shadow guard that would refuse does not: the recipient is accepted, and the decision keeps
/// what it would have answered. The live guards decide as if the shadow rules were not there.
@Suite struct ShadowGuardTests {
    let set: RuleSet

    init() throws {
        set = try rules(
            """
            domain shadow.example
                shadow
                copy %u@gw.example
                known alice
            domain known.example
                copy %u@archive.example
                shadow known alice
            domain live.example
                allow-clients 192.0.2.0/24
                shadow known alice
            domain named.example
                known alice
                shadow user bob copy bob@new.example
                user carol rewrite alice@named.example
                shadow user dave rewrite alice@named.example
            domain clients.example
                allow-clients 192.0.2.0/24
                shadow user erin allow-clients 198.51.100.7
            """)
    }

    func decide(_ recipient: String, from ip: String = "192.0.2.1", port: UInt16? = 40000) -> RecipientDecision {
        set.decide(
            recipient: recipient,
            client: ClientContext(address: IPAddress(ip), port: port, hostName: "client.example", authenticatedAs: nil))
    }

    @Test func aShadowKnownGuardAcceptsAndRecordsItsRefusal() {
        for recipient in ["<mallory@shadow.example>", "<mallory@known.example>"] {
            let mallory = decide(recipient)
            #expect(mallory.verdict == .accept)
            guard case .reject(let reply, let because, .unknownUser) = mallory.shadowRefusal else {
                Issue.record("\(recipient): a shadow refusal by known: \(String(describing: mallory.shadowRefusal))")
                continue
            }
            #expect(reply.description == "550 5.1.1 \(recipient): Recipient address rejected: User unknown")
            #expect(because.hasPrefix("not a known user (/etc/sm/main.rules:"))
            #expect(mallory.involvesShadow)
        }
        #expect(decide("<mallory@known.example>").copies.map(\.standing) == [.live])
        let alice = decide("<alice@shadow.example>")
        #expect(alice.verdict == .accept)
        #expect(alice.shadowRefusal == nil)
    }

    @Test func aLiveRefusalLeavesTheShadowRulesNothingToDo() {
        let mallory = decide("<mallory@live.example>", from: "198.51.100.1")
        guard case .reject(_, _, .client) = mallory.verdict else {
            Issue.record("the live allow-clients refuses: \(mallory.verdict)")
            return
        }
        #expect(mallory.shadowRefusal == nil)
        #expect(decide("<mallory@live.example>").shadowRefusal != nil)
    }

    /// A shadow user rule does not name its user to a live `known`, nor does a shadow rewrite to a
    /// known user; with the shadow rules live, both would.
    @Test func aShadowUserRuleNamesItsUserOnlyToTheShadowWorld() {
        let bob = decide("<bob@named.example>")
        guard case .reject(_, _, .unknownUser) = bob.verdict else {
            Issue.record("bob is not known to the live guard: \(bob.verdict)")
            return
        }
        #expect(bob.copies.isEmpty)
        #expect(decide("<carol@named.example>").verdict == .accept)
        let dave = decide("<dave@named.example>")
        #expect(dave.verdict != .accept)
    }

    /// A shadow user list takes the place of the domain's only in the shadow world.
    @Test func aShadowUserAllowListIsAskedOnlyAsIfLive() {
        let erin = decide("<erin@clients.example>")
        #expect(erin.verdict == .accept)
        guard case .reject(let reply, _, .client) = erin.shadowRefusal else {
            Issue.record("erin's shadow list would refuse 192.0.2.1: \(String(describing: erin.shadowRefusal))")
            return
        }
        #expect(reply.code == "550")
        #expect(decide("<erin@clients.example>", from: "198.51.100.7").verdict != .accept)
    }

    /// A local submission is never refused, by a live guard or a shadow one.
    @Test func aLocalSubmissionHasNoShadowRefusal() {
        let mallory = set.decide(recipient: "<mallory@shadow.example>", client: .localSubmission)
        #expect(mallory.verdict == .accept)
        #expect(mallory.shadowRefusal == nil)
        #expect(!mallory.guardWaived)
    }
}
