/// Fuzz target `milter`: the milter protocol codec (frames, commands, responses) and the MTA side
/// of a session (`Conversation`) against a milter that answers with the input's frames.
///
/// Input: a byte stream, read as milter frames. The same bytes are also read as an RFC 5322
/// message and as the command-line spellings the protocol module parses.
///
/// Properties:
///   1. decoding never traps on any bytes; the stream cut in two at any point gives the same
///      frames and the same error as in one piece;
///   2. a frame that decodes as a command (or a response) encodes again without error, and that
///      decodes to the same value; the bytes are the same where the format allows: an ASCII
///      payload (no string repaired as UTF-8), and no field the decoder drops or rewrites (the port of a unix-socket
///      connect, macro lists, which are re-joined with blanks);
///   3. a whole session run against these frames as the milter's answers never traps and renders
///      its transcript;
///   4. a parsed message's header names are printable and colon-free, its body made of CRLF lines;
///   5. a payload read in place (`PayloadFields`, as the native engine reads commands) gives the
///      fields the codec gives: a recipient and its arguments, each macro's value by its name.

import MilterProtocol

struct Replay: FrameChannel {
    var answers: [Frame]
    struct Hangup: Error {}

    mutating func send(_ frames: [Frame]) throws {
        for frame in frames { _ = try frame.encoded() }
    }

    mutating func receive() throws -> Frame {
        guard !answers.isEmpty else { throw Hangup() }
        return answers.removeFirst()
    }
}

/// Frames and the decoder's error, with the bytes given in the pieces `cuts` makes.
func decode(_ bytes: [UInt8], cuts: [Int]) -> ([Frame], String?) {
    var decoder = FrameDecoder(maximumLength: 65_536)
    var frames: [Frame] = []
    var start = 0
    for end in cuts + [bytes.count] {
        decoder.append(bytes[start..<end])
        start = end
        do {
            frames += try decoder.frames()
        } catch {
            return (frames, "\(error)")
        }
    }
    return (frames, nil)
}

/// Whether every string field of a payload keeps its bytes through a String: true when they are
/// all ASCII. (Valid UTF-8 as a whole is not enough: a binary field's last byte and a string's first
/// can make one valid sequence of two invalid halves.)
func stringsKeepTheirBytes(_ payload: [UInt8]) -> Bool {
    payload.allSatisfy { $0 < 0x80 }
}

/// Decode, encode, decode: the same value, and the same bytes when `exact` says the format keeps
/// them (and the payload is ASCII, so no string field was repaired as UTF-8).
func checkRoundTrip<Value: Equatable>(
    _ frame: Frame, decode: (Frame) throws -> Value, encode: (Value) throws -> Frame, exact: (Value) -> Bool
) {
    guard let value = try? decode(frame) else { return }
    let again: Frame
    do {
        again = try encode(value)
    } catch {
        return require(false, "\(value) decoded but does not encode: \(error)")
    }
    require((try? decode(again)) == value, "\(value) encodes to \(again), which decodes otherwise")
    if stringsKeepTheirBytes(frame.payload), exact(value) {
        require(again == frame, "\(value): \(frame.payload) encodes back as \(again.payload)")
    }
}

func checkCodec(_ frame: Frame) {
    checkRoundTrip(
        frame, decode: Command.init, encode: { try $0.frame() },
        exact: { command in
            switch command {
            case .connect(_, .unix): false  // the port field is not kept
            case .negotiate(let negotiation): negotiation.macroLists.isEmpty
            default: true
            }
        })
    checkRoundTrip(
        frame, decode: Response.init, encode: { try $0.frame() },
        exact: { response in
            switch response {
            case .setSymbolList: false  // names are re-joined with blanks
            case .negotiate(let negotiation): negotiation.macroLists.isEmpty
            default: true
            }
        })
}

/// Property 5 for one frame.
func checkFields(_ frame: Frame) {
    guard let command = try? Command(frame) else { return }
    frame.payload.withUnsafeBytes { payload in
        switch command {
        case .recipient(let recipient, let arguments):
            var fields = PayloadFields(payload)
            var read: [String] = []
            while let field = fields.string() { read.append(field) }
            require(read == [recipient] + arguments, "fields \(read) of a RCPT decoded as \(recipient) \(arguments)")
            require(fields.isAtEnd, "RCPT fields end before the payload")
        case .macros(_, let macros) where stringsKeepTheirBytes(frame.payload):
            let list = UnsafeRawBufferPointer(rebasing: payload.dropFirst())
            for macro in macros {
                let expected = macros.first { sameMacro($0.name, macro.name) }?.value
                let found = PayloadFields.macro(macro.name, in: list)
                require(
                    found == expected,
                    "macro \(macro.name): \(found ?? "nil") read in place, \(expected ?? "nil") decoded")
            }
        default:
            break
        }
    }
}

/// libmilter's rule: a name matches itself, and `x` matches `{x}` for one character.
func sameMacro(_ left: String, _ right: String) -> Bool {
    func bare(_ name: String) -> String? {
        let bytes = Array(name.utf8)
        if bytes.count == 1 { return name }
        if bytes.count == 3, bytes[0] == UInt8(ascii: "{"), bytes[2] == UInt8(ascii: "}") {
            return String(decoding: bytes[1...1], as: UTF8.self)
        }
        return nil
    }
    if Array(left.utf8) == Array(right.utf8) { return true }
    guard let one = bare(left), let other = bare(right) else { return false }
    return Array(one.utf8) == Array(other.utf8)
}

let transaction = Transaction(
    clientName: "client.example.net", client: .inet("192.0.2.1", port: 40000), helo: "client.example.net",
    sender: Transaction.Address("alice@example.org", arguments: ["SIZE=100"]),
    recipients: [
        Transaction.Address("bob@example.org", arguments: ["NOTIFY=NEVER"]), Transaction.Address("carol@example.net"),
    ],
    message: MailMessage(parsing: Array("From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n".utf8)))

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = input(data, size)
    let (frames, error) = decode(bytes, cuts: [])
    let cut = bytes.isEmpty ? 0 : Int(bytes[0]) % (bytes.count + 1)
    let (framesInPieces, errorInPieces) = decode(bytes, cuts: [cut])
    require(frames == framesInPieces && error == errorInPieces, "cut at \(cut): other frames or another error")
    for frame in frames {
        checkCodec(frame)
        checkFields(frame)
    }
    let transcript = Conversation.run(transaction, over: Replay(answers: frames))
    _ = transcript.text(macros: true)
    let transcripts = Conversation.run(messages: [transaction, transaction], over: Replay(answers: frames))
    require(transcripts.count == 2, "two messages gave \(transcripts.count) transcripts")

    let message = MailMessage(parsing: bytes)
    for header in message.headers {
        require(
            !header.name.isEmpty && header.name.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && $0 != 0x3A },
            "header name \(header.name.debugDescription)")
    }
    require(message.body.isEmpty || message.body.suffix(2) == [0x0D, 0x0A], "body does not end in CRLF")
    let line = String(decoding: bytes.prefix(300), as: UTF8.self)
    _ = Transaction.Address(parsing: line)
    _ = try? MilterEndpoint(parsing: line)
    _ = try? ClientAddress(parsing: line)
    _ = try? Macro(assignment: line)
    return 0
}
