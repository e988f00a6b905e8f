/// The MTA side of one milter session, in the order and with the rules Postfix 3.7 follows
/// (`milter8.c`): negotiate, connect, helo, mail, rcpt…, data, header…, eoh, body…, eom,
/// then abort (if the transaction stopped early) and quit. It does no I/O of its own: the
/// frames go through a `FrameChannel`, a socket in MilterClient or a fake milter in tests.
///
/// Rules kept here:
/// - A step the milter negotiated away (SMFIP_NO*) is not sent, but its macros still are.
/// - A step with SMFIP_NR_* is sent and not waited for.
/// - SMFIR_PROGRESS is accepted while waiting for any answer; modifications only after
///   SMFIC_BODYEOB, where every one is collected until the final reply.
/// - The first answer that is not `continue` ends the session, except at RCPT, where reject
///   and tempfail refuse that recipient only; when every recipient is refused, the MTA
///   refuses DATA and the message ends there.
/// - `accept` before end of message means "no more events": the message goes through as is.
/// - SMFIR_SKIP after a body chunk stops the body; it is an error anywhere else, or when
///   the milter did not negotiate SMFIP_SKIP.
///
/// Errors (a malformed frame, an answer that does not fit, a broken channel) end the
/// session; they land in `Transcript.failure`, and the steps done so far stay recorded.
///
/// One connection may carry several messages (`run(messages:…)`), as one SMTP session does:
/// negotiate, connect and helo once, then each message's mail…eom, with SMFIC_ABORT between
/// messages (Postfix's `mail_reset` sends it after every transaction, finished or not).

/// Carries whole frames to and from one milter.
public protocol FrameChannel {
    /// Writes the frames in order, preferably in one write. A channel may also keep them until
    /// the next `receive` or `flush`.
    mutating func send(_ frames: [Frame]) throws
    /// Writes everything sent and not yet written, before waiting for one whole frame.
    mutating func receive() throws -> Frame
    /// Writes everything sent and not yet written.
    mutating func flush() throws
}

extension FrameChannel {
    /// For channels that write every `send` at once.
    public mutating func flush() throws {}
}

public struct Conversation<Channel: FrameChannel> {
    /// A bound on answers to one command, so a milter cannot keep the MTA reading forever.
    public static var maximumResponsesPerStep: Int { 100_000 }

    private var channel: Channel
    /// The message being told; connection-level values come from the first one.
    private var transaction: Transaction
    private var transcript: Transcript
    private var actions: Actions = []
    private var steps: ProtocolSteps = []
    /// The macro lists in force once negotiation is done.
    private var macroPlan = MacroPlan.postfix

    /// Runs the whole session and returns its record; never throws.
    public static func run(
        _ transaction: Transaction,
        over channel: Channel,
        offer: Negotiation = .postfixOffer
    ) -> Transcript {
        var conversation = Conversation(
            channel: channel,
            transaction: transaction,
            transcript: Transcript(offer: offer)
        )
        do {
            let ending = try conversation.session()
            conversation.close(after: ending)
        } catch {
            conversation.transcript.failure = String(describing: error)
        }
        return conversation.transcript
    }

    /// Runs one session that carries `transactions` one after the other, and hands each
    /// message's transcript to `finished` as soon as that message is done (so a caller can
    /// time it). The connection-level values (client, HELO, connect macros) are the first
    /// transaction's. The first transcript holds the negotiation, connect and helo steps;
    /// every transcript holds the negotiation result; the last one holds quit.
    ///
    /// When the connection is accepted or refused before any message (at connect or helo),
    /// every message gets that verdict without being sent, as Postfix keeps a connection-level
    /// answer for the whole SMTP session. When the session fails, the message it failed in
    /// and every later one carry the failure.
    ///
    /// - Returns: one transcript per transaction, in order.
    public static func run(
        messages transactions: [Transaction],
        over channel: Channel,
        offer: Negotiation = .postfixOffer,
        finished: (Int, Transcript) -> Void = { _, _ in }
    ) -> [Transcript] {
        guard let first = transactions.first else { return [] }
        var conversation = Conversation(channel: channel, transaction: first, transcript: Transcript(offer: offer))
        var done: [Transcript] = []
        func finish(_ transcript: Transcript) {
            finished(done.count, transcript)
            done.append(transcript)
        }
        do {
            if let refusal = try conversation.openConnection() {
                conversation.close(after: refusal)
                let refused = conversation.transcript
                finish(refused)
                while done.count < transactions.count {
                    var unsent = Transcript(offer: offer)
                    unsent.negotiated = refused.negotiated
                    unsent.verdict = refused.verdict
                    let why = refused.reason ?? refused.verdict?.rawValue ?? "no verdict"
                    unsent.reason = "not sent: the connection ended with \(why)"
                    finish(unsent)
                }
                return done
            }
            for (index, transaction) in transactions.enumerated() {
                if index > 0 {
                    var next = Transcript(offer: offer)
                    next.negotiated = conversation.transcript.negotiated
                    conversation.transcript = next
                    conversation.transaction = transaction
                }
                let ending = try conversation.mailTransaction()
                if index == transactions.count - 1 {
                    conversation.close(after: ending)
                } else {
                    conversation.reset(after: ending)
                }
                finish(conversation.transcript)
            }
        } catch {
            conversation.transcript.failure = String(describing: error)
            let failed = conversation.transcript
            finish(failed)
            while done.count < transactions.count {
                var unsent = Transcript(offer: offer)
                unsent.negotiated = failed.negotiated
                unsent.failure = "not sent: the session failed in an earlier message: \(error)"
                finish(unsent)
            }
        }
        return done
    }

    private init(channel: Channel, transaction: Transaction, transcript: Transcript) {
        self.channel = channel
        self.transaction = transaction
        self.transcript = transcript
    }

    /// How the session came to its verdict.
    private struct Ending {
        var verdict: Transcript.Verdict
        var reason: String?
        /// Whether a mail transaction was open, so the MTA must send SMFIC_ABORT.
        var inTransaction: Bool
    }

    // MARK: Stages

    private mutating func session() throws -> Ending {
        if let ending = try openConnection() { return ending }
        return try mailTransaction()
    }

    /// Negotiate, connect, helo: nil when the connection may carry messages, otherwise how
    /// it ends before any.
    private mutating func openConnection() throws -> Ending? {
        try negotiate()

        let connect = try event(
            .connect(hostname: transaction.clientName, address: transaction.client),
            .connect(hostname: transaction.clientName, address: transaction.client),
            macros: .connect,
            notSent: .noConnect,
            noReply: .noReplyConnect
        )
        if let ending = try decide(connect, after: .connect, inTransaction: false) { return ending }

        let helo = try event(
            .helo(transaction.helo),
            .helo(transaction.helo),
            macros: .helo,
            notSent: .noHelo,
            noReply: .noReplyHelo
        )
        return try decide(helo, after: .helo, inTransaction: false)
    }

    private mutating func mailTransaction() throws -> Ending {
        let sender = transaction.sender
        let mail = try event(
            .mail(sender),
            .mail(sender: sender.wireForm, arguments: sender.arguments),
            macros: .mail,
            queueIDAssigned: false,
            notSent: .noMail,
            noReply: .noReplyMail
        )
        if let ending = try decide(mail, after: .mail, inTransaction: true) { return ending }

        var accepted = 0
        var temporaryRefusal = false
        for recipient in transaction.recipients {
            let reply = try event(
                .recipient(recipient),
                .recipient(recipient.wireForm, arguments: recipient.arguments),
                macros: .recipient,
                recipient: recipient,
                queueIDAssigned: accepted > 0,
                notSent: .noRecipient,
                noReply: .noReplyRecipient
            )
            switch reply {
            case nil, .continue:
                accepted += 1
            case .reject, .tempfail, .replyCode:
                // Postfix refuses this recipient only and the transaction goes on.
                if let reply, try verdict(of: reply, after: .recipient) == .tempfail { temporaryRefusal = true }
            default:
                if let ending = try decide(reply, after: .recipient, inTransaction: true) { return ending }
            }
        }
        guard accepted > 0 else {
            return Ending(
                verdict: temporaryRefusal ? .tempfail : .reject,
                reason: "all recipients refused",
                inTransaction: true
            )
        }

        let data = try event(.data, .data, macros: .data, notSent: .noData, noReply: .noReplyData)
        if let ending = try decide(data, after: .data, inTransaction: true) { return ending }

        let leadingSpace = steps.contains(.headerLeadingSpace)
        for field in transaction.message.headers {
            let value = field.value(leadingSpace: leadingSpace)
            let reply = try event(
                .header(name: field.name, value: value),
                .header(name: field.name, value: value),
                macros: nil,
                notSent: .noHeaders,
                noReply: .noReplyHeader
            )
            if let ending = try decide(reply, after: .header, inTransaction: true) { return ending }
        }

        let endOfHeaders = try event(
            .endOfHeaders,
            .endOfHeaders,
            macros: .endOfHeaders,
            notSent: .noEndOfHeaders,
            noReply: .noReplyEndOfHeaders
        )
        if let ending = try decide(endOfHeaders, after: .endOfHeaders, inTransaction: true) { return ending }

        for chunk in Command.bodyChunks(transaction.message.body) {
            guard case .body(let bytes) = chunk else { continue }
            let reply = try event(
                .body(length: bytes.count),
                chunk,
                macros: nil,
                notSent: .noBody,
                noReply: .noReplyBody
            )
            if reply == .skip {
                guard steps.contains(.skip) else {
                    throw ProtocolError.invalidValue(
                        frame: ResponseCode.skip.cName,
                        reason: "sent without negotiating SMFIP_SKIP"
                    )
                }
                break
            }
            if let ending = try decide(reply, after: .body, inTransaction: true) { return ending }
        }

        let final = try event(.endOfMessage, .endOfMessage([]), macros: .endOfMessage, notSent: nil, noReply: nil)
        switch final {
        case nil, .continue, .accept:
            return Ending(verdict: .accept, reason: nil, inTransaction: false)
        case let reply?:
            return Ending(verdict: try verdict(of: reply, after: .endOfMessage), reason: nil, inTransaction: false)
        }
    }

    private mutating func close(after ending: Ending) {
        transcript.verdict = ending.verdict
        transcript.reason = ending.reason
        // The verdict stands whatever happens now; a milter that already hung up only
        // earns a warning.
        do {
            if ending.inTransaction { try tell(.abort, as: .abort) }
            try tell(.quit, as: .quit)
            try channel.flush()
        } catch {
            transcript.warnings.append("closing the session: \(error)")
        }
    }

    /// Ends one message of several: records its verdict and sends SMFIC_ABORT, as Postfix
    /// does after every transaction, so the milter starts the next one clean. The verdict
    /// stands if that write fails; the next message then meets the broken channel.
    private mutating func reset(after ending: Ending) {
        transcript.verdict = ending.verdict
        transcript.reason = ending.reason
        do {
            try tell(.abort, as: .abort)
        } catch {
            transcript.warnings.append("resetting for the next message: \(error)")
        }
    }

    // MARK: Negotiation

    private mutating func negotiate() throws {
        let offer = transcript.offer
        try channel.send([Command.negotiate(offer).frame()])
        let frame = try channel.receive()
        guard case .negotiate(let answer) = try Response(frame) else {
            throw ProtocolError.invalidValue(
                frame: CommandCode.optionNegotiation.cName,
                reason: "milter answered with \(ResponseCode(rawValue: frame.code)?.cName ?? printable(frame.code))"
            )
        }
        transcript.negotiated = answer
        guard answer.version <= offer.version else {
            throw ProtocolError.invalidValue(
                frame: CommandCode.optionNegotiation.cName,
                reason: "milter protocol version \(answer.version) is newer than the offered \(offer.version)"
            )
        }
        let unoffered = answer.actions.subtracting(offer.actions)
        guard unoffered.isEmpty else {
            throw ProtocolError.invalidValue(
                frame: CommandCode.optionNegotiation.cName,
                reason: "milter asks for actions that were not offered: \(unoffered.names.joined(separator: ","))"
            )
        }
        actions = answer.actions
        steps = answer.steps
        macroPlan =
            answer.macroLists.isEmpty
            ? MacroPlan.postfix : MacroPlan(Transaction.macroLists(askedFor: answer.macroLists))
    }

    // MARK: One step

    /// Sends one event, preceded by its stage's macros, records it, and returns the
    /// milter's reply: nil when the event was not sent or not to be answered.
    private mutating func event(
        _ event: Transcript.Event,
        _ command: Command,
        macros stage: MacroStage?,
        recipient: Transaction.Address? = nil,
        queueIDAssigned: Bool = true,
        notSent skipFlag: ProtocolSteps?,
        noReply replyFlag: ProtocolSteps?
    ) throws -> Reply? {
        var frames: [Frame] = []
        var macros: [Macro] = []
        if let stage {
            macros = transaction.macros(
                for: stage,
                plan: macroPlan,
                recipient: recipient,
                queueIDAssigned: queueIDAssigned
            )
            if !macros.isEmpty { frames.append(try Command.macros(stage.command, macros).frame()) }
        }
        if let skipFlag, steps.contains(skipFlag) {
            if !frames.isEmpty { try channel.send(frames) }
            transcript.steps.append(Transcript.Step(event: event, macros: macros, answer: .notSent(skipFlag)))
            return nil
        }
        frames.append(try command.frame())
        try channel.send(frames)
        if let replyFlag, steps.contains(replyFlag) {
            transcript.steps.append(Transcript.Step(event: event, macros: macros, answer: .noReply(replyFlag)))
            return nil
        }
        transcript.steps.append(Transcript.Step(event: event, macros: macros, answer: .missing))
        let reply = try awaitReply(to: command.code)
        transcript.steps[transcript.steps.count - 1].answer = .reply(reply)
        return reply
    }

    /// Sends a command that has no answer.
    private mutating func tell(_ command: Command, as event: Transcript.Event) throws {
        transcript.steps.append(Transcript.Step(event: event, answer: .none))
        try channel.send([command.frame()])
    }

    /// Reads until the reply that ends the wait, counting progress and collecting
    /// modifications into the last step.
    private mutating func awaitReply(to code: CommandCode) throws -> Reply {
        let index = transcript.steps.count - 1
        for _ in 0..<Conversation.maximumResponsesPerStep {
            let frame = try channel.receive()
            switch try Response(frame) {
            case .reply(let reply):
                return reply
            case .progress:
                transcript.steps[index].progress += 1
            case .modification(let modification):
                guard code == .endOfMessage else {
                    throw ProtocolError.invalidValue(
                        frame: modification.code.cName,
                        reason: "sent in answer to \(code.cName); modifications are only allowed after SMFIC_BODYEOB"
                    )
                }
                if !actions.contains(modification.requiredAction) {
                    transcript.warnings.append(
                        "\(modification.code.cName) without negotiating SMFIF_\(modification.requiredAction.names.joined())"
                    )
                }
                transcript.steps[index].modifications.append(modification)
            case let other:
                throw ProtocolError.invalidValue(
                    frame: other.code.cName,
                    reason: "unexpected in answer to \(code.cName)"
                )
            }
        }
        throw ProtocolError.invalidValue(
            frame: code.cName,
            reason: "more than \(Conversation.maximumResponsesPerStep) responses without a reply"
        )
    }

    // MARK: Replies

    /// Nil to go on; otherwise how the session ends.
    private func decide(_ reply: Reply?, after code: CommandCode, inTransaction: Bool) throws -> Ending? {
        switch reply {
        case nil, .continue:
            return nil
        case .accept:
            let scope = inTransaction ? "message" : "connection"
            return Ending(
                verdict: .accept,
                reason: "accepted at \(code.cName): no more events for this \(scope)",
                inTransaction: inTransaction
            )
        case let reply?:
            return Ending(verdict: try verdict(of: reply, after: code), reason: nil, inTransaction: inTransaction)
        }
    }

    /// What a final reply means for the message. SMFIR_REPLYCODE counts by its first digit;
    /// SMFIR_SHUTDOWN (421) and SMFIR_CONN_FAIL end the session with a temporary failure.
    private func verdict(of reply: Reply, after code: CommandCode) throws -> Transcript.Verdict {
        switch reply {
        case .continue, .accept: return .accept
        case .reject: return .reject
        case .tempfail, .shutdown, .connectionFailure: return .tempfail
        case .discard: return .discard
        case .replyCode(let smtp):
            switch smtp.code / 100 {
            case 4: return .tempfail
            case 5: return .reject
            default:
                throw ProtocolError.invalidValue(
                    frame: ResponseCode.replyCode.cName,
                    reason: "reply \"\(escaped(smtp.text))\" is neither 4xx nor 5xx"
                )
            }
        case .skip:
            throw ProtocolError.invalidValue(
                frame: ResponseCode.skip.cName,
                reason: "sent in answer to \(code.cName); it is only allowed after SMFIC_BODY"
            )
        }
    }
}
