/// The DSN parameters of a RCPT command (RFC 3461) that splitmilter passes on, and xtext.
///
/// The client's `NOTIFY=` and `ORCPT=` are echoed into a rewritten recipient, so they are checked
/// first: only well-formed values within bounds survive; anything else is dropped (and Postfix's
/// defaults apply), never passed on.

public struct RecipientParameters: Sendable, Hashable {
    /// `NOTIFY=` as the client sent it, upper-cased, if well formed.
    public var notify: String?
    /// `ORCPT=` value (`type;xtext`) as the client sent it, if well formed.
    public var originalRecipient: String?

    public init(notify: String? = nil, originalRecipient: String? = nil) {
        self.notify = notify
        self.originalRecipient = originalRecipient
    }

    /// RFC 3461 §4.2: ORCPT's xtext may be up to 500 characters.
    static let maximumOriginalRecipientLength = 500

    /// Reads the ESMTP arguments of `xxfi_envrcpt` (argv[1...]). Unknown parameters are ignored.
    public static func parse<S: Sequence>(_ arguments: S) -> RecipientParameters where S.Element == String {
        var result = RecipientParameters()
        for argument in arguments {
            guard argument.utf8.count <= 1024, let equals = argument.firstIndex(of: "=") else { continue }
            let key = argument[..<equals].uppercased()
            let value = String(argument[argument.index(after: equals)...])
            switch key {
            case "NOTIFY":
                if let notify = validNotify(value) { result.notify = notify }
            case "ORCPT":
                if validOriginalRecipient(value) { result.originalRecipient = value }
            default:
                continue
            }
        }
        return result
    }

    /// `NEVER`, or a comma list of `SUCCESS`, `FAILURE`, `DELAY` without repeats.
    static func validNotify(_ value: String) -> String? {
        let upper = value.uppercased()
        if upper == "NEVER" { return upper }
        let items = upper.split(separator: ",", omittingEmptySubsequences: false)
        guard !items.isEmpty, items.count <= 3, Set(items).count == items.count else { return nil }
        for item in items where !["SUCCESS", "FAILURE", "DELAY"].contains(item) { return nil }
        return upper
    }

    /// `addr-type ";" xtext` with an atom type and printable xtext.
    static func validOriginalRecipient(_ value: String) -> Bool {
        let bytes = Array(value.utf8)
        guard bytes.count <= maximumOriginalRecipientLength, let semicolon = bytes.firstIndex(of: UInt8(ascii: ";"))
        else { return false }
        let type = bytes[..<semicolon]
        let text = bytes[(semicolon + 1)...]
        guard !type.isEmpty, !text.isEmpty else { return false }
        let typeOK = type.allSatisfy { LocalPartCharacters.isAllowed($0) && $0 != UInt8(ascii: "=") }
        return typeOK && XText.isValid(text)
    }
}

/// RFC 3461 §4: xtext, the encoding of ORCPT values. Bytes outside `!`...`~`, and `+` and `=`,
/// are written `+XX`.
public enum XText {
    public static func encode(_ text: String) -> String {
        // The common case, a plain address, is its own encoding: no copy.
        let plain =
            text.utf8.withContiguousStorageIfAvailable { bytes in bytes.allSatisfy(isPlain) }
            ?? text.utf8.allSatisfy(isPlain)
        guard !plain else { return text }
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count + 8)
        for byte in text.utf8 {
            if isPlain(byte) {
                out.append(byte)
            } else {
                out += [UInt8(ascii: "+"), hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]]
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// xtext's xchar other than "+" and "=": printed as itself.
    static func isPlain(_ byte: UInt8) -> Bool {
        byte >= 0x21 && byte <= 0x7E && byte != UInt8(ascii: "+") && byte != UInt8(ascii: "=")
    }

    static func isValid<C: Collection>(_ bytes: C) -> Bool where C.Element == UInt8 {
        var pending = 0
        for byte in bytes {
            if pending > 0 {
                let isHex =
                    (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
                    || (UInt8(ascii: "A")...UInt8(ascii: "F")).contains(byte)
                if !isHex { return false }
                pending -= 1
            } else if byte == UInt8(ascii: "+") {
                pending = 2
            } else if byte < 0x21 || byte > 0x7E || byte == UInt8(ascii: "=") {
                return false
            }
        }
        return pending == 0
    }
}
