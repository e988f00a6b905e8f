/// Everything that can be wrong with milter bytes: a frame whose length is out of bounds,
/// a payload that ends early or runs on, an unknown code, a value the protocol forbids.
///
/// Each message names the frame (by its libmilter name when known), what was wrong, and
/// the numbers involved, so a log line is enough to find the culprit.
public enum ProtocolError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A frame announced more bytes than the decoder accepts.
    case frameTooLong(length: UInt32, limit: Int)
    /// A frame announced length 0, so it has not even a command byte.
    case emptyFrame
    /// A frame would be longer than the 32-bit length field can say.
    case frameTooLongToEncode(length: Int)
    /// A code byte that is not a command (or not a response) of protocol version 6.
    case unknownCode(UInt8, expected: String)
    /// The payload ended before `field` was complete.
    case truncated(frame: String, field: String)
    /// A string field ran to the end of the payload without its NUL terminator.
    case missingTerminator(frame: String, field: String)
    /// Bytes were left after the last field.
    case trailingBytes(frame: String, count: Int)
    /// A string to be sent contains a NUL byte, which would end it early on the wire.
    case embeddedNUL(frame: String, field: String)
    /// A field has a value the protocol does not allow.
    case invalidValue(frame: String, reason: String)

    public var description: String {
        switch self {
        case .frameTooLong(let length, let limit):
            "milter frame length \(length) exceeds the limit of \(limit) bytes"
        case .emptyFrame:
            "milter frame length 0: a frame must hold at least its command byte"
        case .frameTooLongToEncode(let length):
            "milter frame of \(length) bytes does not fit the 32-bit length field"
        case .unknownCode(let code, let expected):
            "unknown \(expected) code \(printable(code))"
        case .truncated(let frame, let field):
            "\(frame): payload too short for \(field)"
        case .missingTerminator(let frame, let field):
            "\(frame): \(field) is missing its NUL terminator"
        case .trailingBytes(let frame, let count):
            "\(frame): \(count) unexpected byte\(count == 1 ? "" : "s") after the last field"
        case .embeddedNUL(let frame, let field):
            "\(frame): \(field) contains a NUL byte"
        case .invalidValue(let frame, let reason):
            "\(frame): \(reason)"
        }
    }
}
