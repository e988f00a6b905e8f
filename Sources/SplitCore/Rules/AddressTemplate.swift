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
        if let cut = local.firstIndex(where: { delimiters.contains($0) }), cut != local.startIndex {
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
}

public struct AddressTemplate: Sendable, Hashable, CustomStringConvertible {
    enum Piece: Sendable, Hashable {
        case literal(String)
        case localPart
        case base
        case fileExtension
        case domain
    }

    let localPieces: [Piece]
    /// The literal domain, lower-cased; empty for a bare local user (rewrites only).
    public let domain: String
    /// The template as written in the rule file.
    public let source: String

    public var description: String { source }

    /// True when the template contains no token, i.e. it is one fixed address.
    public var isFixed: Bool { localPieces.allSatisfy { if case .literal = $0 { true } else { false } } }

    public enum ParseError: Error, Sendable, Hashable {
        /// `offset` counts characters from the template's first one, for column reporting.
        case invalid(String, offset: Int)
    }

    /// Parses `text`. A bare local part (no `@`) is accepted only when `allowBareLocalPart` is set.
    public static func parse(_ text: String, allowBareLocalPart: Bool) -> Result<AddressTemplate, ParseError> {
        let chars = Array(text)
        guard !chars.isEmpty else { return .failure(.invalid("empty template", offset: 0)) }
        let atPositions = chars.indices.filter { chars[$0] == "@" }
        if atPositions.count > 1 {
            return .failure(.invalid("more than one '@' in template", offset: atPositions[1]))
        }
        let localEnd = atPositions.first ?? chars.count
        var pieces: [Piece] = []
        var literal = ""
        var index = 0
        func flush() {
            if !literal.isEmpty { pieces.append(.literal(literal)) }
            literal = ""
        }
        while index < localEnd {
            let c = chars[index]
            if c == "%" {
                guard index + 1 < localEnd else {
                    return .failure(.invalid("'%' at end of local part; write '%%' for a percent sign", offset: index))
                }
                let token = chars[index + 1]
                switch token {
                case "u":
                    flush()
                    pieces.append(.localPart)
                case "b":
                    flush()
                    pieces.append(.base)
                case "e":
                    flush()
                    pieces.append(.fileExtension)
                case "d":
                    flush()
                    pieces.append(.domain)
                case "%":
                    return .failure(.invalid("'%' cannot appear in a target address", offset: index))
                default:
                    return .failure(
                        .invalid("unknown token '%\(token)'; use %u, %b, %e or %d", offset: index)
                    )
                }
                index += 2
                continue
            }
            guard let ascii = c.asciiValue, LocalPartCharacters.isAllowed(ascii) else {
                return .failure(.invalid("character '\(c)' is not allowed in a target local part", offset: index))
            }
            literal.append(c)
            index += 1
        }
        flush()
        if pieces.isEmpty { return .failure(.invalid("empty local part in template", offset: 0)) }
        guard let at = atPositions.first else {
            guard allowBareLocalPart else {
                return .failure(.invalid("copy target needs a domain: write local@domain", offset: chars.count))
            }
            return .success(AddressTemplate(localPieces: pieces, domain: "", source: text))
        }
        let domainChars = chars[(at + 1)...]
        if let percent = domainChars.firstIndex(of: "%") {
            return .failure(
                .invalid(
                    "the domain of a target must be written out; tokens are allowed only before '@'", offset: percent)
            )
        }
        let domainBytes = Array(String(domainChars).utf8)
        if let problem = DomainName.problem(in: domainBytes) {
            return .failure(.invalid(problem, offset: at + 1))
        }
        return .success(AddressTemplate(localPieces: pieces, domain: String(domainChars).lowercased(), source: text))
    }

    /// Fills in the template. Fails (with the reason) when the result is not a usable local part,
    /// e.g. longer than 64 octets or with doubled dots after substitution.
    public func render(_ parts: RecipientParts) -> Result<EnvelopeAddress, AddressProblem> {
        var local = ""
        for piece in localPieces {
            switch piece {
            case .literal(let text): local += text
            case .localPart: local += parts.localPart
            case .base: local += parts.base
            case .fileExtension: local += parts.fileExtension
            case .domain: local += parts.domain
            }
        }
        if let problem = LocalPartCharacters.problem(in: local.utf8) {
            return .failure(.unsafeLocalPart("\(problem) (after filling in '\(source)')"))
        }
        return .success(EnvelopeAddress(localPart: local, domain: domain))
    }
}
