/// What the metrics listener reads of an HTTP/1.x request: where its head ends, and its request
/// line. Pure: no I/O, no Foundation, nothing but the standard library (the fuzz target `http`
/// compiles this file alone).
///
/// Invariants:
/// - The head ends at the first blank line: a line feed, an optional carriage return, a line feed
///   (`\r\n\r\n`, and the bare `\n\n` RFC 9112 lets a server accept). Headers are never parsed.
/// - The request line is the head's first line, one trailing `\r` dropped, and must be exactly
///   `METHOD SP TARGET SP HTTP/1.D`: single spaces, a token method, a target of visible ASCII, an
///   HTTP/1 version. GET and HEAD of an origin-form target (`/…`) are served, any other well-formed
///   method is `.badMethod` (405), anything else `.malformed` (400).
/// - The path is the target up to its first `?`, as sent (no percent-decoding), so it only ever
///   matches one of the listener's fixed paths byte for byte.

public enum HTTPRequestHead: Hashable, Sendable {
    public enum Method: String, Hashable, Sendable {
        case get = "GET"
        case head = "HEAD"
    }

    /// GET or HEAD of `path` (the target before any `?`; starts with `/`).
    case path(String, Method)
    /// A well-formed request line whose method is neither GET nor HEAD (POST, PUT, `get`…).
    case badMethod
    /// Not `METHOD SP /TARGET SP HTTP/1.D`.
    case malformed

    static let lineFeed = UInt8(ascii: "\n")
    static let carriageReturn = UInt8(ascii: "\r")
    static let space = UInt8(ascii: " ")

    /// The offset just past the first blank line of `bytes`, or nil while there is none. A caller
    /// that reads the head piece by piece passes, as `start`, the count before the last piece
    /// minus 2 (the end's first line feed may already be in): each byte is looked at about once.
    public static func end(of bytes: [UInt8], from start: Int = 0) -> Int? {
        var index = max(start, 0)
        while index < bytes.count {
            if bytes[index] == lineFeed {
                if index + 1 < bytes.count, bytes[index + 1] == lineFeed { return index + 2 }
                if index + 2 < bytes.count, bytes[index + 1] == carriageReturn, bytes[index + 2] == lineFeed {
                    return index + 3
                }
            }
            index += 1
        }
        return nil
    }

    /// The request line of `head` (what `end(of:)` delimited; a head without a line feed is taken
    /// whole), parsed.
    public static func parse(_ head: some RandomAccessCollection<UInt8>) -> HTTPRequestHead {
        var line = head.prefix { $0 != lineFeed }
        if line.last == carriageReturn { line = line.dropLast() }
        let parts = line.split(separator: space, maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3 else { return .malformed }
        let (method, target, version) = (parts[0], parts[1], parts[2])
        guard !method.isEmpty, method.allSatisfy(isTokenByte), !target.isEmpty, target.allSatisfy(isVisible),
            isHTTP1(version)
        else { return .malformed }
        guard let served = Method(rawValue: String(decoding: method, as: UTF8.self)) else { return .badMethod }
        guard target.first == UInt8(ascii: "/") else { return .malformed }
        let path = target.prefix { $0 != UInt8(ascii: "?") }
        return .path(String(decoding: path, as: UTF8.self), served)
    }

    /// RFC 9110's tchar: letters, digits and ``!#$%&'*+-.^_`|~``.
    static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "a")...UInt8(ascii: "z"):
            true
        default:
            "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }

    /// Printable ASCII without the space: what a request target is made of.
    static func isVisible(_ byte: UInt8) -> Bool { (0x21...0x7E).contains(byte) }

    /// `HTTP/1.` and one digit.
    static func isHTTP1(_ version: some BidirectionalCollection<UInt8>) -> Bool {
        let prefix = "HTTP/1.".utf8
        guard version.count == prefix.count + 1, version.starts(with: prefix), let minor = version.last else {
            return false
        }
        return (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(minor)
    }
}
