/// Typed commands and responses: every one survives encode → decode, and every malformed
/// payload is refused with an error that names the frame and the field, never a trap.

import Testing

@testable import MilterProtocol

@Suite struct CodecTests {
    @Test(arguments: Samples.commands)
    func everyCommandRoundTrips(command: Command) throws {
        let frame = try command.frame()
        #expect(frame.code == command.code.rawValue)
        #expect(try Command(frame) == command)
    }

    @Test func everyResponseRoundTrips() throws {
        for response in try Samples.responses() {
            let frame = try response.frame()
            #expect(frame.code == response.code.rawValue)
            #expect(try Response(frame) == response)
        }
    }

    @Test func everyCodeHasItsLibmilterName() {
        #expect(CommandCode.allCases.allSatisfy { $0.cName.hasPrefix("SMFIC_") })
        #expect(ResponseCode.allCases.allSatisfy { $0.cName.hasPrefix("SMFIR_") || $0 == .optionNegotiation })
        #expect(CommandCode.recipient.rawValue == UInt8(ascii: "R"))
        #expect(ResponseCode.addRecipientWithArguments.rawValue == UInt8(ascii: "2"))
    }

    @Test func connectLayoutMatchesLibmilter() throws {
        let frame = try Command.connect(hostname: "h", address: .inet("1.2.3.4", port: 25)).frame()
        #expect(frame.payload == Array("h\0".utf8) + [0x34, 0x00, 0x19] + Array("1.2.3.4\0".utf8))
        let unknown = try Command.connect(hostname: "h", address: .unknown).frame()
        #expect(unknown.payload == Array("h\0U".utf8))
    }

    @Test func negotiationLayoutMatchesLibmilter() throws {
        let frame = try Command.negotiate(.postfixOffer).frame()
        #expect(frame.payload == [0, 0, 0, 6, 0, 0, 0x01, 0xFF, 0, 0x1F, 0xFF, 0xFF])
        let answer = try Response.negotiate(
            Negotiation(
                version: 6,
                actions: [.addRecipients],
                steps: [],
                macroLists: [.recipient: ["{rcpt_addr}", "i"]]
            )
        ).frame()
        #expect(answer.payload == [0, 0, 0, 6, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 3] + Array("{rcpt_addr} i\0".utf8))
    }

    @Test func optionSetsMatchMfdef() {
        #expect(Actions.all.rawValue == 0x1FF)
        #expect(ProtocolSteps.all.rawValue == 0x1F_FFFF)
        #expect(Actions.all.names.count == 9)
        #expect(ProtocolSteps.all.names.count == 21)
        #expect(ProtocolSteps(rawValue: 0x4000_0080).names == ["NR_HDR", "0x40000000"])
    }

    // MARK: Malformed input

    static let malformedResponses: [(UInt8, [UInt8], ProtocolError)] = [
        (0x68, Array("X-Foo".utf8), .missingTerminator(frame: "SMFIR_ADDHEADER", field: "header name")),
        (0x68, Array("X-Foo\0".utf8), .truncated(frame: "SMFIR_ADDHEADER", field: "header value")),
        (0x68, Array("X-Foo\0bar".utf8), .missingTerminator(frame: "SMFIR_ADDHEADER", field: "header value")),
        (0x6D, [0, 0, 1], .truncated(frame: "SMFIR_CHGHEADER", field: "header index")),
        (0x69, [0, 0, 0, 1] + Array("X\0".utf8), .truncated(frame: "SMFIR_INSHEADER", field: "header value")),
        (0x2B, [], .truncated(frame: "SMFIR_ADDRCPT", field: "recipient")),
        (0x2B, Array("<a@b>\0x".utf8), .trailingBytes(frame: "SMFIR_ADDRCPT", count: 1)),
        (
            0x32, Array("<a@b>\0NOTIFY=NEVER".utf8),
            .missingTerminator(frame: "SMFIR_ADDRCPT_PAR", field: "ESMTP argument")
        ),
        (0x2D, Array("<a@b>".utf8), .missingTerminator(frame: "SMFIR_DELRCPT", field: "recipient")),
        (0x65, [], .truncated(frame: "SMFIR_CHGFROM", field: "sender")),
        (0x71, [], .truncated(frame: "SMFIR_QUARANTINE", field: "reason")),
        (0x63, [1], .trailingBytes(frame: "SMFIR_CONTINUE", count: 1)),
        (0x70, [0, 0], .trailingBytes(frame: "SMFIR_PROGRESS", count: 2)),
        (0x79, Array("550 text".utf8), .missingTerminator(frame: "SMFIR_REPLYCODE", field: "reply text")),
        (
            0x79, Array("55\0".utf8),
            .invalidValue(frame: "SMFIR_REPLYCODE", reason: "reply \"55\" does not start with a three-digit code")
        ),
        (
            0x79, Array("550x\0".utf8),
            .invalidValue(frame: "SMFIR_REPLYCODE", reason: "reply \"550x\" has no space or hyphen after its code")
        ),
        (0x4F, Array(repeating: 0, count: 11), .truncated(frame: "SMFIC_OPTNEG", field: "protocol steps")),
        (
            0x4F, Array(repeating: 0, count: 12) + [0, 0, 0, 9] + Array("i\0".utf8),
            .invalidValue(frame: "SMFIC_OPTNEG", reason: "unknown macro stage 9")
        ),
        (0x4F, Array(repeating: 0, count: 12) + [0, 0, 0, 3], .truncated(frame: "SMFIC_OPTNEG", field: "macro list")),
        (0x4F, Array(repeating: 0, count: 12) + [0, 0], .truncated(frame: "SMFIC_OPTNEG", field: "macro stage")),
        (
            0x4F, Array(repeating: 0, count: 12) + [0, 0, 0, 3, 0x69, 0, 0, 0, 0, 3, 0x69, 0],
            .invalidValue(frame: "SMFIC_OPTNEG", reason: "macro list for SMFIM_ENVRCPT given twice")
        ),
        (
            0x6C, [0, 0, 0, 7] + Array("i\0".utf8),
            .invalidValue(frame: "SMFIR_SETSYMLIST", reason: "unknown macro stage 7")
        ),
        (0x5A, [], .unknownCode(0x5A, expected: "milter response")),
    ]

    @Test func malformedResponsesAreRefused() {
        for (code, payload, expected) in CodecTests.malformedResponses {
            #expect(throws: expected, "\(printable(code)) \(payload)") {
                try Response(Frame(code: code, payload: payload))
            }
        }
    }

    static let malformedCommands: [(UInt8, [UInt8], ProtocolError)] = [
        (0x44, [], .truncated(frame: "SMFIC_MACRO", field: "command code")),
        (0x44, [0x43] + Array("j\0".utf8), .invalidValue(frame: "SMFIC_MACRO", reason: "macro j has no value")),
        (0x44, [0x5A], .invalidValue(frame: "SMFIC_MACRO", reason: "macros for unknown command 'Z'")),
        (0x43, Array("host\0".utf8), .truncated(frame: "SMFIC_CONNECT", field: "address family")),
        (0x43, Array("host\0".utf8) + [0x34, 0], .truncated(frame: "SMFIC_CONNECT", field: "port")),
        (
            0x43, Array("host\0".utf8) + [0x34, 0, 25] + Array("1.2.3.4".utf8),
            .missingTerminator(frame: "SMFIC_CONNECT", field: "address")
        ),
        (0x43, Array("host\0X".utf8), .invalidValue(frame: "SMFIC_CONNECT", reason: "unknown address family 'X'")),
        (0x4D, [], .truncated(frame: "SMFIC_MAIL", field: "sender")),
        (0x52, Array("<a@b>\0SIZE".utf8), .missingTerminator(frame: "SMFIC_RCPT", field: "ESMTP argument")),
        (0x4C, Array("Subject\0".utf8), .truncated(frame: "SMFIC_HEADER", field: "header value")),
        (0x4E, [1], .trailingBytes(frame: "SMFIC_EOH", count: 1)),
        (0x48, Array("a\0b\0".utf8), .trailingBytes(frame: "SMFIC_HELO", count: 2)),
        (0x00, [], .unknownCode(0x00, expected: "milter command")),
    ]

    @Test func malformedCommandsAreRefused() {
        for (code, payload, expected) in CodecTests.malformedCommands {
            #expect(throws: expected, "\(printable(code)) \(payload)") {
                try Command(Frame(code: code, payload: payload))
            }
        }
    }

    @Test func errorsSayWhichFrameAndField() {
        #expect(
            ProtocolError.missingTerminator(frame: "SMFIR_ADDHEADER", field: "header value").description
                == "SMFIR_ADDHEADER: header value is missing its NUL terminator"
        )
        #expect(
            ProtocolError.truncated(frame: "SMFIR_CHGHEADER", field: "header index").description
                == "SMFIR_CHGHEADER: payload too short for header index"
        )
        #expect(
            ProtocolError.unknownCode(0x07, expected: "milter response").description
                == "unknown milter response code 0x07"
        )
    }

    /// Every prefix of every valid payload, and every valid payload with junk after it,
    /// either decodes or throws; none traps.
    @Test func truncatedAndPaddedPayloadsNeverTrap() throws {
        let frames = try Samples.commands.map { try $0.frame() } + Samples.responses().map { try $0.frame() }
        for frame in frames {
            for cut in 0...frame.payload.count {
                let variants = [Array(frame.payload[..<cut]), frame.payload + [0xFF, 0x00, 0x41]]
                for payload in variants {
                    _ = try? Command(Frame(code: frame.code, payload: payload))
                    _ = try? Response(Frame(code: frame.code, payload: payload))
                }
            }
        }
    }

    /// Random frames with every code byte: decoding may fail but must not trap.
    @Test func randomPayloadsNeverTrap() {
        var random = SplitMix(seed: 0x5EED)
        for _ in 0..<20_000 {
            let code = UInt8(truncatingIfNeeded: random.next())
            let length = Int(random.next() % 40)
            let payload = (0..<length).map { _ in
                // Mostly small values so NULs and short strings are common.
                UInt8(truncatingIfNeeded: random.next() % 4 == 0 ? 0 : random.next())
            }
            _ = try? Command(Frame(code: code, payload: payload))
            _ = try? Response(Frame(code: code, payload: payload))
        }
    }

    @Test func stringsWithNULAreRefusedOnEncode() {
        #expect(throws: ProtocolError.embeddedNUL(frame: "SMFIC_HEADER", field: "header value")) {
            try Command.header(name: "X", value: "a\0b").frame()
        }
        #expect(throws: ProtocolError.embeddedNUL(frame: "SMFIR_ADDRCPT", field: "recipient")) {
            try Response.modification(.addRecipient("a\0b")).frame()
        }
    }

    @Test func invalidUTF8IsReplacedNotTrapped() throws {
        let response = try Response(Frame(code: 0x68, payload: [0x58, 0, 0xFF, 0xFE, 0]))
        #expect(response == .modification(.addHeader(name: "X", value: "\u{FFFD}\u{FFFD}")))
    }
}

/// A small deterministic generator, so a failing random case can be replayed.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
