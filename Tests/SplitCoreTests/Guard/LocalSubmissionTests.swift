/// Local submissions: with `non_smtpd_milters`, Postfix's cleanup(8) plays an SMTP session for mail
/// submitted with sendmail(1), from `localhost`, 127.0.0.1, port 0, and cannot take a refusal at
/// RCPT (the message would wait in the maildrop queue forever). The guards let such a recipient
/// through, saying why; the same recipients from 127.0.0.1 with a real port are refused as before.

import Testing

@testable import SplitCore

@Suite struct LocalSubmissionTests {
    let set: RuleSet
    let providers = ProviderNetworks.empty

    init() throws {
        set = try rules(
            """
            trusted-networks 192.168.0.0/16
            domain cache.example
                copy %u@archive.example.net
                allow-clients 192.0.2.0/24
                reject-text mail for cache.example comes through the provider only
            domain users.example
                copy %u@archive.example.net
                known alice bob
            domain pending.example
                allow-clients spf:unresolved.example
            """)
    }

    static let local = ClientContext.localSubmission
    /// An SMTP session from 127.0.0.1: the same address and name, a real TCP port.
    static let loopbackSMTP = ClientContext(
        address: IPAddress("127.0.0.1"), port: 48_123, hostName: "localhost", authenticatedAs: nil)

    func decide(_ recipient: String, _ client: ClientContext) -> RecipientDecision {
        set.decide(recipient: recipient, client: client, providers: providers)
    }

    @Test func recognisesOnlyPostfixsEmulatedSession() {
        #expect(Self.local.isLocalSubmission)
        #expect(Self.local.address == IPAddress("127.0.0.1"))
        #expect(Self.local.port == 0)
        #expect(
            ClientContext(address: IPAddress("::1"), port: 0, hostName: "localhost", authenticatedAs: nil)
                .isLocalSubmission)
        #expect(
            ClientContext(address: IPAddress("127.0.0.1"), port: 0, hostName: "LOCALHOST", authenticatedAs: nil)
                .isLocalSubmission)
        // A real TCP port, another address, another name (milter-test send's default "unknown"),
        // or no port at all: not a local submission.
        #expect(!Self.loopbackSMTP.isLocalSubmission)
        #expect(
            !ClientContext(address: IPAddress("192.0.2.7"), port: 0, hostName: "localhost", authenticatedAs: nil)
                .isLocalSubmission)
        #expect(
            !ClientContext(address: IPAddress("127.0.0.1"), port: 0, hostName: "unknown", authenticatedAs: nil)
                .isLocalSubmission)
        #expect(!ClientContext(address: IPAddress("127.0.0.1"), authenticatedAs: nil).isLocalSubmission)
        #expect(!ClientContext(address: nil, port: 0, hostName: "localhost", authenticatedAs: nil).isLocalSubmission)
        #expect(!ClientContext.unknown.isLocalSubmission)
    }

    @Test func anUnknownUserOfAKnownDomainIsAcceptedWithTheNote() {
        let decision = decide("mallory@users.example", Self.local)
        #expect(decision.verdict == .accept)
        #expect(decision.guardWaived)
        #expect(
            decision.guardNote
                == "guard not applied: local submission (sendmail), Postfix cannot refuse it here;"
                + " otherwise 550 5.1.1 (not a known user (/etc/sm/main.rules:8))")
        // Copies apply as usual.
        #expect(decision.copies.map(\.address.description) == ["mallory@archive.example.net"])
    }

    @Test func aClientOutsideAllowClientsIsAcceptedWithTheNote() {
        let decision = decide("<alice@cache.example>", Self.local)
        #expect(decision.verdict == .accept)
        #expect(decision.guardWaived)
        #expect(
            decision.guardNote
                == "guard not applied: local submission (sendmail), Postfix cannot refuse it here;"
                + " otherwise 550 5.7.1 (client 127.0.0.1 not in allow-clients (/etc/sm/main.rules:4))")
        #expect(decision.copies.map(\.address.description) == ["alice@archive.example.net"])
    }

    @Test func anUnresolvedSpfListDoesNotTempfailIt() {
        let decision = decide("<a@pending.example>", Self.local)
        #expect(decision.verdict == .accept)
        #expect(decision.guardWaived)
        #expect(decision.guardNote?.contains("otherwise 451 4.7.1 (client 127.0.0.1 not allowed") == true)
    }

    @Test func whatTheGuardsAcceptStaysAsItWas() {
        let known = decide("bob@users.example", Self.local)
        #expect(known.verdict == .accept)
        #expect(!known.guardWaived)
        #expect(known.guardNote == nil)
        let unguarded = decide("anyone@elsewhere.example", Self.local)
        #expect(unguarded.verdict == .accept)
        #expect(!unguarded.guardWaived)
    }

    @Test(arguments: [
        ("mallory@users.example", "550 5.1.1"),
        ("<alice@cache.example>", "550 5.7.1"),
        ("<a@pending.example>", "451 4.7.1"),
    ])
    func fromLoopbackWithARealPortTheyAreRefusedAsBefore(recipient: String, expected: String) {
        let decision = decide(recipient, Self.loopbackSMTP)
        #expect(!decision.guardWaived)
        #expect(decision.copies.isEmpty)
        switch decision.verdict {
        case .accept: Issue.record("\(recipient) from 127.0.0.1 port 48123 was accepted")
        case .reject(let reply, _, _), .tempfail(let reply, _, _):
            #expect("\(reply.code) \(reply.enhanced)" == expected)
        }
    }

    @Test func aClientWithoutPortOrNameIsRefusedAsBefore() {
        // What explain --client 127.0.0.1 and the tests before this change give: no port, no name.
        let decision = decide(
            "<alice@cache.example>", ClientContext(address: IPAddress("127.0.0.1"), authenticatedAs: nil))
        guard case .reject(let reply, _, _) = decision.verdict else {
            Issue.record("expected a reject, got \(decision.verdict)")
            return
        }
        #expect(reply.text == "mail for cache.example comes through the provider only")
    }
}
