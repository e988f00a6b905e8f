/// SPF walks against a table of DNS answers: include chains, redirect, loops, the lookup limit, bad records.

import Testing

@testable import SplitCore

/// DNS answers from a table; a name mapped to nil fails like a SERVFAIL.
struct TableDNS: DNSLookup {
    var txt: [String: [String]?] = [:]
    var hosts: [String: [String]] = [:]
    var mx: [String: [String]] = [:]

    struct Failure: Error, CustomStringConvertible {
        let description = "SERVFAIL"
    }

    func txt(_ name: String) throws -> [String] {
        guard let entry = txt[name] else { return [] }
        guard let records = entry else { throw Failure() }
        return records
    }

    func addresses(_ name: String) throws -> [IPAddress] { (hosts[name] ?? []).compactMap(IPAddress.init) }
    func mx(_ name: String) throws -> [String] { mx[name] ?? [] }
}

@Suite struct SPFTests {
    func collect(_ dns: TableDNS, _ domain: String = "provider.example") throws(SPFError) -> [String] {
        try SPFCollector(dns: dns).networks(for: domain).map(\.description)
    }

    @Test func followsIncludeChainsAndCollectsEveryFamily() throws {
        let dns = TableDNS(
            txt: [
                "provider.example": ["some other txt", "v=spf1 ip4:192.0.2.0/24 include:_spf.provider.example -all"],
                "_spf.provider.example": [
                    "v=spf1 ip6:2001:db8::/32 ip4:198.51.100.7 a:out.provider.example/28 mx ~all"
                ],
            ],
            hosts: [
                "out.provider.example": ["203.0.113.20"], "mx1.provider.example": ["203.0.113.30", "2001:db8:1::30"],
            ],
            mx: ["_spf.provider.example": ["mx1.provider.example"]]
        )
        #expect(
            try collect(dns) == [
                "192.0.2.0/24", "2001:db8::/32", "198.51.100.7/32", "203.0.113.16/28", "203.0.113.30/32",
                "2001:db8:1::30/128",
            ])
    }

    @Test func ignoresNonPassTermsAndFollowsRedirect() throws {
        let dns = TableDNS(txt: [
            "provider.example": ["v=spf1 -ip4:192.0.2.1 ?ip4:192.0.2.2 ~include:x.example redirect=r.example"],
            "r.example": ["v=spf1 ip4:198.51.100.0/25 -all"],
        ])
        #expect(try collect(dns) == ["198.51.100.0/25"])
    }

    @Test func reportsLoops() {
        let dns = TableDNS(txt: [
            "provider.example": ["v=spf1 include:a.example -all"],
            "a.example": ["v=spf1 include:provider.example -all"],
        ])
        #expect(throws: SPFError("include loop: provider.example -> a.example -> provider.example")) {
            try collect(dns)
        }
    }

    @Test func enforcesTheLookupLimit() {
        var txt: [String: [String]?] = [:]
        for index in 0..<12 { txt["d\(index).example"] = ["v=spf1 include:d\(index + 1).example"] }
        txt["d12.example"] = ["v=spf1 ip4:192.0.2.1"]
        #expect(throws: SPFError("more than 10 DNS-querying terms (at d11.example)")) {
            try collect(TableDNS(txt: txt), "d0.example")
        }
    }

    @Test(arguments: [
        ("v=spf1 ip4:300.1.1.1", "provider.example: bad ip4 term 'ip4:300.1.1.1'"),
        ("v=spf1 ip4:2001:db8::/32", "provider.example: bad ip4 term 'ip4:2001:db8::/32'"),
        ("v=spf1 include:", "provider.example: bad include term 'include:'"),
        ("v=spf1 frobnicate", "provider.example: unknown mechanism 'frobnicate'"),
        ("v=spf1 a/33", "provider.example: bad prefix in 'a/33'"),
    ])
    func reportsMalformedRecords(record: String, message: String) {
        #expect(throws: SPFError(message)) { try collect(TableDNS(txt: ["provider.example": [record]])) }
    }

    @Test func failsWhenDNSFailsOrTheRecordIsMissingOrDoubled() {
        #expect(throws: SPFError("DNS lookup for TXT provider.example failed: SERVFAIL")) {
            try collect(TableDNS(txt: ["provider.example": nil]))
        }
        #expect(throws: SPFError("provider.example has no SPF record")) { try collect(TableDNS()) }
        #expect(throws: SPFError("provider.example has 2 SPF records")) {
            try collect(TableDNS(txt: ["provider.example": ["v=spf1 -all", "v=spf1 ip4:192.0.2.1"]]))
        }
    }
}
