/// `--metrics ADDRESS`: a bare port binds loopback only, IPv6 only in brackets, no host names.

import Testing

@testable import SplitMetrics

@Suite struct MetricsAddressTests {
    @Test func aBarePortIsLoopbackOnly() throws {
        let address = try MetricsAddress(parsing: "9100")
        #expect(address.host == "127.0.0.1" && address.family == .ipv4 && address.port == 9100)
        #expect(address.description == "127.0.0.1:9100")
    }

    @Test func hostAndPort() throws {
        let v4 = try MetricsAddress(parsing: "0.0.0.0:9100")
        #expect(v4.host == "0.0.0.0" && v4.family == .ipv4 && v4.port == 9100)
        let v6 = try MetricsAddress(parsing: "[::1]:80")
        #expect(v6.host == "::1" && v6.family == .ipv6 && v6.port == 80)
        #expect(v6.description == "[::1]:80")
        #expect(try MetricsAddress(parsing: "[2001:db8::5]:65535").port == 65_535)
    }

    @Test(arguments: [
        ("", "bad port \"\" (1 to 65535)"),
        ("0", "bad port \"0\" (1 to 65535)"),
        ("65536", "bad port \"65536\" (1 to 65535)"),
        ("+80", "bad port \"+80\" (1 to 65535)"),
        ("127.0.0.1:", "bad port \"\" (1 to 65535)"),
        ("localhost:9100", "\"localhost\" is not an IPv4 address"),
        ("127.0.0.256:9100", "\"127.0.0.256\" is not an IPv4 address"),
        ("::1:9100", "write an IPv6 address in brackets: [::1]:PORT"),
        ("[::1]9100", "expected :PORT after ]"),
        ("[::1:9100", "missing ]"),
        ("[127.0.0.1]:9100", "\"127.0.0.1\" is not an IPv6 address"),
    ])
    func refuses(_ text: String, _ reason: String) {
        #expect(throws: MetricsAddressError(text: text, reason: reason)) { try MetricsAddress(parsing: text) }
    }
}
