/// What the milter answers (SMFIR_*), as typed values: a `Reply` that ends the MTA's wait
/// for one command, a `Modification` requested at end of message, a progress ping, or the
/// negotiation answer. Decoders validate every field; encoders let a test milter be written.

/// An SMTP reply a milter chose (SMFIR_REPLYCODE): `550 5.7.1 go away`, exactly as sent.
///
/// Invariant: `text` starts with three ASCII digits, followed by the end of the text,
/// a space, or (for a multi-line reply) a hyphen.
public struct SMTPReply: Hashable, Sendable {
    public let text: String

    public init(_ text: String) throws {
        let bytes = Array(text.utf8)
        guard bytes.count >= 3, bytes[0..<3].allSatisfy({ (0x30...0x39).contains($0) }) else {
            throw ProtocolError.invalidValue(
                frame: ResponseCode.replyCode.cName,
                reason: "reply \"\(escaped(text))\" does not start with a three-digit code"
            )
        }
        guard bytes.count == 3 || bytes[3] == 0x20 || bytes[3] == 0x2D else {
            throw ProtocolError.invalidValue(
                frame: ResponseCode.replyCode.cName,
                reason: "reply \"\(escaped(text))\" has no space or hyphen after its code"
            )
        }
        self.text = text
    }

    /// The three-digit SMTP code, 0...999.
    public var code: Int {
        text.utf8.prefix(3).reduce(0) { $0 * 10 + Int($1) - 0x30 }
    }
}

/// The milter's answer to one command: what ends the MTA's wait.
public enum Reply: Hashable, Sendable {
    case `continue`  // SMFIR_CONTINUE 'c'
    case accept  // SMFIR_ACCEPT 'a'
    case reject  // SMFIR_REJECT 'r'
    case tempfail  // SMFIR_TEMPFAIL 't'
    case discard  // SMFIR_DISCARD 'd'
    /// Send no more body chunks; go on to end of message. Only after SMFIC_BODY.
    case skip  // SMFIR_SKIP 's'
    case connectionFailure  // SMFIR_CONN_FAIL 'f'
    /// 421: close the SMTP session.
    case shutdown  // SMFIR_SHUTDOWN '4'
    case replyCode(SMTPReply)  // SMFIR_REPLYCODE 'y'

    public var code: ResponseCode {
        switch self {
        case .continue: .continue
        case .accept: .accept
        case .reject: .reject
        case .tempfail: .tempfail
        case .discard: .discard
        case .skip: .skip
        case .connectionFailure: .connectionFailure
        case .shutdown: .shutdown
        case .replyCode: .replyCode
        }
    }
}

/// A change to the message, requested in answer to SMFIC_BODYEOB before the final reply.
/// Addresses and values are kept exactly as the milter sent them.
public enum Modification: Hashable, Sendable {
    case addRecipient(String)  // SMFIR_ADDRCPT '+'
    /// smfi_addrcpt_par: the recipient, then its ESMTP arguments (`NOTIFY=NEVER` …).
    case addRecipientWithArguments(String, arguments: [String])  // SMFIR_ADDRCPT_PAR '2'
    case deleteRecipient(String)  // SMFIR_DELRCPT '-'
    case addHeader(name: String, value: String)  // SMFIR_ADDHEADER 'h'
    /// Insert at `index` (0 is the top, as smfi_insheader counts).
    case insertHeader(index: UInt32, name: String, value: String)  // SMFIR_INSHEADER 'i'
    /// Change the `index`th header called `name` (1-based); an empty value deletes it.
    case changeHeader(index: UInt32, name: String, value: String)  // SMFIR_CHGHEADER 'm'
    /// One piece of the new body; the pieces in order make up the whole replacement.
    case replaceBody([UInt8])  // SMFIR_REPLBODY 'b'
    /// The new envelope sender, then its ESMTP arguments.
    case changeSender(String, arguments: [String])  // SMFIR_CHGFROM 'e'
    case quarantine(reason: String)  // SMFIR_QUARANTINE 'q'

    public var code: ResponseCode {
        switch self {
        case .addRecipient: .addRecipient
        case .addRecipientWithArguments: .addRecipientWithArguments
        case .deleteRecipient: .deleteRecipient
        case .addHeader: .addHeader
        case .insertHeader: .insertHeader
        case .changeHeader: .changeHeader
        case .replaceBody: .replaceBody
        case .changeSender: .changeSender
        case .quarantine: .quarantine
        }
    }

    /// The action the milter must have negotiated to send this.
    public var requiredAction: Actions {
        switch self {
        case .addRecipient: .addRecipients
        case .addRecipientWithArguments: .addRecipientsWithArguments
        case .deleteRecipient: .deleteRecipients
        case .addHeader, .insertHeader: .addHeaders
        case .changeHeader: .changeHeaders
        case .replaceBody: .changeBody
        case .changeSender: .changeSender
        case .quarantine: .quarantine
        }
    }
}

/// One milter-to-MTA frame.
public enum Response: Hashable, Sendable {
    case reply(Reply)
    case modification(Modification)
    /// Still working: restarts the MTA's timer, and the MTA keeps waiting.
    case progress  // SMFIR_PROGRESS 'p'
    case negotiate(Negotiation)  // SMFIC_OPTNEG 'O'
    /// A macro list outside negotiation; libmilter itself puts its lists in the
    /// negotiation answer instead. Laid out like one entry of that answer.
    case setSymbolList(MacroStage, [String])  // SMFIR_SETSYMLIST 'l'

    public var code: ResponseCode {
        switch self {
        case .reply(let reply): reply.code
        case .modification(let modification): modification.code
        case .progress: .progress
        case .negotiate: .optionNegotiation
        case .setSymbolList: .setSymbolList
        }
    }

    // MARK: Encoding

    public func frame() throws -> Frame {
        var writer = PayloadWriter(frame: code.cName)
        switch self {
        case .reply(.replyCode(let reply)):
            try writer.string(reply.text, field: "reply text")
        case .reply, .progress:
            break
        case .negotiate(let negotiation):
            try negotiation.encode(into: &writer)
        case .setSymbolList(let stage, let names):
            writer.uint32(stage.rawValue)
            try writer.string(names.joined(separator: " "), field: "macro list")
        case .modification(let modification):
            switch modification {
            case .addRecipient(let address), .deleteRecipient(let address):
                try writer.string(address, field: "recipient")
            case .addRecipientWithArguments(let address, let arguments):
                try writer.string(address, field: "recipient")
                try writer.strings(arguments, field: "ESMTP argument")
            case .changeSender(let address, let arguments):
                try writer.string(address, field: "sender")
                try writer.strings(arguments, field: "ESMTP argument")
            case .addHeader(let name, let value):
                try writer.string(name, field: "header name")
                try writer.string(value, field: "header value")
            case .insertHeader(let index, let name, let value), .changeHeader(let index, let name, let value):
                writer.uint32(index)
                try writer.string(name, field: "header name")
                try writer.string(value, field: "header value")
            case .replaceBody(let bytes):
                writer.raw(bytes)
            case .quarantine(let reason):
                try writer.string(reason, field: "reason")
            }
        }
        return Frame(code: code.rawValue, payload: writer.bytes)
    }

    // MARK: Decoding

    public init(_ frame: Frame) throws {
        guard let code = ResponseCode(rawValue: frame.code) else {
            throw ProtocolError.unknownCode(frame.code, expected: "milter response")
        }
        var reader = PayloadReader(frame.payload, frame: code.cName)
        switch code {
        case .continue: self = .reply(.continue)
        case .accept: self = .reply(.accept)
        case .reject: self = .reply(.reject)
        case .tempfail: self = .reply(.tempfail)
        case .discard: self = .reply(.discard)
        case .skip: self = .reply(.skip)
        case .connectionFailure: self = .reply(.connectionFailure)
        case .shutdown: self = .reply(.shutdown)
        case .progress: self = .progress
        case .replyCode:
            self = .reply(.replyCode(try SMTPReply(try reader.string("reply text"))))
        case .optionNegotiation:
            self = .negotiate(try Negotiation(decoding: &reader))
        case .setSymbolList:
            let number = try reader.uint32("macro stage")
            guard let stage = MacroStage(rawValue: number) else {
                throw reader.failure("unknown macro stage \(number)")
            }
            let list = try reader.string("macro list")
            self = .setSymbolList(stage, Negotiation.macroNames(list))
        case .addRecipient:
            self = .modification(.addRecipient(try reader.string("recipient")))
        case .addRecipientWithArguments:
            let address = try reader.string("recipient")
            self = .modification(.addRecipientWithArguments(address, arguments: try reader.strings("ESMTP argument")))
        case .deleteRecipient:
            self = .modification(.deleteRecipient(try reader.string("recipient")))
        case .changeSender:
            let address = try reader.string("sender")
            self = .modification(.changeSender(address, arguments: try reader.strings("ESMTP argument")))
        case .addHeader:
            let name = try reader.string("header name")
            self = .modification(.addHeader(name: name, value: try reader.string("header value")))
        case .insertHeader:
            let index = try reader.uint32("header index")
            let name = try reader.string("header name")
            self = .modification(.insertHeader(index: index, name: name, value: try reader.string("header value")))
        case .changeHeader:
            let index = try reader.uint32("header index")
            let name = try reader.string("header name")
            self = .modification(.changeHeader(index: index, name: name, value: try reader.string("header value")))
        case .replaceBody:
            self = .modification(.replaceBody(reader.rest()))
        case .quarantine:
            self = .modification(.quarantine(reason: try reader.string("reason")))
        }
        try reader.finish()
    }
}
