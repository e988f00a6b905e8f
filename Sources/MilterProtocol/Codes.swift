/// The one-byte codes of the milter protocol, version 6, in both directions, and the
/// fixed sizes both sides agree on. Every constant carries its libmilter name (`mfdef.h`)
/// in a trailing comment, so a reader can grep the C sources with it.
///
/// This file owns names and numbers only; the payload layouts live in `Command.swift`
/// and `Response.swift`.

/// Sizes both ends of a milter connection assume.
public enum MilterLimits {
    /// The protocol version this package speaks and offers.
    public static let protocolVersion: UInt32 = 6  // SMFI_PROT_VERSION
    /// The largest body chunk an MTA sends in one SMFIC_BODY frame.
    public static let bodyChunkSize = 65_535  // MILTER_CHUNK_SIZE
    /// The largest payload libmilter accepts without SMFIP_MDS_* negotiation.
    public static let defaultDataSize = 65_535  // MILTER_MAX_DATA_SIZE
    /// The largest payload any negotiation can allow.
    public static let largestDataSize = 1_048_575  // MILTER_MDS_1M
}

/// A command the MTA sends to the milter.
public enum CommandCode: UInt8, CaseIterable, Sendable, Codable {
    case abort = 0x41  // SMFIC_ABORT 'A'
    case body = 0x42  // SMFIC_BODY 'B'
    case connect = 0x43  // SMFIC_CONNECT 'C'
    case macro = 0x44  // SMFIC_MACRO 'D'
    case endOfMessage = 0x45  // SMFIC_BODYEOB 'E'
    case helo = 0x48  // SMFIC_HELO 'H'
    case quitNewConnection = 0x4B  // SMFIC_QUIT_NC 'K'
    case header = 0x4C  // SMFIC_HEADER 'L'
    case mail = 0x4D  // SMFIC_MAIL 'M'
    case endOfHeaders = 0x4E  // SMFIC_EOH 'N'
    case optionNegotiation = 0x4F  // SMFIC_OPTNEG 'O'
    case quit = 0x51  // SMFIC_QUIT 'Q'
    case recipient = 0x52  // SMFIC_RCPT 'R'
    case data = 0x54  // SMFIC_DATA 'T'
    case unknown = 0x55  // SMFIC_UNKNOWN 'U'

    /// The libmilter name, for diagnostics: `SMFIC_RCPT`.
    public var cName: String {
        switch self {
        case .abort: "SMFIC_ABORT"
        case .body: "SMFIC_BODY"
        case .connect: "SMFIC_CONNECT"
        case .macro: "SMFIC_MACRO"
        case .endOfMessage: "SMFIC_BODYEOB"
        case .helo: "SMFIC_HELO"
        case .quitNewConnection: "SMFIC_QUIT_NC"
        case .header: "SMFIC_HEADER"
        case .mail: "SMFIC_MAIL"
        case .endOfHeaders: "SMFIC_EOH"
        case .optionNegotiation: "SMFIC_OPTNEG"
        case .quit: "SMFIC_QUIT"
        case .recipient: "SMFIC_RCPT"
        case .data: "SMFIC_DATA"
        case .unknown: "SMFIC_UNKNOWN"
        }
    }
}

/// A response the milter sends to the MTA.
public enum ResponseCode: UInt8, CaseIterable, Sendable, Codable {
    case addRecipient = 0x2B  // SMFIR_ADDRCPT '+'
    case deleteRecipient = 0x2D  // SMFIR_DELRCPT '-'
    case addRecipientWithArguments = 0x32  // SMFIR_ADDRCPT_PAR '2'
    case shutdown = 0x34  // SMFIR_SHUTDOWN '4'
    case optionNegotiation = 0x4F  // SMFIC_OPTNEG 'O' (the milter answers with the same code)
    case accept = 0x61  // SMFIR_ACCEPT 'a'
    case replaceBody = 0x62  // SMFIR_REPLBODY 'b'
    case `continue` = 0x63  // SMFIR_CONTINUE 'c'
    case discard = 0x64  // SMFIR_DISCARD 'd'
    case changeSender = 0x65  // SMFIR_CHGFROM 'e'
    case connectionFailure = 0x66  // SMFIR_CONN_FAIL 'f'
    case addHeader = 0x68  // SMFIR_ADDHEADER 'h'
    case insertHeader = 0x69  // SMFIR_INSHEADER 'i'
    case setSymbolList = 0x6C  // SMFIR_SETSYMLIST 'l'
    case changeHeader = 0x6D  // SMFIR_CHGHEADER 'm'
    case progress = 0x70  // SMFIR_PROGRESS 'p'
    case quarantine = 0x71  // SMFIR_QUARANTINE 'q'
    case reject = 0x72  // SMFIR_REJECT 'r'
    case skip = 0x73  // SMFIR_SKIP 's'
    case tempfail = 0x74  // SMFIR_TEMPFAIL 't'
    case replyCode = 0x79  // SMFIR_REPLYCODE 'y'

    /// The libmilter name, for diagnostics: `SMFIR_ADDRCPT`.
    public var cName: String {
        switch self {
        case .addRecipient: "SMFIR_ADDRCPT"
        case .deleteRecipient: "SMFIR_DELRCPT"
        case .addRecipientWithArguments: "SMFIR_ADDRCPT_PAR"
        case .shutdown: "SMFIR_SHUTDOWN"
        case .optionNegotiation: "SMFIC_OPTNEG"
        case .accept: "SMFIR_ACCEPT"
        case .replaceBody: "SMFIR_REPLBODY"
        case .continue: "SMFIR_CONTINUE"
        case .discard: "SMFIR_DISCARD"
        case .changeSender: "SMFIR_CHGFROM"
        case .connectionFailure: "SMFIR_CONN_FAIL"
        case .addHeader: "SMFIR_ADDHEADER"
        case .insertHeader: "SMFIR_INSHEADER"
        case .setSymbolList: "SMFIR_SETSYMLIST"
        case .changeHeader: "SMFIR_CHGHEADER"
        case .progress: "SMFIR_PROGRESS"
        case .quarantine: "SMFIR_QUARANTINE"
        case .reject: "SMFIR_REJECT"
        case .skip: "SMFIR_SKIP"
        case .tempfail: "SMFIR_TEMPFAIL"
        case .replyCode: "SMFIR_REPLYCODE"
        }
    }
}

/// The protocol stage a macro list belongs to, as numbered in option negotiation.
///
/// The MTA sends each stage's macros in an SMFIC_MACRO frame tagged with the command
/// code of that stage, just before the command itself.
public enum MacroStage: UInt32, CaseIterable, Sendable, Codable, Comparable {
    case connect = 0  // SMFIM_CONNECT
    case helo = 1  // SMFIM_HELO
    case mail = 2  // SMFIM_ENVFROM
    case recipient = 3  // SMFIM_ENVRCPT
    case data = 4  // SMFIM_DATA
    case endOfMessage = 5  // SMFIM_EOM
    case endOfHeaders = 6  // SMFIM_EOH

    /// The command whose SMFIC_MACRO frame carries this stage's macros.
    public var command: CommandCode {
        switch self {
        case .connect: .connect
        case .helo: .helo
        case .mail: .mail
        case .recipient: .recipient
        case .data: .data
        case .endOfMessage: .endOfMessage
        case .endOfHeaders: .endOfHeaders
        }
    }

    /// The stage whose macros precede `command`, if that command has any.
    public init?(command: CommandCode) {
        guard let stage = MacroStage.allCases.first(where: { $0.command == command }) else { return nil }
        self = stage
    }

    public var cName: String {
        switch self {
        case .connect: "SMFIM_CONNECT"
        case .helo: "SMFIM_HELO"
        case .mail: "SMFIM_ENVFROM"
        case .recipient: "SMFIM_ENVRCPT"
        case .data: "SMFIM_DATA"
        case .endOfMessage: "SMFIM_EOM"
        case .endOfHeaders: "SMFIM_EOH"
        }
    }

    public static func < (lhs: MacroStage, rhs: MacroStage) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// Renders a code byte the way diagnostics show it: `'R'` or `0x07`.
func printable(_ byte: UInt8) -> String {
    (0x21...0x7E).contains(byte) ? "'\(Character(Unicode.Scalar(byte)))'" : hex(byte)
}

func hex(_ byte: UInt8) -> String {
    let digits = Array("0123456789ABCDEF")
    return "0x\(digits[Int(byte >> 4)])\(digits[Int(byte & 0x0F)])"
}
