/// DNS lookups for SPF walks, answered by the system's resolver (glibc libresolv via CResolvShim).
///
/// No DNS client of our own: libresolv sends the queries, retries and falls back to TCP; this file
/// only reads TXT, A, AAAA and MX record data out of the answers, with every length checked.

internal import CResolvShim
import SplitCore

public struct ResolverDNS: DNSLookup, Sendable {
    /// nil: the servers in /etc/resolv.conf.
    public let server: String?
    public let port: Int

    public init(server: String? = nil, port: Int = 53) {
        self.server = server
        self.port = port
    }

    /// Parses `IP[:PORT]` (IPv4 only).
    public init?(serverSpec: String) {
        let parts = serverSpec.split(separator: ":", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), IPAddress(String(parts[0]))?.isIPv4 == true else { return nil }
        let port = parts.count == 2 ? Int(parts[1]) : 53
        guard let port, (1...65535).contains(port) else { return nil }
        self.init(server: String(parts[0]), port: port)
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    enum RecordType: Int32 {
        case a = 1
        case mx = 15
        case txt = 16
        case aaaa = 28
    }

    /// The data of each answer record of `type` for `name`; [] when the name has none.
    func records(_ name: String, _ type: RecordType) throws -> [[UInt8]] {
        var answer = [UInt8](repeating: 0, count: 65_535)
        var length: Int32 = 0
        let status = answer.withUnsafeMutableBufferPointer { buffer in
            cresolv_query(server, Int32(port), name, type.rawValue, buffer.baseAddress, Int32(buffer.count), &length)
        }
        if status == Int32(CRESOLV_NO_DATA) { return [] }
        guard status == Int32(CRESOLV_ANSWER) else {
            throw Failure(description: "no answer for \(name) (server failure or timeout)")
        }
        return try answer.withUnsafeBufferPointer { buffer -> [[UInt8]] in
            guard let base = buffer.baseAddress, length > 0, Int(length) <= buffer.count else { return [] }
            let count = cresolv_answer_count(base, length)
            guard count >= 0 else { throw Failure(description: "malformed answer for \(name)") }
            var result: [[UInt8]] = []
            for index in 0..<count {
                var recordType: Int32 = 0
                var data: UnsafePointer<UInt8>? = nil
                var dataLength: Int32 = 0
                guard cresolv_answer_record(base, length, index, &recordType, &data, &dataLength) == 0 else {
                    throw Failure(description: "malformed record in answer for \(name)")
                }
                guard recordType == type.rawValue, let data, dataLength >= 0 else { continue }
                if type == .mx {
                    // MX data holds a compressed name: expand it against the whole message here.
                    guard dataLength > 2 else { continue }
                    var expanded = [CChar](repeating: 0, count: 1025)
                    guard cresolv_expand_name(base, length, data + 2, &expanded, Int32(expanded.count)) == 0 else {
                        throw Failure(description: "malformed MX name for \(name)")
                    }
                    // The name's bytes up to its NUL (dn_expand always writes one).
                    result.append(expanded.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) })
                } else {
                    result.append(Array(UnsafeBufferPointer(start: data, count: Int(dataLength))))
                }
            }
            return result
        }
    }

    public func txt(_ name: String) throws -> [String] {
        try records(name, .txt).map { data in
            // One or more <length><bytes> character-strings, joined (RFC 7208 §3.3).
            var text: [UInt8] = []
            var index = 0
            while index < data.count {
                let count = Int(data[index])
                let end = index + 1 + count
                guard end <= data.count else { break }
                text += data[(index + 1)..<end]
                index = end
            }
            return String(decoding: text, as: UTF8.self)
        }
    }

    public func addresses(_ name: String) throws -> [IPAddress] {
        let v4 = try records(name, .a).compactMap { data -> IPAddress? in
            guard data.count == 4 else { return nil }
            return .v4(data.reduce(0) { $0 << 8 | UInt32($1) })
        }
        let v6 = try records(name, .aaaa).compactMap { data -> IPAddress? in
            guard data.count == 16 else { return nil }
            let high = data[0..<8].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            let low = data[8..<16].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            return .v6(high: high, low: low)
        }
        return v4 + v6
    }

    public func mx(_ name: String) throws -> [String] {
        try records(name, .mx).map { String(decoding: $0, as: UTF8.self).lowercased() }
    }
}

extension IPAddress {
    public var isIPv4: Bool { if case .v4 = self { true } else { false } }
}
