/// The one place that reads and writes payload fields: big-endian integers, NUL-terminated
/// strings, string arrays and raw bytes.
///
/// `PayloadReader` is the checked choke point for hostile input. Every read checks the
/// remaining length first and throws a `ProtocolError` naming the frame and the field;
/// nothing here indexes past the end, unwraps, or overflows. Strings are decoded as UTF-8,
/// with invalid sequences replaced by U+FFFD.

/// Reads the fields of one frame's payload, front to back.
struct PayloadReader {
    private let bytes: [UInt8]
    private var offset: Int
    /// The frame's libmilter name, for error messages.
    let frame: String

    init(_ bytes: [UInt8], frame: String) {
        self.bytes = bytes
        self.offset = 0
        self.frame = frame
    }

    var isAtEnd: Bool { offset >= bytes.count }
    var remainingCount: Int { bytes.count - offset }

    mutating func byte(_ field: String) throws -> UInt8 {
        guard remainingCount >= 1 else { throw ProtocolError.truncated(frame: frame, field: field) }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func uint16(_ field: String) throws -> UInt16 {
        guard remainingCount >= 2 else { throw ProtocolError.truncated(frame: frame, field: field) }
        defer { offset += 2 }
        return UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
    }

    mutating func uint32(_ field: String) throws -> UInt32 {
        guard remainingCount >= 4 else { throw ProtocolError.truncated(frame: frame, field: field) }
        defer { offset += 4 }
        return bytes[offset..<offset + 4].reduce(0) { $0 << 8 | UInt32($1) }
    }

    /// One NUL-terminated string; the NUL is consumed and not part of the result.
    mutating func string(_ field: String) throws -> String {
        guard remainingCount >= 1 else { throw ProtocolError.truncated(frame: frame, field: field) }
        guard let end = bytes[offset...].firstIndex(of: 0) else {
            throw ProtocolError.missingTerminator(frame: frame, field: field)
        }
        defer { offset = end + 1 }
        return String(decoding: bytes[offset..<end], as: UTF8.self)
    }

    /// NUL-terminated strings up to the end of the payload (libmilter's `char args[][]`).
    mutating func strings(_ field: String) throws -> [String] {
        var result: [String] = []
        while !isAtEnd { result.append(try string(field)) }
        return result
    }

    /// Everything left, raw.
    mutating func rest() -> [UInt8] {
        defer { offset = bytes.count }
        return Array(bytes[offset...])
    }

    /// Fails unless every byte has been read.
    func finish() throws {
        if remainingCount > 0 { throw ProtocolError.trailingBytes(frame: frame, count: remainingCount) }
    }

    func failure(_ reason: String) -> ProtocolError {
        .invalidValue(frame: frame, reason: reason)
    }
}

/// Builds one frame's payload, front to back. Field names are autoclosures: they are only
/// formatted for an error, never on the way that succeeds.
struct PayloadWriter {
    private(set) var bytes: [UInt8] = []
    /// The frame's libmilter name, for error messages.
    let frame: String

    init(frame: String) {
        self.frame = frame
        bytes.reserveCapacity(64)
    }

    mutating func byte(_ value: UInt8) { bytes.append(value) }

    mutating func uint16(_ value: UInt16) {
        bytes.append(UInt8(truncatingIfNeeded: value >> 8))
        bytes.append(UInt8(truncatingIfNeeded: value))
    }

    mutating func uint32(_ value: UInt32) {
        for shift in stride(from: 24, through: 0, by: -8) {
            bytes.append(UInt8(truncatingIfNeeded: value >> UInt32(shift)))
        }
    }

    /// Appends `value` and its NUL terminator. A NUL inside `value` would cut it short on
    /// the wire and shift every later field, so it is refused.
    mutating func string(_ value: String, field: @autoclosure () -> String) throws {
        var value = value
        let clean = value.withUTF8 { utf8 in
            guard !utf8.contains(0) else { return false }
            bytes.append(contentsOf: utf8)
            return true
        }
        guard clean else { throw ProtocolError.embeddedNUL(frame: frame, field: field()) }
        bytes.append(0)
    }

    mutating func strings(_ values: [String], field: @autoclosure () -> String) throws {
        for value in values { try string(value, field: field()) }
    }

    mutating func raw(_ value: [UInt8]) { bytes.append(contentsOf: value) }
}

/// A payload read field by field where it lies (`FrameDecoder.withNextFrame`): NUL-terminated
/// fields, single bytes and big-endian words, never past its end. A milter reads the commands'
/// fields this way without making a string of any it does not need.
public struct PayloadFields {
    private let payload: UnsafeRawBufferPointer
    private var offset = 0

    public init(_ payload: UnsafeRawBufferPointer) { self.payload = payload }

    public var isAtEnd: Bool { offset >= payload.count }

    /// The next NUL-terminated field, without its NUL; nil when none is left, or the rest of the
    /// payload has no NUL (then nothing is consumed).
    public mutating func field() -> UnsafeRawBufferPointer? {
        guard offset < payload.count else { return nil }
        var end = offset
        while end < payload.count, payload[end] != 0 { end += 1 }
        guard end < payload.count else { return nil }
        defer { offset = end + 1 }
        return UnsafeRawBufferPointer(rebasing: payload[offset..<end])
    }

    /// The next field as a string (UTF-8, repaired as `String(decoding:)` does).
    public mutating func string() -> String? { field().map { String(decoding: $0, as: UTF8.self) } }

    public mutating func byte() -> UInt8? {
        guard payload.count - offset >= 1 else { return nil }
        defer { offset += 1 }
        return payload[offset]
    }

    public mutating func uint16() -> UInt16? {
        guard payload.count - offset >= 2 else { return nil }
        defer { offset += 2 }
        return UInt16(payload[offset]) << 8 | UInt16(payload[offset + 1])
    }

    public mutating func uint32() -> UInt32? {
        guard payload.count - offset >= 4 else { return nil }
        defer { offset += 4 }
        return UInt32(payload[offset]) << 24 | UInt32(payload[offset + 1]) << 16 | UInt32(payload[offset + 2]) << 8
            | UInt32(payload[offset + 3])
    }

    /// The value of macro `name` in a SMFIC_MACRO payload after its command byte (name, value,
    /// name, value, …), as libmilter's `smfi_getsymval` finds it: a one-letter name matches with
    /// or without braces (`i`, `{i}`), either way round.
    public static func macro(_ name: String, in payload: UnsafeRawBufferPointer) -> String? {
        var wanted = name
        return wanted.withUTF8 { wanted in
            var fields = PayloadFields(payload)
            while let key = fields.field() {
                guard let value = fields.field() else { return nil }
                if macroNamesMatch(UnsafeRawBufferPointer(wanted), key) {
                    return String(decoding: value, as: UTF8.self)
                }
            }
            return nil
        }
    }

    /// `{x}` and `x` are one macro when `x` is one character; anything else matches only itself.
    static func macroNamesMatch(_ left: UnsafeRawBufferPointer, _ right: UnsafeRawBufferPointer) -> Bool {
        if left.elementsEqual(right) { return true }
        func bare(_ name: UnsafeRawBufferPointer) -> UInt8? {
            if name.count == 1 { return name[0] }
            if name.count == 3, name[0] == UInt8(ascii: "{"), name[2] == UInt8(ascii: "}") { return name[1] }
            return nil
        }
        guard let one = bare(left), let other = bare(right) else { return false }
        return one == other
    }
}
