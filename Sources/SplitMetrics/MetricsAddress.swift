/// Where the metrics listener binds, from `--metrics`: `PORT` (127.0.0.1 only), `HOST:PORT` with an
/// IPv4 address, or `[IPv6]:PORT`. Parsing only, no lookups: the host is an address (checked with
/// inet_pton), never a name that DNS could point elsewhere at the next start. `0.0.0.0` and `[::]`
/// are every interface (`[::]` takes IPv4 too unless the system says otherwise, bindv6only).

import Glibc

public struct MetricsAddress: Sendable, Hashable, CustomStringConvertible {
    public enum Family: Sendable, Hashable {
        case ipv4, ipv6
    }

    /// The address as given, IPv6 without its brackets.
    public let host: String
    public let family: Family
    public let port: UInt16

    public init(parsing text: String) throws(MetricsAddressError) {
        let invalid = { (reason: String) in MetricsAddressError(text: text, reason: reason) }
        let hostText: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw invalid("missing ]") }
            hostText = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { throw invalid("expected :PORT after ]") }
            portText = rest.dropFirst()
            family = .ipv6
        } else if let colon = text.lastIndex(of: ":") {
            hostText = text[..<colon]
            portText = text[text.index(after: colon)...]
            guard !hostText.contains(":") else { throw invalid("write an IPv6 address in brackets: [::1]:PORT") }
            family = .ipv4
        } else {
            hostText = "127.0.0.1"
            portText = Substring(text)
            family = .ipv4
        }
        guard portText.allSatisfy({ $0.isASCII && $0.isNumber }), let port = UInt16(portText), port > 0 else {
            throw invalid("bad port \"\(portText)\" (1 to 65535)")
        }
        guard Self.isAddress(String(hostText), family) else {
            throw invalid(
                family == .ipv4 ? "\"\(hostText)\" is not an IPv4 address" : "\"\(hostText)\" is not an IPv6 address")
        }
        self.host = String(hostText)
        self.port = port
    }

    public var description: String { family == .ipv6 ? "[\(host)]:\(port)" : "\(host):\(port)" }

    static func isAddress(_ text: String, _ family: Family) -> Bool {
        var buffer = in6_addr()
        return inet_pton(family == .ipv6 ? AF_INET6 : AF_INET, text, &buffer) == 1
    }
}

public struct MetricsAddressError: Error, Hashable, Sendable, CustomStringConvertible {
    public let text: String
    public let reason: String

    public var description: String { "invalid --metrics address \"\(text)\": \(reason)" }
}
