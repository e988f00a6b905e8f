/// Copy and rewrite targets: an address with `%` tokens that the recipient fills in.
///
/// Invariant: the domain of every target is a literal written in the rule file. Tokens may appear
/// only in the local part, so a copy can only ever go to a domain the rule file names, whatever the
/// SMTP client sends.

/// The parts of a recipient a template can use.
public struct RecipientParts: Sendable, Hashable {
    /// `%u`: the local part as the client sent it, extension included (`bob+news`).
    public let localPart: String
    /// `%b`: the local part without its extension (`bob`).
    public let base: String
    /// `%e`: the extension without the delimiter (`news`), empty when there is none.
    public let fileExtension: String
    /// `%d`: the recipient domain, lower-cased.
    public let domain: String

    public init(localPart: String, base: String, extension: String, domain: String) {
        self.localPart = localPart
        self.base = base
        self.fileExtension = `extension`
        self.domain = domain
    }

    /// Splits `address` at the first of `delimiters` (Postfix's recipient_delimiter semantics); a
    /// local part that starts with a delimiter is not split.
    public init(address: EnvelopeAddress, delimiters: String) {
        let local = address.localPart
        // Delimiters are ASCII (the rule parser checks): a byte scan finds exactly the characters.
        // The local part's bytes are scanned in place (asked of every recipient); its index is made
        // only when a delimiter is found.
        let delimiterBytes = delimiters.utf8
        func scan(_ bytes: some Collection<UInt8>) -> Int? {
            let found =
                delimiterBytes.count == 1
                ? bytes.firstIndex(of: delimiterBytes[delimiterBytes.startIndex])
                : bytes.firstIndex(where: { delimiterBytes.contains($0) })
            return found.map { bytes.distance(from: bytes.startIndex, to: $0) }
        }
        let offset = local.utf8.withContiguousStorageIfAvailable(scan) ?? scan(local.utf8)
        if let offset, offset > 0 {
            let cut = local.utf8.index(local.utf8.startIndex, offsetBy: offset)
            self.init(
                localPart: local,
                base: String(local[..<cut]),
                extension: String(local[local.index(after: cut)...]),
                domain: address.domain
            )
        } else {
            self.init(localPart: local, base: local, extension: "", domain: address.domain)
        }
    }

    func text(of piece: AddressTemplate.Piece) -> String {
        switch piece {
        case .literal(let text): text
        case .localPart: localPart
        case .base: base
        case .fileExtension: fileExtension
        case .domain: domain
        }
    }
}

public struct AddressTemplate: Sendable, Hashable, CustomStringConvertible {
    enum Piece: Sendable, Hashable {
        case literal(String)
        case localPart
        case base
        case fileExtension
        case domain
    }

    /// The local part's pieces, in order.
    let localPieces: Pieces

    /// A local part's pieces: a per-user target (`carol`, `uI@copy.example`) is one piece, held
    /// inline (`OneOrMany`).
    typealias Pieces = OneOrMany<Piece>

    /// The literal domain, lower-cased; empty for a bare local user (rewrites only).
    public let domain: String
    /// The template as written in the rule file.
    public var source: String { written ?? spelled }
    /// The text as written, kept only when the pieces and domain do not spell it (a domain written
    /// with capitals): a million targets keep no second copy of their text.
    let written: String?

    /// The pieces and domain written out: `%u`, `%b`, `%e`, `%d` and literals, then `@domain`.
    private var spelled: String {
        var text = ""
        for piece in localPieces {
            switch piece {
            case .literal(let literal): text += literal
            case .localPart: text += "%u"
            case .base: text += "%b"
            case .fileExtension: text += "%e"
            case .domain: text += "%d"
            }
        }
        return domain.isEmpty ? text : text + "@" + domain
    }

    public var description: String { source }

    /// True when the template contains no token, i.e. it is one fixed address.
    public var isFixed: Bool { localPieces.allSatisfy { if case .literal = $0 { true } else { false } } }

    public enum ParseError: Error, Sendable, Hashable {
        /// `offset` counts characters from the template's first one, for column reporting.
        case invalid(String, offset: Int)
    }

    /// Parses `text`. A bare local part (no `@`) is accepted only when `allowBareLocalPart` is set.
    ///
    /// Works on the UTF-8 bytes (a million `user … copy` lines parse a million templates); error
    /// offsets count characters, for the column of the diagnostic.
    public static func parse(_ text: String, allowBareLocalPart: Bool) -> Result<AddressTemplate, ParseError> {
        var utf8 = text
        return utf8.withUTF8 { parse($0, allowBareLocalPart: allowBareLocalPart, source: text) }
    }

    /// Parses the template in `bytes` (a slice of a rule file). `source` is the same text as a
    /// string, when the caller has one (kept only if the result cannot spell it); `sharing` is a template parsed before: when this one has
    /// the same domain, it shares that domain's string (a million targets in one domain keep one).
    static func parse(
        _ bytes: UnsafeBufferPointer<UInt8>, allowBareLocalPart: Bool, source: String? = nil,
        sharing previous: AddressTemplate? = nil
    ) -> Result<AddressTemplate, ParseError> {
        func fail(_ message: String, at byte: Int) -> Result<AddressTemplate, ParseError> {
            .failure(.invalid(message, offset: String(decoding: bytes[..<byte], as: UTF8.self).count))
        }
        func character(at byte: Int) -> Character {
            String(decoding: bytes[byte...], as: UTF8.self).first ?? "?"
        }
        guard !bytes.isEmpty else { return .failure(.invalid("empty template", offset: 0)) }
        let percent = UInt8(ascii: "%")
        var at: Int?
        for (index, byte) in bytes.enumerated() where byte == UInt8(ascii: "@") {
            if at != nil { return fail("more than one '@' in template", at: index) }
            at = index
        }
        let localEnd = at ?? bytes.count
        var pieces = Pieces()
        var literalStart: Int?
        func flush(upTo end: Int) {
            if let start = literalStart { pieces.append(.literal(String(decoding: bytes[start..<end], as: UTF8.self))) }
            literalStart = nil
        }
        var index = 0
        while index < localEnd {
            let byte = bytes[index]
            if byte == percent {
                guard index + 1 < localEnd else {
                    return fail("'%' at end of local part; write '%%' for a percent sign", at: index)
                }
                let token: Piece
                switch bytes[index + 1] {
                case UInt8(ascii: "u"): token = .localPart
                case UInt8(ascii: "b"): token = .base
                case UInt8(ascii: "e"): token = .fileExtension
                case UInt8(ascii: "d"): token = .domain
                case percent: return fail("'%' cannot appear in a target address", at: index)
                default:
                    return fail("unknown token '%\(character(at: index + 1))'; use %u, %b, %e or %d", at: index)
                }
                flush(upTo: index)
                pieces.append(token)
                index += 2
                continue
            }
            guard byte < 0x80, LocalPartCharacters.isAllowed(byte) else {
                return fail("character '\(character(at: index))' is not allowed in a target local part", at: index)
            }
            if literalStart == nil { literalStart = index }
            index += 1
        }
        flush(upTo: localEnd)
        if pieces.isEmpty { return .failure(.invalid("empty local part in template", offset: 0)) }
        guard let at else {
            guard allowBareLocalPart else {
                return fail("copy target needs a domain: write local@domain", at: bytes.count)
            }
            return .success(AddressTemplate(localPieces: pieces, domain: "", written: nil))
        }
        let domainBytes = bytes[(at + 1)...]
        if let percentIndex = domainBytes.firstIndex(of: percent) {
            return fail(
                "the domain of a target must be written out; tokens are allowed only before '@'", at: percentIndex)
        }
        if let problem = DomainName.problem(in: domainBytes) {
            return fail(problem, at: at + 1)
        }
        let domain: String
        let isLower = !domainBytes.contains { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") }
        var previousDomain = previous?.domain ?? ""
        if isLower, previousDomain.withUTF8({ sameBytes($0, UnsafeBufferPointer(rebasing: domainBytes)) }) {
            domain = previousDomain
        } else {
            let written = String(decoding: domainBytes, as: UTF8.self)
            domain = isLower ? written : written.lowercased()
        }
        let written = isLower ? nil : source ?? String(decoding: bytes, as: UTF8.self)
        return .success(AddressTemplate(localPieces: pieces, domain: domain, written: written))
    }

    /// Fills in the template. Fails (with the reason) when the result is not a usable local part,
    /// e.g. longer than 64 octets or with doubled dots after substitution.
    ///
    /// Writes the address into one buffer: this runs for every copy and rewrite of every message.
    public func render(_ parts: RecipientParts) -> Result<EnvelopeAddress, AddressProblem> {
        var localLength = 0
        localPieces.each { localLength += parts.text(of: $0).utf8.count }
        let domainLength = domain.utf8.count
        var problem: String?
        var capitals = false
        let whole = String(
            unsafeUninitializedCapacity: localLength + (domainLength > 0 ? 1 + domainLength : 0)
        ) { buffer in
            var end = 0
            func append(_ text: String) { end = buffer[end...].initialize(fromContentsOf: text.utf8) }
            localPieces.each { append(parts.text(of: $0)) }
            let local = UnsafeBufferPointer(rebasing: buffer[..<end])[...]
            problem = LocalPartCharacters.problem(in: local)
            capitals = hasCapital(local)
            if domainLength > 0 {
                buffer[end] = UInt8(ascii: "@")
                end += 1
                append(domain)
            }
            return end
        }
        if let problem {
            return .failure(.unsafeLocalPart("\(problem) (after filling in '\(source)')"))
        }
        // A one-piece local part is that piece's text, already a string: cutting it out of the whole
        // address made a second string for every target.
        let localPart =
            domainLength == 0
            ? whole : localPieces.only.map(parts.text) ?? String(Substring(whole.utf8.prefix(localLength)))
        return .success(
            EnvelopeAddress(localPart: localPart, domain: domain, description: whole, hasCapitals: capitals))
    }
}
