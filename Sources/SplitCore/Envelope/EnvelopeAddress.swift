/// Envelope addresses as Postfix hands them to a milter, and the checks that decide whether a local
/// part may be placed into a template.
///
/// Input comes from the SMTP client through Postfix (`xxfi_envrcpt` argv[0]) and is not trusted:
/// everything here works on bounded UTF-8 bytes and never traps.

/// The longest RCPT argument we look at. Postfix's own line limit is 2048 bytes; RFC 5321 allows
/// 256 for a path. Anything longer is reported as unusable, never truncated.
public let maximumAddressLength = 512

/// RFC 5321 §4.5.3.1.1: a local part has at most 64 octets.
public let maximumLocalPartLength = 64

/// RFC 5321 §4.5.3.1.2: a domain has at most 255 octets.
public let maximumDomainLength = 255

/// A recipient or target address split into local part and domain.
///
/// `domain` is lower-cased (domains are case-insensitive); the local part keeps the case the client
/// sent, because that is what a template copies. The whole address and its identity are made once,
/// when the address is: the message path asks for both of every recipient and target.
public struct EnvelopeAddress: Sendable, Hashable, CustomStringConvertible {
    public let localPart: String
    /// Lower-cased, without a trailing dot. Empty for a bare local part such as `postmaster`.
    public let domain: String
    /// `local@domain`, or the bare local part.
    public let description: String
    /// The key under which two addresses count as the same recipient: the whole address
    /// case-folded. Postfix's duplicate filter folds case the same way.
    public let identity: String

    public init(localPart: String, domain: String) {
        self.localPart = localPart
        self.domain = domain
        description = domain.isEmpty ? localPart : localPart + "@" + domain
        identity = description.caseFolded
    }

    /// `description` must be `localPart@domain` (or the bare local part): the parser and the
    /// templates build it in one buffer, and say whether it has a capital letter (they looked at
    /// every byte already), so the identity needs no second look.
    init(localPart: String, domain: String, description: String, hasCapitals: Bool) {
        self.localPart = localPart
        self.domain = domain
        self.description = description
        identity = hasCapitals ? description.lowercased() : description
    }

    public static func == (left: EnvelopeAddress, right: EnvelopeAddress) -> Bool {
        left.description == right.description
    }

    public func hash(into hasher: inout Hasher) { hasher.combine(description) }
}

/// Why a recipient argument cannot be used to build copies or rewrites.
public enum AddressProblem: Error, Sendable, Hashable, CustomStringConvertible {
    case empty
    case tooLong(Int)
    case malformed(String)
    case sourceRoute
    case quotedLocalPart
    case addressLiteral
    case unsafeLocalPart(String)

    public var description: String {
        switch self {
        case .empty: "empty address"
        case .tooLong(let n): "address is \(n) bytes, more than \(maximumAddressLength)"
        case .malformed(let why): "malformed address: \(why)"
        case .sourceRoute: "source route syntax (@host:user@domain) is not used"
        case .quotedLocalPart: "quoted local part is not placed into templates"
        case .addressLiteral: "address literal domain ([1.2.3.4]) matches no rule"
        case .unsafeLocalPart(let why): "local part cannot be placed into a template: \(why)"
        }
    }
}

public enum EnvelopeAddressParser {
    /// Parses a RCPT argument as Postfix passes it (`<user@example.org>`, with or without brackets).
    ///
    /// Postfix in its default non-strict mode (`strict_rfc821_envelopes = no`) passes the argument as
    /// the client wrote it, and reads it itself with blanks dropped: `<zed@example.org >` and
    /// `< zed@example.org>` are delivered to `zed@example.org`. So blanks (space, tab) around the
    /// address, outside and inside the brackets, are dropped here too (docs/recipient-forms.md);
    /// anything else unusual is a problem, and `RuleSet.decide` still finds the section it would
    /// belong to (`RuleSet.roughDomain`) so that a guard is never escaped by spelling.
    ///
    /// The result is usable in templates: a local part that is not a plain dot-atom made of
    /// `LocalPartCharacters` is refused with `.unsafeLocalPart`, so nothing the client sends can smuggle
    /// an `@`, `%`, `!`, quote, control character or route into a copy target.
    public static func parse(_ raw: String) -> Result<EnvelopeAddress, AddressProblem> {
        var raw = raw
        return raw.withUTF8 {
            switch parse(bytes: $0) {
            case .parsed(let address, _): .success(address)
            case .unusable(let problem): .failure(problem)
            }
        }
    }

    /// What `parse(bytes:)` makes of an argument: a concrete enum, where a `Result` of a tuple was
    /// copied and freed through generic value witnesses for every recipient.
    enum Parsed {
        /// `isBracketed`: the bytes are exactly `<` + the address's `description` + `>`.
        case parsed(EnvelopeAddress, isBracketed: Bool)
        case unusable(AddressProblem)
    }

    /// The same for the argument's bytes; `isBracketed` says that they are exactly `<` + the
    /// address's `description` + `>` (as Postfix sends nearly every one), so that the caller need not
    /// keep them as a second string.
    static func parse(bytes: UnsafeBufferPointer<UInt8>) -> Parsed {
        if bytes.count > maximumAddressLength { return .unusable(.tooLong(bytes.count)) }
        var body = bytes[...]
        body.trimBlanks()
        if body.first == UInt8(ascii: "<") {
            guard body.last == UInt8(ascii: ">"), body.count >= 2 else {
                return .unusable(.malformed("unbalanced angle brackets"))
            }
            body = body.dropFirst().dropLast()
            body.trimBlanks()
        }
        if body.isEmpty { return .unusable(.empty) }
        // One pass for what makes an argument unusable, reported in this order below.
        var control = false
        var quote = false
        var angle = false
        var lastAt: Int?
        // An index loop: `indices` of a slice is not specialised here and costs more than the scan.
        var index = body.startIndex
        while index < body.endIndex {
            let byte = body[index]
            defer { index += 1 }
            if byte < 0x20 || byte == 0x7F {
                control = true
            } else if byte == UInt8(ascii: "\"") {
                quote = true
            } else if byte == UInt8(ascii: "<") || byte == UInt8(ascii: ">") {
                angle = true
            } else if byte == UInt8(ascii: "@") {
                lastAt = index
            }
        }
        if control { return .unusable(.unsafeLocalPart("control character")) }
        if body.first == UInt8(ascii: "@") { return .unusable(.sourceRoute) }
        if quote { return .unusable(.quotedLocalPart) }
        if angle { return .unusable(.malformed("angle bracket inside address")) }
        guard let at = lastAt else {
            if let problem = LocalPartCharacters.problem(in: body) {
                return .unusable(.unsafeLocalPart(problem))
            }
            let local = String(decoding: body, as: UTF8.self)
            return .parsed(
                EnvelopeAddress(localPart: local, domain: "", description: local, hasCapitals: hasCapital(body)),
                isBracketed: isBracketed(body, in: bytes))
        }
        let local = body[body.startIndex..<at]
        var domain = body[(at + 1)...]
        if domain.first == UInt8(ascii: "[") { return .unusable(.addressLiteral) }
        if domain.last == UInt8(ascii: ".") { domain = domain.dropLast() }
        if let problem = DomainName.problem(in: domain) { return .unusable(.malformed(problem)) }
        if let problem = LocalPartCharacters.problem(in: local) {
            return .unusable(.unsafeLocalPart(problem))
        }
        // Both parts are ASCII now (checked): the domain is lower-cased byte by byte, and the whole
        // address is written into one buffer.
        // The whole address is the argument's own bytes when its domain is already lower-case (as
        // nearly every one is); otherwise it is written anew with the domain lower-cased.
        let whole: String
        let domainText: String
        let bracketed: Bool
        if hasCapital(domain) {
            bracketed = false
            domainText = String(unsafeUninitializedCapacity: domain.count) { buffer in
                for (offset, byte) in domain.enumerated() { buffer[offset] = asciiLowercased(byte) }
                return domain.count
            }
            whole = String(unsafeUninitializedCapacity: local.count + 1 + domain.count) { buffer in
                var end = buffer.initialize(fromContentsOf: local)
                buffer[end] = UInt8(ascii: "@")
                end += 1
                end = buffer[end...].initialize(fromContentsOf: domainText.utf8)
                return end
            }
        } else {
            domainText = String(decoding: domain, as: UTF8.self)
            let spelled = body[local.startIndex..<domain.endIndex]
            whole = String(decoding: spelled, as: UTF8.self)
            bracketed = isBracketed(spelled, in: bytes)
        }
        return .parsed(
            EnvelopeAddress(
                localPart: String(decoding: local, as: UTF8.self), domain: domainText, description: whole,
                hasCapitals: hasCapital(local)),
            isBracketed: bracketed)
    }

    /// True when `inner`, a slice of `bytes`, is all of it but a `<` before and a `>` after.
    static func isBracketed(
        _ inner: Slice<UnsafeBufferPointer<UInt8>>, in bytes: UnsafeBufferPointer<UInt8>
    ) -> Bool {
        inner.startIndex == 1 && inner.endIndex == bytes.count - 1 && bytes[0] == UInt8(ascii: "<")
            && bytes[bytes.count - 1] == UInt8(ascii: ">")
    }
}

/// True when the bytes hold an ASCII capital letter.
@inline(__always)
func hasCapital(_ bytes: Slice<UnsafeBufferPointer<UInt8>>) -> Bool {
    var index = bytes.startIndex
    while index < bytes.endIndex {
        if bytes[index] >= UInt8(ascii: "A") && bytes[index] <= UInt8(ascii: "Z") { return true }
        index += 1
    }
    return false
}

/// The byte lower-cased if it is an ASCII capital letter.
@inline(__always)
func asciiLowercased(_ byte: UInt8) -> UInt8 {
    byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
}

extension Slice where Base == UnsafeBufferPointer<UInt8> {
    /// Drops spaces and tabs at both ends.
    mutating func trimBlanks() {
        while let first, first == UInt8(ascii: " ") || first == UInt8(ascii: "\t") {
            self = dropFirst()
        }
        while let last, last == UInt8(ascii: " ") || last == UInt8(ascii: "\t") { self = dropLast() }
    }
}

/// The local parts splitmilter places into templates: a dot-atom of letters, digits and `. _ - + =`,
/// at most 64 octets, no leading, trailing or doubled dot.
///
/// This is narrower than RFC 5321's atext on purpose: `%` and `!` are routing operators for some
/// MTAs, `/` and `|` reach file names and commands behind pipe(8) and local(8), `'`, `` ` `` and `$`
/// reach shells. A recipient outside this set is still delivered normally; it only gets no copy
/// and no rewrite, and the daemon logs why.
public enum LocalPartCharacters {
    public static func isAllowed(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        case UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"), UInt8(ascii: "+"),
            UInt8(ascii: "="):
            true
        default:
            false
        }
    }

    /// nil when `bytes` is a usable local part, else the reason.
    public static func problem<C: Collection>(in bytes: C) -> String? where C.Element == UInt8 {
        if bytes.isEmpty { return "empty local part" }
        if bytes.count > maximumLocalPartLength {
            return "local part is \(bytes.count) bytes, more than \(maximumLocalPartLength)"
        }
        var previous: UInt8 = 0
        for byte in bytes {
            if !isAllowed(byte) { return "character \(describe(byte)) is not allowed" }
            if byte == UInt8(ascii: "."), previous == UInt8(ascii: ".") { return "two dots in a row" }
            previous = byte
        }
        if bytes.first == UInt8(ascii: ".") || previous == UInt8(ascii: ".") {
            return "leading or trailing dot"
        }
        return nil
    }

    static func describe(_ byte: UInt8) -> String {
        if byte >= 0x21, byte < 0x7F { return "'\(Character(Unicode.Scalar(byte)))'" }
        let hex = String(byte, radix: 16, uppercase: true)
        return "0x" + (hex.count == 1 ? "0" + hex : hex)
    }
}

/// Host names as rule files and envelopes use them: LDH labels separated by dots.
public enum DomainName {
    public static func problem<C: Collection>(in bytes: C) -> String? where C.Element == UInt8 {
        if bytes.isEmpty { return "empty domain" }
        if bytes.count > maximumDomainLength {
            return "domain is \(bytes.count) bytes, more than \(maximumDomainLength)"
        }
        var labelLength = 0
        var previous: UInt8 = UInt8(ascii: ".")
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "."):
                if labelLength == 0 { return "empty label in domain" }
                if previous == UInt8(ascii: "-") { return "label ends with '-'" }
                labelLength = 0
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"):
                labelLength += 1
            case UInt8(ascii: "-"):
                if labelLength == 0 { return "label starts with '-'" }
                labelLength += 1
            default:
                return "character \(LocalPartCharacters.describe(byte)) is not allowed in a domain"
            }
            if labelLength > 63 { return "label longer than 63 characters" }
            previous = byte
        }
        if labelLength == 0 { return "empty label in domain" }
        if previous == UInt8(ascii: "-") { return "label ends with '-'" }
        return nil
    }
}

extension String {
    /// Lower-cased, as `lowercased()`; but the string itself, with no copy, when it holds no
    /// upper-case ASCII letter and no non-ASCII byte, as nearly every address does. Called for every
    /// recipient and target on the message path.
    public var caseFolded: String {
        let plain =
            utf8.withContiguousStorageIfAvailable { bytes in
                var index = 0
                while index < bytes.count {
                    let byte = bytes[index]
                    if byte >= 0x80 || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z")) { return false }
                    index += 1
                }
                return true
            } ?? false
        return plain ? self : lowercased()
    }
}
