/// IP addresses and networks for allowed-client rules: parsing and CIDR matching, IPv4 and IPv6.
///
/// An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, what a dual-stack socket reports for an IPv4
/// client) is matched as the IPv4 address it carries, so one `ip4:` rule covers both forms.

public enum IPAddress: Sendable, Hashable, CustomStringConvertible {
    case v4(UInt32)
    case v6(high: UInt64, low: UInt64)

    /// The IPv4 address inside an IPv4-mapped IPv6 address, else self.
    public var unmapped: IPAddress {
        if case .v6(let high, let low) = self, high == 0, low >> 32 == 0xFFFF {
            return .v4(UInt32(truncatingIfNeeded: low))
        }
        return self
    }

    public var description: String {
        switch self {
        case .v4(let value):
            return [24, 16, 8, 0].map { String((value >> UInt32($0)) & 0xFF) }.joined(separator: ".")
        case .v6(let high, let low):
            let groups = (0..<8).map { index -> UInt16 in
                let word = index < 4 ? high : low
                return UInt16(truncatingIfNeeded: word >> UInt64(48 - 16 * (index % 4)))
            }
            // Compress the longest run of zero groups (RFC 5952).
            var bestStart = -1
            var bestLength = 0
            var index = 0
            while index < 8 {
                if groups[index] == 0 {
                    var end = index
                    while end < 8, groups[end] == 0 { end += 1 }
                    if end - index > bestLength, end - index > 1 { (bestStart, bestLength) = (index, end - index) }
                    index = end
                } else {
                    index += 1
                }
            }
            let hex = groups.map { String($0, radix: 16) }
            if bestStart < 0 { return hex.joined(separator: ":") }
            let head = hex[..<bestStart].joined(separator: ":")
            let tail = hex[(bestStart + bestLength)...].joined(separator: ":")
            return head + "::" + tail
        }
    }

    /// Parses dotted IPv4 or RFC 4291 IPv6 text (with an optional embedded IPv4 tail); nil if invalid.
    public init?(_ text: String) {
        if text.contains(":") {
            guard let parsed = Self.parseV6(Substring(text)) else { return nil }
            self = parsed
        } else {
            guard let value = Self.parseV4(Substring(text)) else { return nil }
            self = .v4(value)
        }
    }

    static func parseV4(_ text: Substring) -> UInt32? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var value: UInt32 = 0
        for part in parts {
            guard (1...3).contains(part.count), part.allSatisfy(\.isASCIIDigit), let octet = UInt32(part),
                octet <= 255, part.count == 1 || part.first != "0"
            else { return nil }
            value = value << 8 | octet
        }
        return value
    }

    static func parseV6(_ text: Substring) -> IPAddress? {
        guard text.utf8.count <= 45 else { return nil }
        var groups: [UInt16] = []
        var tailGroups: [UInt16] = []
        var sawGap = false
        var halves = [String(text)]
        if let gap = text.firstRange(of: "::") {
            halves = [String(text[..<gap.lowerBound]), String(text[gap.upperBound...])]
            if halves[1].contains("::") { return nil }
        }
        func parseGroups(_ part: String, allowV4Tail: Bool) -> [UInt16]? {
            if part.isEmpty { return [] }
            var result: [UInt16] = []
            let pieces = part.split(separator: ":", omittingEmptySubsequences: false)
            for (index, piece) in pieces.enumerated() {
                if allowV4Tail, index == pieces.count - 1, piece.contains(".") {
                    guard let v4 = parseV4(piece) else { return nil }
                    result.append(UInt16(v4 >> 16))
                    result.append(UInt16(v4 & 0xFFFF))
                } else {
                    guard (1...4).contains(piece.count), let group = UInt16(piece, radix: 16) else { return nil }
                    result.append(group)
                }
            }
            return result
        }
        if halves.count == 2 {
            sawGap = true
            guard let head = parseGroups(halves[0], allowV4Tail: false),
                let tail = parseGroups(halves[1], allowV4Tail: true)
            else { return nil }
            groups = head
            tailGroups = tail
            guard groups.count + tailGroups.count <= 7 else { return nil }
        } else {
            guard let all = parseGroups(halves[0], allowV4Tail: true), all.count == 8 else { return nil }
            groups = all
        }
        var full = groups
        if sawGap { full += Array(repeating: 0, count: 8 - groups.count - tailGroups.count) + tailGroups }
        guard full.count == 8 else { return nil }
        var high: UInt64 = 0
        var low: UInt64 = 0
        for (index, group) in full.enumerated() {
            if index < 4 { high = high << 16 | UInt64(group) } else { low = low << 16 | UInt64(group) }
        }
        return .v6(high: high, low: low)
    }
}

/// A network in CIDR notation; an address without `/len` is a single host.
public struct IPNetwork: Sendable, Hashable, CustomStringConvertible {
    public let address: IPAddress
    public let prefixLength: Int

    public var description: String { "\(address)/\(prefixLength)" }

    public init?(_ text: String) {
        let pieces = text.split(separator: "/", omittingEmptySubsequences: false)
        guard pieces.count <= 2, let address = IPAddress(String(pieces[0])) else { return nil }
        let maximum = if case .v4 = address { 32 } else { 128 }
        var length = maximum
        if pieces.count == 2 {
            guard (1...3).contains(pieces[1].count), pieces[1].allSatisfy(\.isASCIIDigit), let parsed = Int(pieces[1]),
                parsed <= maximum
            else { return nil }
            length = parsed
        }
        self.init(address: address, prefixLength: length)
    }

    /// The network of `address` with host bits cleared; `prefixLength` is clamped to the family's size.
    public init(address: IPAddress, prefixLength: Int) {
        // An IPv4-mapped network (::ffff:a.b.c.d/120) is the IPv4 network it carries (/24).
        let mapped = address.unmapped != address
        if mapped, prefixLength < 96 {
            self.address = address
            self.prefixLength = min(max(prefixLength, 0), 128)
            return
        }
        let prefixLength = mapped ? prefixLength - 96 : prefixLength
        switch address.unmapped {
        case .v4(let value):
            let length = min(max(prefixLength, 0), 32)
            self.address = .v4(value & Self.mask32(length))
            self.prefixLength = length
        case .v6(let high, let low):
            let length = min(max(prefixLength, 0), 128)
            self.address = .v6(
                high: high & Self.mask64(min(length, 64)), low: low & Self.mask64(max(length - 64, 0)))
            self.prefixLength = length
        }
    }

    static func mask32(_ length: Int) -> UInt32 { length == 0 ? 0 : UInt32.max << UInt32(32 - length) }
    static func mask64(_ length: Int) -> UInt64 { length == 0 ? 0 : UInt64.max << UInt64(64 - length) }

    public func contains(_ candidate: IPAddress) -> Bool {
        switch (address, candidate.unmapped) {
        case (.v4(let network), .v4(let value)):
            return value & Self.mask32(prefixLength) == network
        case (.v6(let high, let low), .v6(let valueHigh, let valueLow)):
            return valueHigh & Self.mask64(min(prefixLength, 64)) == high
                && valueLow & Self.mask64(max(prefixLength - 64, 0)) == low
        default:
            return false
        }
    }
}

extension Character {
    var isASCIIDigit: Bool { ("0"..."9").contains(self) }
}
