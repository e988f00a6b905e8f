/// Where a milter listens or is reached, in the forms administrators already write: libmilter's
/// (`unix:/path`, `local:/path`, `inet:port@host`, `inet6:port@host`) and Postfix's
/// (`unix:/path`, `inet:host:port`).

public enum SocketSpec: Sendable, Hashable, CustomStringConvertible {
    case unix(path: String)
    case inet(host: String, port: UInt16)
    case inet6(host: String, port: UInt16)

    public var description: String {
        switch self {
        case .unix(let path): "unix:\(path)"
        case .inet(let host, let port): "inet:\(port)@\(host)"
        case .inet6(let host, let port): "inet6:\(port)@[\(host)]"
        }
    }

    public struct ParseError: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    public static func parse(_ text: String) throws -> SocketSpec {
        func fail(_ why: String) -> ParseError { ParseError(description: "bad socket '\(text)': \(why)") }
        if text.hasPrefix("/") { return .unix(path: text) }
        guard let colon = text.firstIndex(of: ":") else {
            throw fail("expected unix:/path, inet:PORT@HOST or inet:HOST:PORT")
        }
        let kind = text[..<colon].lowercased()
        let rest = String(text[text.index(after: colon)...])
        switch kind {
        case "unix", "local":
            guard rest.hasPrefix("/"), rest.utf8.count < 108 else {
                throw fail("a unix socket needs an absolute path shorter than 108 bytes")
            }
            return .unix(path: rest)
        case "inet", "inet6":
            let (host, portText): (String, Substring)
            if let at = rest.firstIndex(of: "@") {
                portText = rest[..<at]
                host = String(rest[rest.index(after: at)...])
            } else if let last = rest.lastIndex(of: ":") {
                host = String(rest[..<last])
                portText = rest[rest.index(after: last)...]
            } else if kind == "inet" {
                throw fail("expected inet:PORT@HOST or inet:HOST:PORT")
            } else {
                throw fail("expected inet6:PORT@HOST")
            }
            guard let port = UInt16(portText), port > 0 else { throw fail("'\(portText)' is not a port number") }
            var bareHost = host
            if bareHost.hasPrefix("["), bareHost.hasSuffix("]") { bareHost = String(bareHost.dropFirst().dropLast()) }
            if bareHost.isEmpty { bareHost = kind == "inet" ? "0.0.0.0" : "::" }
            return kind == "inet" ? .inet(host: bareHost, port: port) : .inet6(host: bareHost, port: port)
        default:
            throw fail("unknown socket type '\(kind)'")
        }
    }
}
