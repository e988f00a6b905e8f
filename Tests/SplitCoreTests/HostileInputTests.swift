/// Random and adversarial input never traps the core: rule text, recipients, ESMTP parameters.
/// A trap in the daemon would kill every milter connection at once, so these run thousands of inputs.

import Testing

@testable import SplitCore

/// A small deterministic generator (xorshift), so a failure reproduces.
struct Noise {
    var state: UInt64

    mutating func next() -> UInt64 {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return state
    }

    mutating func bytes(_ count: Int, from alphabet: [UInt8]) -> [UInt8] {
        (0..<count).map { _ in alphabet[Int(next() % UInt64(alphabet.count))] }
    }
}

@Suite struct HostileInputTests {
    static let ruleAlphabet =
        Array(
            "domain copy rewrite only except user known allow-clients include file:spf: %u%b%e%d@.*#,\n\t /0123456789abcdef:[]\"\\"
                .utf8)
        + [0, 0xFF, 0xC3, 0x0D]
    static let addressAlphabet = Array("<>@.\"\\ :%!+=-_/|'aZ09[]()".utf8) + [0, 1, 0x7F, 0xC3, 0xA9, 0xFF]

    @Test func ruleTextNeverTraps() {
        var noise = Noise(state: 0x5EED)
        for round in 0..<2000 {
            let text = noise.bytes(Int(noise.next() % 300), from: Self.ruleAlphabet)
            let files = ["/r/main.rules": String(decoding: text, as: UTF8.self), "/r/users.txt": "a\nb\n"]
            let result = RuleParser.parse(file: "/r/main.rules", source: MemoryRuleSource(files: files))
            // Either a rule set or at least one error, never both missing.
            #expect(result.ruleSet != nil || !result.errors.isEmpty, "round \(round)")
        }
    }

    @Test func recipientsAndParametersNeverTrap() throws {
        let set = try rules(
            """
            domain example.org
                copy %u@gapps.example.org %b.%e@x.example
                user carol rewrite %u@y.example
                known alice carol
            """)
        var noise = Noise(state: 0xC0FFEE)
        for _ in 0..<5000 {
            let raw = String(decoding: noise.bytes(Int(noise.next() % 80), from: Self.addressAlphabet), as: UTF8.self)
            let recipient = noise.next() % 2 == 0 ? raw : "<\(raw)@example.org>"
            let parameter = String(
                decoding: noise.bytes(
                    Int(noise.next() % 40), from: Array("NOTIFY=ORCPT;rfc822+2B,SUCCESS".utf8) + [0x20, 0xFF]),
                as: UTF8.self)
            let decision = set.decide(
                recipient: recipient, parameters: [parameter],
                client: ClientContext(address: IPAddress("192.0.2.1"), authenticatedAs: nil))
            var plan = MessagePlan()
            _ = plan.record(decision)
            for edit in plan.edits(marker: CopyMarker(instance: "t")).edits {
                if case .addRecipient(let address, _) = edit {
                    // Whatever came in, an added address is a plain dot-atom at a literal domain.
                    #expect(address.allSatisfy { $0.isASCII && !" \"<>%!/|'\\".contains($0) }, "\(address)")
                }
            }
        }
    }

    @Test func networkTextNeverTraps() {
        var noise = Noise(state: 42)
        for _ in 0..<5000 {
            let text = String(
                decoding: noise.bytes(Int(noise.next() % 50), from: Array("0123456789abcdef:./%[]".utf8)), as: UTF8.self
            )
            _ = IPNetwork(text)
            _ = try? SPFRecord.parse("v=spf1 " + text)
        }
    }

    /// example.org guarded by `known`, example.net by `allow-clients`, and a client outside it.
    static func guardedDomains() throws -> (RuleSet, ClientContext) {
        let set = try rules(
            """
            domain example.org
                known alice
            domain example.net
                allow-clients 192.0.2.0/24
            """)
        return (set, ClientContext(address: IPAddress("198.51.100.7"), port: 4000, authenticatedAs: nil))
    }

    /// Found by `scripts/fuzz recipient` (Fuzz/regressions/recipient/): a `(` that is not a comment
    /// (inside a quoted local part, or inside a source route, which Postfix cuts before it reads
    /// comments) makes the rough domain swallow the rest, and a backslash (a quoted pair, which
    /// Postfix undoes) hid the domain: the recipient escaped its guard. So did any recipient longer
    /// than 512 bytes. Postfix accepts these spellings and delivers to an address of the domain, so
    /// the guard must decide them.
    @Test func spellingsPostfixReadsAsTheDomainDoNotEscapeTheGuard() throws {
        let (set, outside) = try Self.guardedDomains()
        // Quoted: with Postfix's {rcpt_addr} (its internal, unquoted form) and without it.
        let cases: [(recipient: String, rcptAddr: String?)] = [
            ("<\"(x\"@example.org>", "(x@example.org"),
            ("<\"(x\"@example.org>", nil),
            ("<\"(x\"@example.net>", nil),
            // A source route: decided on {rcpt_addr} when Postfix sends it, escapes without.
            ("<@a(b:zed@example.org>", nil),
            ("<@a(b:zed@example.net>", nil),
            // A quoted pair in the domain: Postfix reads example.org; decided on {rcpt_addr} when sent.
            ("<zed@exa\\mple.org>", nil),
            // An unclosed quote: Postfix answers 501 itself (its tokenizer finds no closing '>').
            ("<zed@exa\"mple.org>", nil),
        ]
        // Longer than 512 bytes: Postfix accepts it; splitmilter decides nothing, {rcpt_addr} or not.
        let long = String(repeating: "a", count: 600) + "@example.org"
        for (recipient, rcptAddr) in cases + [("<\(long)>", long), ("<\(long)>", nil)] {
            let decision = set.decide(recipient: recipient, client: outside, resolved: { rcptAddr })
            #expect(decision.verdict != .accept, "\(recipient), {rcpt_addr} \(rcptAddr ?? "not sent")")
        }
    }

    /// Found by `scripts/fuzz spf` (Fuzz/regressions/spf/): an `ip6:` term written as an IPv4-mapped
    /// address (valid RFC 4291 text) failed the whole record, so an `spf:` source that publishes one
    /// never resolved and its guard answered 451 to every other client.
    @Test func anIPv4MappedIP6TermIsKept() throws {
        let record = try SPFRecord.parse("v=spf1 ip6:::ffff:192.0.2.0/120 ip6:::ffff:198.51.100.7 -all")
        #expect(record.terms == [.ip(IPNetwork("192.0.2.0/24")!), .ip(IPNetwork("198.51.100.7/32")!)])
        // The family still follows the mechanism: dotted text is no ip6 term, colons no ip4 term.
        #expect(throws: SPFError.self) { try SPFRecord.parse("v=spf1 ip6:192.0.2.1 -all") }
        #expect(throws: SPFError.self) { try SPFRecord.parse("v=spf1 ip4:::ffff:192.0.2.1 -all") }
    }

    /// Found by `scripts/fuzz recipient` (Fuzz/regressions/recipient/guard-bypass-cr-without-rcpt-addr):
    /// a bare CR inside the brackets reaches the milter (smtpd's tokenizer keeps it inside `<…>`),
    /// and Postfix's RFC 822 tokenizer drops it as it drops blanks and tabs: Postfix delivers to
    /// zed@example.org. Without {rcpt_addr} splitmilter found no section; RuleSet.decide now drops CR
    /// (and the other control characters) as it drops a blank.
    @Test func aBareCarriageReturnDoesNotEscapeTheGuard() throws {
        let (set, outside) = try Self.guardedDomains()
        for recipient in ["<zed@example.org\r>", "<zed@example.\rorg>", "<zed@example.net\r>"] {
            let decision = set.decide(recipient: recipient, client: outside, resolved: { nil })
            #expect(decision.verdict != .accept, "\(recipient.debugDescription)")
        }
    }
}
