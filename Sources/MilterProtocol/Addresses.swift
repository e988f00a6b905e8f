/// The spellings a milter tester reads from its command line: where the milter listens
/// (Postfix's `unix:/path`, `inet:host:port`, and libmilter's `inet:port@host`), where the
/// pretend SMTP client came from (`IP[:PORT]`), and macro values (`NAME=VALUE`).
/// Parsing only; no lookups.

/// Where a milter listens.
public enum MilterEndpoint: Hashable, Sendable, CustomStringConvertible {
    case unix(path: String)
    /// A host name or an IP address (IPv6 without brackets), and a port.
    case inet(host: String, port: UInt16)

    /// Accepts, as Postfix and libmilter spell them:
    /// `unix:/path`, `local:/path`, `/path`; `inet:host:port`, `inet:[::1]:port`;
    /// `inet:port@host`, `inet6:port@host`, `inet:port@[::1]`; `inet:port` (host 127.0.0.1).
    public init(parsing text: String) throws {
        let invalid = { (reason: String) in InvalidArgument(kind: "address", text: text, reason: reason) }
        if text.hasPrefix("/") {
            self = .unix(path: text)
            return
        }
        guard let colon = text.firstIndex(of: ":") else {
            throw invalid("expected unix:/path, inet:host:port or inet:port@host")
        }
        let transport = text[..<colon]
        let rest = String(text[text.index(after: colon)...])
        switch transport {
        case "unix", "local":
            guard !rest.isEmpty else { throw invalid("the socket path is empty") }
            self = .unix(path: rest)
        case "inet", "inet6":
            let host: String
            let port: String
            if let at = rest.lastIndex(of: "@") {
                port = String(rest[..<at])
                host = String(rest[rest.index(after: at)...])
            } else if let split = rest.lastIndex(of: ":") {
                host = String(rest[..<split])
                port = String(rest[rest.index(after: split)...])
            } else {
                host = ""
                port = rest
            }
            let bare =
                host.hasPrefix("[") && host.hasSuffix("]") && host.count >= 2
                ? String(host.dropFirst().dropLast()) : host
            guard let number = UInt16(port), number > 0 else { throw invalid("bad port \"\(port)\"") }
            self = .inet(host: bare.isEmpty ? (transport == "inet6" ? "::1" : "127.0.0.1") : bare, port: number)
        default:
            throw invalid("unknown transport \"\(transport)\"; use unix: or inet:")
        }
    }

    public var description: String {
        switch self {
        case .unix(let path): "unix:\(path)"
        case .inet(let host, let port): host.contains(":") ? "inet:[\(host)]:\(port)" : "inet:\(host):\(port)"
        }
    }
}

extension ClientAddress {
    /// Parses `192.0.2.1`, `192.0.2.1:4321`, `2001:db8::1`, `[2001:db8::1]:4321`.
    /// The family follows from the address; a missing port is 0.
    public init(parsing text: String) throws {
        let invalid = { (reason: String) in InvalidArgument(kind: "address", text: text, reason: reason) }
        var address = Substring(text)
        var port: UInt16 = 0
        if address.hasPrefix("[") {
            guard let close = address.firstIndex(of: "]") else { throw invalid("missing ]") }
            let after = address[address.index(after: close)...]
            address = address[address.index(after: address.startIndex)..<close]
            if !after.isEmpty {
                guard after.hasPrefix(":"), let number = UInt16(after.dropFirst()) else {
                    throw invalid("bad port \"\(after.dropFirst())\"")
                }
                port = number
            }
        } else if address.filter({ $0 == ":" }).count == 1, let colon = address.firstIndex(of: ":") {
            let portText = address[address.index(after: colon)...]
            guard let number = UInt16(portText) else { throw invalid("bad port \"\(portText)\"") }
            port = number
            address = address[..<colon]
        }
        if ClientAddress.isIPv4(address) {
            self = .inet(String(address), port: port)
        } else if ClientAddress.isIPv6(address) {
            self = .inet6(String(address), port: port)
        } else {
            throw invalid("not an IPv4 or IPv6 address")
        }
    }

    static func isIPv4(_ text: Substring) -> Bool {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4
            && parts.allSatisfy { part in
                !part.isEmpty && part.count <= 3 && part.allSatisfy({ ("0"..."9").contains($0) }) && UInt8(part) != nil
            }
    }

    /// A loose check: hex groups and colons, at least two colons, at most one `::`, and
    /// optionally a dotted IPv4 tail. Enough to choose the family; the milter sees the text.
    static func isIPv6(_ text: Substring) -> Bool {
        let colons = text.filter { $0 == ":" }.count
        guard colons >= 2, colons <= 7, text.components(separatedBy: "::").count <= 2 else { return false }
        let groups = text.split(separator: ":", omittingEmptySubsequences: true)
        for (position, group) in groups.enumerated() {
            if group.contains("."), position == groups.count - 1 {
                if !isIPv4(group) { return false }
            } else if group.count > 4 || !group.allSatisfy(\.isHexDigit) {
                return false
            }
        }
        return true
    }
}

/// A command-line spelling that could not be parsed: a milter endpoint, a client address,
/// a macro assignment.
public struct InvalidArgument: Error, Hashable, Sendable, CustomStringConvertible {
    /// What was expected: "address", "macro".
    public let kind: String
    public let text: String
    public let reason: String

    public var description: String { "invalid \(kind) \"\(text)\": \(reason)" }
}

extension Macro {
    /// Parses `NAME=VALUE`; the value may be empty or contain `=`. The name is spelled as
    /// Postfix does (`MacroName.normalized`).
    public init(assignment text: String) throws {
        guard let equals = text.firstIndex(of: "="), equals > text.startIndex else {
            throw InvalidArgument(kind: "macro", text: text, reason: "expected NAME=VALUE")
        }
        self.init(MacroName.normalized(String(text[..<equals])), String(text[text.index(after: equals)...]))
    }
}

extension Substring {
    /// `components(separatedBy:)` without Foundation: pieces between occurrences of `separator`.
    fileprivate func components(separatedBy separator: String) -> [Substring] {
        var pieces: [Substring] = []
        var rest = self[...]
        while let range = rest.firstRange(of: separator) {
            pieces.append(rest[..<range.lowerBound])
            rest = rest[range.upperBound...]
        }
        pieces.append(rest)
        return pieces
    }
}
