/// The MTA side of a session against a scripted milter: order of steps, what negotiation
/// switches off, how each answer ends (or does not end) the session, and body chunking.

import Testing

@testable import MilterProtocol

/// A milter made of rules. Every frame the MTA sends goes through the wire form and back,
/// so encoders and decoders both run; steps the milter negotiated NR_* get no answer,
/// as with libmilter.
final class FakeMilter: FrameChannel {
    var negotiation = Negotiation(actions: .all, steps: [])
    /// The answers to one command, in order. Default: continue.
    var answer: (Command) -> [Response] = { _ in [.reply(.continue)] }
    /// Throw instead of answering once this many commands have arrived.
    var failAfter: Int?
    private(set) var received: [Command] = []
    private var pending: [Response] = []
    private var decoder = FrameDecoder()

    struct Hangup: Error, CustomStringConvertible {
        var description: String { "connection closed by the milter" }
    }

    func send(_ frames: [Frame]) throws {
        for frame in frames { decoder.append(try frame.encoded()) }
        for frame in try decoder.frames() {
            let command = try Command(frame)
            received.append(command)
            pending += respond(to: command)
        }
    }

    func receive() throws -> Frame {
        if let failAfter, received.count >= failAfter { throw Hangup() }
        guard !pending.isEmpty else { throw Hangup() }
        return try pending.removeFirst().frame()
    }

    private func respond(to command: Command) -> [Response] {
        let unanswered: ProtocolSteps? =
            switch command {
            case .negotiate: nil
            case .macros, .abort, .quit, .quitNewConnection: []
            case .connect: .noReplyConnect
            case .helo: .noReplyHelo
            case .mail: .noReplyMail
            case .recipient: .noReplyRecipient
            case .data: .noReplyData
            case .header: .noReplyHeader
            case .endOfHeaders: .noReplyEndOfHeaders
            case .body: .noReplyBody
            case .unknown: .noReplyUnknown
            case .endOfMessage: nil
            }
        if case .negotiate = command { return [.negotiate(negotiation)] }
        if let unanswered, unanswered.isEmpty || negotiation.steps.contains(unanswered) { return [] }
        return answer(command)
    }

    /// A fresh milter, negotiating the defaults, with the given answers.
    static func answering(_ answer: @escaping (Command) -> [Response]) -> FakeMilter {
        let milter = FakeMilter()
        milter.answer = answer
        return milter
    }

    /// The commands received, without macro frames.
    var events: [Command] { received.filter { if case .macros = $0 { false } else { true } } }
    var codes: String { String(decoding: events.map(\.code.rawValue), as: UTF8.self) }
    var macroFrames: [(CommandCode, [Macro])] {
        received.compactMap { if case .macros(let code, let macros) = $0 { (code, macros) } else { nil } }
    }
}

extension Transaction {
    static func sample(
        recipients: [String] = ["bob@example.org"],
        body: [UInt8] = Array("hello\r\n".utf8),
        macros: [Macro] = []
    ) -> Transaction {
        Transaction(
            sender: .init("alice@example.org"),
            recipients: recipients.map(Transaction.Address.init(parsing:)),
            message: MailMessage(
                headers: [HeaderField(name: "Subject", rawValue: " hi"), HeaderField(name: "X-Tab", rawValue: "\tx")],
                body: body
            ),
            macros: macros
        )
    }
}

@Suite struct ConversationTests {
    func run(_ transaction: Transaction = .sample(), _ milter: FakeMilter) -> Transcript {
        Conversation.run(transaction, over: milter)
    }

    @Test func sendsEveryStepInPostfixOrder() {
        let milter = FakeMilter()
        let transcript = run(.sample(recipients: ["a@x", "b@x"]), milter)
        #expect(milter.codes == "OCHMRRTLLNBEQ")
        #expect(milter.received.first == .negotiate(.postfixOffer))
        #expect(transcript.verdict == .accept)
        #expect(transcript.failure == nil)
        #expect(
            transcript.steps.map(\.event.name) == [
                "connect", "helo", "mail", "rcpt", "rcpt", "data", "header", "header", "eoh", "body", "eom", "quit",
            ]
        )
    }

    @Test func aBodyOf128000BytesGoesInChunksOfAtMost65535WithNoByteLost() {
        let body = (0..<128_000).map { UInt8(truncatingIfNeeded: $0 % 251) }
        let milter = FakeMilter()
        let transcript = run(.sample(body: body), milter)
        let chunks = milter.events.compactMap { if case .body(let bytes) = $0 { bytes } else { nil } }
        #expect(chunks.map(\.count) == [65_535, 62_465])
        #expect(chunks.allSatisfy { $0.count <= 65_535 })
        #expect(Array(chunks.joined()) == body)
        #expect(transcript.verdict == .accept)
    }

    @Test func bodyChunksCoverEveryByte() {
        #expect(Command.bodyChunks([]).isEmpty)
        #expect(Command.bodyChunks(Array(repeating: 1, count: 65_535)).count == 1)
        #expect(Command.bodyChunks(Array(repeating: 1, count: 65_536)).count == 2)
        let sizes = Command.bodyChunks(Array(repeating: 1, count: 10), chunkSize: 4).map {
            if case .body(let bytes) = $0 { bytes.count } else { 0 }
        }
        #expect(sizes == [4, 4, 2])
    }

    @Test func stepsNegotiatedAwayAreNotSentButTheirMacrosAre() {
        let milter = FakeMilter()
        milter.negotiation.steps = [.noConnect, .noHeaders, .noBody, .noData]
        let transcript = run(.sample(), milter)
        #expect(milter.codes == "OHMRNEQ")
        #expect(milter.macroFrames.map(\.0) == [.connect, .mail, .recipient])
        #expect(transcript.steps.first?.answer == .notSent(.noConnect))
        #expect(transcript.steps.filter { $0.answer == .notSent(.noHeaders) }.count == 2)
        #expect(transcript.verdict == .accept)
    }

    @Test func answersNegotiatedAwayAreNotAwaited() {
        let milter = FakeMilter()
        milter.negotiation.steps = [
            .noReplyConnect, .noReplyHelo, .noReplyMail, .noReplyRecipient, .noReplyData, .noReplyHeader,
            .noReplyEndOfHeaders, .noReplyBody,
        ]
        let transcript = run(.sample(), milter)
        #expect(milter.codes == "OCHMRTLLNBEQ")
        #expect(transcript.steps.dropLast(2).allSatisfy { if case .noReply = $0.answer { true } else { false } })
        #expect(transcript.verdict == .accept)
    }

    @Test func aRejectAtRcptRefusesThatRecipientOnly() throws {
        let milter = FakeMilter()
        let refusal = try SMTPReply("550 5.1.1 no such user")
        milter.answer = { command in
            if case .recipient("<bad@x>", _) = command { return [.reply(.replyCode(refusal))] }
            if case .recipient("<later@x>", _) = command { return [.reply(.tempfail)] }
            return [.reply(.continue)]
        }
        let transcript = run(.sample(recipients: ["a@x", "bad@x", "later@x", "b@x"]), milter)
        #expect(milter.codes == "OCHMRRRRTLLNBEQ")
        #expect(transcript.verdict == .accept)
        #expect(transcript.steps[4].answer == .reply(.replyCode(refusal)))
    }

    @Test func whenEveryRecipientIsRefusedTheMessageEnds() {
        let milter = FakeMilter()
        milter.answer = { command in
            if case .recipient("<later@x>", _) = command { return [.reply(.tempfail)] }
            if case .recipient = command { return [.reply(.reject)] }
            return [.reply(.continue)]
        }
        let permanent = run(.sample(recipients: ["a@x", "b@x"]), milter)
        #expect(milter.codes == "OCHMRRAQ")
        #expect(permanent.verdict == .reject)
        #expect(permanent.reason == "all recipients refused")

        let temporary = run(.sample(recipients: ["a@x", "later@x"]), FakeMilter.answering(milter.answer))
        #expect(temporary.verdict == .tempfail)
    }

    @Test func aRejectAtMailEndsTheTransactionWithAbort() {
        let milter = FakeMilter()
        milter.answer = { command in
            if case .mail = command { return [.reply(.reject)] }
            return [.reply(.continue)]
        }
        let transcript = run(.sample(), milter)
        #expect(milter.codes == "OCHMAQ")
        #expect(transcript.verdict == .reject)
        #expect(transcript.text().hasSuffix("mail <alice@example.org> -> reject\nabort\nquit\nverdict reject\n"))
    }

    @Test func acceptAtConnectEndsTheConnection() {
        let milter = FakeMilter()
        milter.answer = { _ in [.reply(.accept)] }
        let transcript = run(.sample(), milter)
        #expect(milter.codes == "OCQ")
        #expect(transcript.verdict == .accept)
        #expect(transcript.reason == "accepted at SMFIC_CONNECT: no more events for this connection")
    }

    @Test func acceptInsideTheMessageSkipsTheRestAndAborts() {
        let milter = FakeMilter()
        milter.answer = { command in command.code == .data ? [.reply(.accept)] : [.reply(.continue)] }
        let transcript = run(.sample(), milter)
        #expect(milter.codes == "OCHMRTAQ")
        #expect(transcript.verdict == .accept)
    }

    @Test func endOfMessageCollectsEveryModificationAndProgress() {
        let milter = FakeMilter()
        milter.answer = { command in
            guard command.code == .endOfMessage else { return [.reply(.continue)] }
            return [
                .progress, .modification(.addRecipient("<copy@x>")), .progress,
                .modification(.addHeader(name: "X-Split", value: "1")), .reply(.continue),
            ]
        }
        let transcript = run(.sample(), milter)
        let last = transcript.steps.last { $0.event == .endOfMessage }
        #expect(last?.progress == 2)
        #expect(transcript.modifications == [.addRecipient("<copy@x>"), .addHeader(name: "X-Split", value: "1")])
        #expect(transcript.verdict == .accept)
        #expect(transcript.warnings.isEmpty)
    }

    @Test func progressIsAcceptedAtAnyStep() {
        let milter = FakeMilter()
        milter.answer = { _ in [.progress, .progress, .reply(.continue)] }
        let transcript = run(.sample(), milter)
        #expect(transcript.verdict == .accept)
        #expect(transcript.steps.first?.progress == 2)
    }

    @Test func aModificationBeforeEndOfMessageIsAProtocolError() {
        let milter = FakeMilter()
        milter.answer = { command in
            command.code == .recipient
                ? [.modification(.addRecipient("<x@y>")), .reply(.continue)] : [.reply(.continue)]
        }
        let transcript = run(.sample(), milter)
        #expect(transcript.verdict == nil)
        #expect(
            transcript.failure
                == "SMFIR_ADDRCPT: sent in answer to SMFIC_RCPT; modifications are only allowed after SMFIC_BODYEOB"
        )
        #expect(transcript.steps.last?.answer == .missing)
    }

    @Test func aModificationThatWasNotNegotiatedIsAWarning() {
        let milter = FakeMilter()
        milter.negotiation.actions = [.addHeaders]
        milter.answer = { command in
            command.code == .endOfMessage
                ? [.modification(.deleteRecipient("<b@x>")), .reply(.continue)] : [.reply(.continue)]
        }
        let transcript = run(.sample(), milter)
        #expect(transcript.warnings == ["SMFIR_DELRCPT without negotiating SMFIF_DELRCPT"])
        #expect(transcript.verdict == .accept)
    }

    @Test func skipStopsTheBodyWhenNegotiated() {
        let milter = FakeMilter()
        milter.negotiation.steps = [.skip]
        milter.answer = { command in command.code == .body ? [.reply(.skip)] : [.reply(.continue)] }
        let transcript = run(.sample(body: Array(repeating: 0x41, count: 200_000)), milter)
        #expect(milter.codes == "OCHMRTLLNBEQ")
        #expect(transcript.verdict == .accept)

        let rude = FakeMilter.answering(milter.answer)
        let refused = run(.sample(body: Array(repeating: 0x41, count: 200_000)), rude)
        #expect(refused.failure == "SMFIR_SKIP: sent without negotiating SMFIP_SKIP")
    }

    @Test func skipOutsideTheBodyIsAProtocolError() {
        let milter = FakeMilter()
        milter.negotiation.steps = [.skip]
        milter.answer = { command in command.code == .helo ? [.reply(.skip)] : [.reply(.continue)] }
        let transcript = run(.sample(), milter)
        #expect(transcript.failure == "SMFIR_SKIP: sent in answer to SMFIC_HELO; it is only allowed after SMFIC_BODY")
    }

    @Test(arguments: [
        ("451 4.3.0 later", Transcript.Verdict.tempfail),
        ("550 5.7.1 no", .reject),
        ("421 4.3.2 bye", .tempfail),
    ])
    func replyCodesCountByTheirFirstDigit(text: String, verdict: Transcript.Verdict) throws {
        let reply = try SMTPReply(text)
        let milter = FakeMilter()
        milter.answer = { command in command.code == .endOfMessage ? [.reply(.replyCode(reply))] : [.reply(.continue)] }
        #expect(run(.sample(), milter).verdict == verdict)
    }

    @Test func aReplyCodeThatIsNotAFailureIsAProtocolError() throws {
        let reply = try SMTPReply("250 ok")
        let milter = FakeMilter()
        milter.answer = { command in command.code == .endOfMessage ? [.reply(.replyCode(reply))] : [.reply(.continue)] }
        #expect(run(.sample(), milter).failure == "SMFIR_REPLYCODE: reply \"250 ok\" is neither 4xx nor 5xx")
    }

    @Test func discardEndsTheMessage() {
        let milter = FakeMilter()
        milter.answer = { command in command.code == .recipient ? [.reply(.discard)] : [.reply(.continue)] }
        #expect(run(.sample(), milter).verdict == .discard)
        #expect(milter.codes == "OCHMRAQ")
    }

    @Test func negotiationIsChecked() {
        let newer = FakeMilter()
        newer.negotiation.version = 7
        #expect(run(.sample(), newer).failure == "SMFIC_OPTNEG: milter protocol version 7 is newer than the offered 6")

        let greedy = FakeMilter()
        greedy.negotiation.actions = [.addHeaders, .changeBody]
        let offer = Negotiation(actions: [.addHeaders], steps: .all)
        let transcript = Conversation.run(.sample(), over: greedy, offer: offer)
        #expect(transcript.failure == "SMFIC_OPTNEG: milter asks for actions that were not offered: CHGBODY")
        #expect(transcript.negotiated?.actions == [.addHeaders, .changeBody])
    }

    @Test func aMilterThatDoesNotNegotiateIsRefused() {
        final class Confused: FrameChannel {
            func send(_ frames: [Frame]) throws {}
            func receive() throws -> Frame { Frame(code: ResponseCode.continue.rawValue) }
        }
        let transcript = Conversation.run(.sample(), over: Confused())
        #expect(transcript.failure == "SMFIC_OPTNEG: milter answered with SMFIR_CONTINUE")
    }

    @Test func aHangupKeepsTheStepsSoFar() {
        let milter = FakeMilter()
        milter.failAfter = 6
        let transcript = run(.sample(), milter)
        #expect(transcript.verdict == nil)
        #expect(transcript.failure == "connection closed by the milter")
        #expect(transcript.steps.map(\.event.name) == ["connect", "helo", "mail"])
        #expect(transcript.steps.last?.answer == .missing)
    }

    @Test func macrosFollowPostfix() {
        let milter = FakeMilter()
        milter.negotiation.macroLists = [.recipient: ["{rcpt_addr}", "i", "{client_addr}"]]
        _ = run(
            .sample(
                recipients: ["a@x", "b@y"],
                macros: [Macro("i", "4AbC"), Macro("client_addr", "192.0.2.9"), Macro("{extra}", "e")]
            ),
            milter
        )
        let frames = milter.macroFrames
        #expect(frames.first?.0 == .connect)
        #expect(
            frames.first?.1 == [
                Macro("j", "localhost"), Macro("{daemon_name}", "localhost"), Macro("{daemon_addr}", "127.0.0.1"),
                Macro("v", "milter-test"), Macro("_", "unknown [127.0.0.1]"), Macro("{extra}", "e"),
            ]
        )
        let mail = frames.first { $0.0 == .mail }?.1
        #expect(
            mail == [
                Macro("{mail_addr}", "alice@example.org"), Macro("{mail_host}", "example.org"),
                Macro("{mail_mailer}", "smtp"),
            ]
        )
        let recipients = frames.filter { $0.0 == .recipient }.map(\.1)
        #expect(
            recipients == [
                [Macro("{rcpt_addr}", "a@x"), Macro("{client_addr}", "192.0.2.9")],
                [Macro("{rcpt_addr}", "b@y"), Macro("i", "4AbC"), Macro("{client_addr}", "192.0.2.9")],
            ]
        )
        #expect(frames.first { $0.0 == .endOfMessage }?.1 == [Macro("i", "4AbC")])
    }

    @Test func headerValuesLoseOneLeadingSpaceUnlessNegotiated() {
        let plain = FakeMilter()
        _ = run(.sample(), plain)
        #expect(
            plain.events.filter { $0.code == .header } == [
                .header(name: "Subject", value: "hi"), .header(name: "X-Tab", value: "\tx"),
            ]
        )

        let spaced = FakeMilter()
        spaced.negotiation.steps = [.headerLeadingSpace]
        _ = run(.sample(), spaced)
        #expect(
            spaced.events.filter { $0.code == .header } == [
                .header(name: "Subject", value: " hi"), .header(name: "X-Tab", value: "\tx"),
            ]
        )
    }

    @Test func aMilterThatHangsUpAfterItsVerdictOnlyEarnsAWarning() {
        final class Abrupt: FrameChannel {
            var sent = 0
            func send(_ frames: [Frame]) throws {
                sent += 1
                if sent > 2 { throw FakeMilter.Hangup() }
            }
            func receive() throws -> Frame {
                sent == 1
                    ? try Response.negotiate(Negotiation(actions: [], steps: [])).frame()
                    : try Response.reply(.reject).frame()
            }
        }
        let transcript = Conversation.run(.sample(), over: Abrupt())
        #expect(transcript.verdict == .reject)
        #expect(transcript.warnings == ["closing the session: connection closed by the milter"])
    }
}
