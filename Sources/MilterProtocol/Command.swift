/// What the MTA tells the milter (SMFIC_*), as typed values, with the payload layout of
/// each: encoders for the MTA side and decoders so a test milter can read them back.

/// One macro: a name as the MTA spells it (`j`, `{rcpt_addr}`) and its value.
public struct Macro: Hashable, Sendable, Codable {
    public var name: String
    public var value: String

    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// Where the SMTP client connected from, as SMFIC_CONNECT carries it.
public enum ClientAddress: Hashable, Sendable {
    case unknown  // SMFIA_UNKNOWN 'U': no port and no address follow
    case unix(path: String)  // SMFIA_UNIX 'L': the port field is present and 0
    case inet(String, port: UInt16)  // SMFIA_INET '4'
    case inet6(String, port: UInt16)  // SMFIA_INET6 '6'

    /// The family byte on the wire.
    public var family: UInt8 {
        switch self {
        case .unknown: 0x55  // 'U'
        case .unix: 0x4C  // 'L'
        case .inet: 0x34  // '4'
        case .inet6: 0x36  // '6'
        }
    }
}

/// One MTA-to-milter command.
public enum Command: Hashable, Sendable {
    case negotiate(Negotiation)  // SMFIC_OPTNEG 'O'
    /// Macros for the command with the given code, sent just before it.
    case macros(CommandCode, [Macro])  // SMFIC_MACRO 'D'
    case connect(hostname: String, address: ClientAddress)  // SMFIC_CONNECT 'C'
    case helo(String)  // SMFIC_HELO 'H'
    /// The sender as the client gave it (normally with `<>`), then its ESMTP arguments.
    case mail(sender: String, arguments: [String])  // SMFIC_MAIL 'M'
    /// The recipient as the client gave it (normally with `<>`), then its ESMTP arguments.
    case recipient(String, arguments: [String])  // SMFIC_RCPT 'R'
    case data  // SMFIC_DATA 'T'
    case header(name: String, value: String)  // SMFIC_HEADER 'L'
    case endOfHeaders  // SMFIC_EOH 'N'
    /// At most `MilterLimits.bodyChunkSize` bytes of body, CRLF line ends.
    case body([UInt8])  // SMFIC_BODY 'B'
    /// End of message. Postfix may put the last body bytes here instead of in a BODY frame.
    case endOfMessage([UInt8])  // SMFIC_BODYEOB 'E'
    case abort  // SMFIC_ABORT 'A'
    case quit  // SMFIC_QUIT 'Q'
    case quitNewConnection  // SMFIC_QUIT_NC 'K'
    /// An SMTP command the MTA did not recognise, as the client sent it.
    case unknown(String)  // SMFIC_UNKNOWN 'U'

    public var code: CommandCode {
        switch self {
        case .negotiate: .optionNegotiation
        case .macros: .macro
        case .connect: .connect
        case .helo: .helo
        case .mail: .mail
        case .recipient: .recipient
        case .data: .data
        case .header: .header
        case .endOfHeaders: .endOfHeaders
        case .body: .body
        case .endOfMessage: .endOfMessage
        case .abort: .abort
        case .quit: .quit
        case .quitNewConnection: .quitNewConnection
        case .unknown: .unknown
        }
    }

    /// The body cut into SMFIC_BODY commands of at most `chunkSize` bytes each, in order,
    /// with no byte lost. An empty body gives no commands.
    public static func bodyChunks(_ body: [UInt8], chunkSize: Int = MilterLimits.bodyChunkSize) -> [Command] {
        let size = max(1, chunkSize)
        return stride(from: 0, to: body.count, by: size).map { start in
            .body(Array(body[start..<(start + min(size, body.count - start))]))
        }
    }

    // MARK: Encoding

    public func frame() throws -> Frame {
        var writer = PayloadWriter(frame: code.cName)
        switch self {
        case .negotiate(let negotiation):
            try negotiation.encode(into: &writer)
        case .macros(let command, let macros):
            writer.byte(command.rawValue)
            for macro in macros {
                try writer.string(macro.name, field: "macro name")
                try writer.string(macro.value, field: "value of macro \(macro.name)")
            }
        case .connect(let hostname, let address):
            try writer.string(hostname, field: "hostname")
            writer.byte(address.family)
            switch address {
            case .unknown:
                break
            case .unix(let path):
                writer.uint16(0)
                try writer.string(path, field: "socket path")
            case .inet(let ip, let port), .inet6(let ip, let port):
                writer.uint16(port)
                try writer.string(ip, field: "address")
            }
        case .helo(let name):
            try writer.string(name, field: "HELO name")
        case .mail(let sender, let arguments):
            try writer.string(sender, field: "sender")
            try writer.strings(arguments, field: "ESMTP argument")
        case .recipient(let recipient, let arguments):
            try writer.string(recipient, field: "recipient")
            try writer.strings(arguments, field: "ESMTP argument")
        case .header(let name, let value):
            try writer.string(name, field: "header name")
            try writer.string(value, field: "header value")
        case .body(let bytes), .endOfMessage(let bytes):
            writer.raw(bytes)
        case .unknown(let line):
            try writer.string(line, field: "command")
        case .data, .endOfHeaders, .abort, .quit, .quitNewConnection:
            break
        }
        return Frame(code: code.rawValue, payload: writer.bytes)
    }

    // MARK: Decoding

    public init(_ frame: Frame) throws {
        guard let code = CommandCode(rawValue: frame.code) else {
            throw ProtocolError.unknownCode(frame.code, expected: "milter command")
        }
        var reader = PayloadReader(frame.payload, frame: code.cName)
        switch code {
        case .optionNegotiation:
            self = .negotiate(try Negotiation(decoding: &reader))
        case .macro:
            let byte = try reader.byte("command code")
            guard let command = CommandCode(rawValue: byte) else {
                throw reader.failure("macros for unknown command \(printable(byte))")
            }
            var macros: [Macro] = []
            while !reader.isAtEnd {
                let name = try reader.string("macro name")
                guard !reader.isAtEnd else { throw reader.failure("macro \(name) has no value") }
                macros.append(Macro(name, try reader.string("value of macro \(name)")))
            }
            self = .macros(command, macros)
        case .connect:
            let hostname = try reader.string("hostname")
            let family = try reader.byte("address family")
            switch family {
            case 0x55:
                self = .connect(hostname: hostname, address: .unknown)
            case 0x4C:
                _ = try reader.uint16("port")
                self = .connect(hostname: hostname, address: .unix(path: try reader.string("socket path")))
            case 0x34:
                let port = try reader.uint16("port")
                self = .connect(hostname: hostname, address: .inet(try reader.string("address"), port: port))
            case 0x36:
                let port = try reader.uint16("port")
                self = .connect(hostname: hostname, address: .inet6(try reader.string("address"), port: port))
            default:
                throw reader.failure("unknown address family \(printable(family))")
            }
        case .helo:
            self = .helo(try reader.string("HELO name"))
        case .mail:
            let sender = try reader.string("sender")
            self = .mail(sender: sender, arguments: try reader.strings("ESMTP argument"))
        case .recipient:
            let recipient = try reader.string("recipient")
            self = .recipient(recipient, arguments: try reader.strings("ESMTP argument"))
        case .header:
            let name = try reader.string("header name")
            self = .header(name: name, value: try reader.string("header value"))
        case .body:
            self = .body(reader.rest())
        case .endOfMessage:
            self = .endOfMessage(reader.rest())
        case .unknown:
            self = .unknown(try reader.string("command"))
        case .data: self = .data
        case .endOfHeaders: self = .endOfHeaders
        case .abort: self = .abort
        case .quit: self = .quit
        case .quitNewConnection: self = .quitNewConnection
        }
        try reader.finish()
    }
}
