/// CIDR matching for IPv4, IPv6 and IPv4-mapped addresses, edge prefixes and malformed input.

import Testing

@testable import SplitCore

@Suite struct IPNetworkTests {
    @Test(arguments: [
        ("192.0.2.0/24", "192.0.2.255", true),
        ("192.0.2.0/24", "192.0.3.0", false),
        ("192.0.2.77", "192.0.2.77", true),
        ("192.0.2.77/32", "192.0.2.78", false),
        ("0.0.0.0/0", "203.0.113.9", true),
        ("10.1.2.3/8", "10.200.0.1", true),
        ("2001:db8::/32", "2001:db8:ffff::1", true),
        ("2001:db8::/32", "2001:db9::1", false),
        ("2001:db8::/127", "2001:db8::1", true),
        ("2001:db8::/128", "2001:db8::1", false),
        ("::/0", "fe80::1", true),
        ("2001:db8:0:1::/64", "2001:db8:0:1:ffff:ffff:ffff:ffff", true),
        ("2001:db8:0:1::/65", "2001:db8:0:1:8000::", false),
        ("192.0.2.0/24", "::ffff:192.0.2.10", true),
        ("192.0.2.0/24", "2001:db8::1", false),
        ("2001:db8::/32", "192.0.2.1", false),
        ("::ffff:192.0.2.0/120", "192.0.2.5", true),
    ])
    func matchesPrefixes(network: String, address: String, expected: Bool) throws {
        let parsed = try #require(IPNetwork(network))
        let candidate = try #require(IPAddress(address))
        #expect(parsed.contains(candidate) == expected)
    }

    @Test(arguments: [
        "256.0.0.1", "1.2.3", "1.2.3.4.5", "01.2.3.4", "1.2.3.4/33", "1.2.3.4/", "::1/129", "1:2:3:4:5:6:7:8:9",
        "1::2::3", "12345::", ":::", "g::1", "1.2.3.4/-1", "", "::ffff:1.2.3", "1:2:3:4:5:6:7::8:9",
    ])
    func refusesMalformed(text: String) {
        #expect(IPNetwork(text) == nil)
    }

    @Test func printsCanonicalForms() throws {
        #expect(try #require(IPNetwork("2001:0db8:0:0:0:0:0:1/64")).description == "2001:db8::/64")
        #expect(try #require(IPAddress("2001:db8:0:0:1:0:0:1")).description == "2001:db8::1:0:0:1")
        #expect(try #require(IPNetwork("192.0.2.77/24")).description == "192.0.2.0/24")
        #expect(try #require(IPAddress("::ffff:192.0.2.1")).unmapped == IPAddress("192.0.2.1"))
    }
}
