/// libmilter's callbacks: stage events in, the core's decisions and edits out.
///
/// Each callback is a C function pointer, so it captures nothing and reaches state through the
/// session pointer and `runtime`. Nothing may escape a callback as a trap or an error: every
/// failure is logged and answered with TEMPFAIL, so Postfix keeps the message in the client's hands
/// (milter_default_action = tempfail covers the rest). A step negotiated as no-reply cannot answer
/// at all; its failure is remembered and the message is refused at end of message instead.

internal import CMilterShim
import Glibc
import Logging
import SplitCore

/// The longest argv libmilter hands us that we read: RCPT has one address and a few ESMTP params.
let maximumArguments = 64

/// The protocol steps splitmilter handles, with the no-reply flag each can be negotiated with.
enum Stage: String {
    case negotiate, connect, mail, rcpt, data, header, eom, abort

    var noReplyFlag: UInt {
        switch self {
        case .connect: UInt(SMFIP_NR_CONN)
        case .mail: UInt(SMFIP_NR_MAIL)
        case .rcpt: UInt(SMFIP_NR_RCPT)
        case .data: UInt(SMFIP_NR_DATA)
        case .header: UInt(SMFIP_NR_HDR)
        case .negotiate, .eom, .abort: 0
        }
    }
}

enum Callbacks {
    /// What the daemon may ask libmilter for; the negotiation narrows it per connection.
    static var flags: UInt { UInt(SMFIF_ADDRCPT_PAR | SMFIF_DELRCPT | SMFIF_ADDHDRS) }

    static func description() -> smfiDesc {
        var d = smfiDesc()
        d.xxfi_name = strdup("splitmilter")
        d.xxfi_version = SMFI_VERSION
        d.xxfi_flags = Callbacks.flags
        d.xxfi_negotiate = { ctx, f0, f1, _, _, pf0, pf1, pf2, pf3 in
            Callbacks.guarded(ctx, .negotiate) { ctx in
                try Callbacks.negotiate(ctx, f0, f1, pf0, pf1, pf2, pf3)
            }
        }
        d.xxfi_connect = { ctx, hostName, address in
            Callbacks.guarded(ctx, .connect) { ctx in
                let session = Callbacks.session(ctx)
                let endpoint = address.flatMap(Callbacks.ipAddress)
                session.clientHostName = hostName.map { String(cString: $0) }
                session.clientAddress = endpoint?.address
                session.clientPort = endpoint?.port
                return SMFIS_CONTINUE
            }
        }
        d.xxfi_envfrom = { ctx, _ in
            Callbacks.guarded(ctx, .mail) { ctx in
                Callbacks.session(ctx).startMessage(authenticatedAs: Libmilter.macro(ctx, "{auth_authen}"))
                return SMFIS_CONTINUE
            }
        }
        d.xxfi_envrcpt = { ctx, argv in
            Callbacks.guarded(ctx, .rcpt) { ctx in try Callbacks.recipient(ctx, argv) }
        }
        // DATA is answered even though nothing is decided there: an unanswered step leaves Postfix's
        // next small write waiting on a delayed ACK over TCP (research/spike.md §9).
        d.xxfi_data = { ctx in Callbacks.guarded(ctx, .data) { _ in SMFIS_CONTINUE } }
        d.xxfi_header = { ctx, name, value in
            Callbacks.guarded(ctx, .header) { ctx in
                let session = Callbacks.session(ctx)
                // Names compared on their bytes: a String is made only of the marker's value.
                if let name, let value, !session.plan.carriesMarker,
                    CopyMarker.isMarkerName(UnsafeRawBufferPointer(start: name, count: strnlen(name, 64))),
                    session.snapshot.settings.marker.matches(
                        name: CopyMarker.headerName, value: String(cString: value))
                {
                    session.plan.carriesMarker = true
                }
                return SMFIS_CONTINUE
            }
        }
        d.xxfi_eom = { ctx in Callbacks.guarded(ctx, .eom) { ctx in try Callbacks.endOfMessage(ctx) } }
        d.xxfi_abort = { ctx in
            Callbacks.guarded(ctx, .abort) { ctx in
                if let existing = Callbacks.existingSession(ctx) { existing.endMessage() }
                return SMFIS_CONTINUE
            }
        }
        d.xxfi_close = { ctx in
            // Close may come without connect (libmilter's docs): release only what was set.
            guard let ctx else { return SMFIS_CONTINUE }
            let context = MilterContext(pointer: ctx)
            if let pointer = Libmilter.getPrivate(context) {
                Unmanaged<Session>.fromOpaque(pointer).release()
                try? Libmilter.setPrivate(context, nil)
            }
            return SMFIS_CONTINUE
        }
        return d
    }

    /// Runs one callback body. A thrown error is logged and answered with TEMPFAIL, or, in a step
    /// negotiated as no-reply, remembered for EOM; such a step always answers NOREPLY.
    static func guarded(
        _ ctx: OpaquePointer?, _ stage: Stage, _ body: (MilterContext) throws -> Int32
    ) -> Int32 {
        guard let ctx else {
            runtime.logger.error("libmilter passed no context", metadata: ["stage": "\(stage.rawValue)"])
            return SMFIS_TEMPFAIL
        }
        let context = MilterContext(pointer: ctx)
        let noReply =
            stage.noReplyFlag != 0
            && (existingSession(context)?.noReplySteps ?? 0) & stage.noReplyFlag != 0
        do {
            let status = try body(context)
            return noReply ? SMFIS_NOREPLY : status
        } catch {
            let queueID = Libmilter.macro(context, "i") ?? "NOQUEUE"
            (existingSession(context)?.logger ?? runtime.logger).error(
                "\(queueID): \(stage.rawValue): \(error); answering tempfail")
            if noReply {
                existingSession(context)?.failure = "\(stage.rawValue): \(error)"
                return SMFIS_NOREPLY
            }
            try? Libmilter.setReply(
                context, code: "451", enhanced: "4.3.0",
                text: "splitmilter: temporary failure at \(stage.rawValue)")
            return SMFIS_TEMPFAIL
        }
    }

    static func existingSession(_ ctx: MilterContext) -> Session? {
        Libmilter.getPrivate(ctx).map { Unmanaged<Session>.fromOpaque($0).takeUnretainedValue() }
    }

    /// The connection's session, created with the current rules on first use.
    static func session(_ ctx: MilterContext) -> Session {
        if let existing = existingSession(ctx) { return existing }
        let created = Session(runtime.snapshot)
        let pointer = Unmanaged.passRetained(created).toOpaque()
        do {
            try Libmilter.setPrivate(ctx, pointer)
        } catch {
            Unmanaged<Session>.fromOpaque(pointer).release()
        }
        return created
    }

    /// argv[1...] of envrcpt (the ESMTP parameters) as Swift strings; at most `maximumArguments`.
    static func parameters(_ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> [String] {
        var result: [String] = []
        var index = 1
        while index < maximumArguments, let argument = argv[index] {
            result.append(String(cString: argument))
            index += 1
        }
        return result
    }

    /// The client's address and TCP port from xxfi_connect; nil for non-IP clients (an smtpd on a
    /// unix socket). Postfix's emulated session for sendmail(1) gives 127.0.0.1, port 0.
    static func ipAddress(_ address: UnsafeMutablePointer<sockaddr>) -> (
        address: IPAddress, port: UInt16
    )? {
        switch Int32(address.pointee.sa_family) {
        case AF_INET:
            return address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                (.v4(UInt32(bigEndian: $0.pointee.sin_addr.s_addr)), UInt16(bigEndian: $0.pointee.sin_port))
            }
        case AF_INET6:
            return address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { pointer in
                let ip = withUnsafeBytes(of: pointer.pointee.sin6_addr) { bytes in
                    let high = bytes.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                    let low = bytes.suffix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                    return IPAddress.v6(high: high, low: low)
                }
                return (ip, UInt16(bigEndian: pointer.pointee.sin6_port))
            }
        default:
            return nil
        }
    }

    static func negotiate(
        _ ctx: MilterContext, _ offeredActions: UInt, _ offeredSteps: UInt,
        _ pf0: UnsafeMutablePointer<UInt>?, _ pf1: UnsafeMutablePointer<UInt>?,
        _ pf2: UnsafeMutablePointer<UInt>?, _ pf3: UnsafeMutablePointer<UInt>?
    ) throws -> Int32 {
        let session = session(ctx)
        let needs = Negotiation(
            rules: session.rules, noReply: session.snapshot.settings.noReply, offeredSteps: offeredSteps)
        guard offeredActions & needs.actions == needs.actions else {
            session.logger.error(
                "the MTA does not offer the actions splitmilter needs; refusing the connection",
                metadata: ["offered": "\(offeredActions)", "needed": "\(needs.actions)"])
            return SMFIS_REJECT
        }
        session.noReplySteps = needs.noReplySteps
        pf0?.pointee = needs.actions
        pf1?.pointee = needs.steps
        pf2?.pointee = 0
        pf3?.pointee = 0
        return SMFIS_CONTINUE
    }

    static func recipient(
        _ ctx: MilterContext, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
    ) throws -> Int32 {
        let session = session(ctx)
        guard let argv, let first = argv[0] else {
            session.logger.warning(
                "\(Libmilter.macro(ctx, "i") ?? "NOQUEUE"): RCPT without an address; ignored")
            return SMFIS_CONTINUE
        }
        let raw = String(cString: first)
        let decision = session.rules.decide(
            recipient: raw, parameters: argv[1] == nil ? [] : parameters(argv), client: session.client,
            providers: session.snapshot.providers, resolved: { Libmilter.macro(ctx, "{rcpt_addr}") })
        switch decision.verdict {
        case .accept:
            if decision.guardWaived, let note = decision.guardNote {
                session.logger.info("\(Libmilter.macro(ctx, "i") ?? "NOQUEUE"): rcpt=\(raw) \(note)")
            }
        case .reject(let reply, let because), .tempfail(let reply, let because):
            let queueID = Libmilter.macro(ctx, "i") ?? "NOQUEUE"
            session.logger.info("\(queueID): reject: rcpt=\(raw) \(reply) (\(because))")
            try Libmilter.setReply(ctx, code: reply.code, enhanced: reply.enhanced, text: reply.text)
            return reply.code.hasPrefix("5") ? SMFIS_REJECT : SMFIS_TEMPFAIL
        }
        guard session.plan.record(decision) else {
            session.failure = "more than \(MessagePlan.maximumRecipients) recipients"
            try Libmilter.setReply(
                ctx, code: "452", enhanced: "4.5.3", text: "Too many recipients for splitmilter")
            return SMFIS_TEMPFAIL
        }
        // CONTINUE, never ACCEPT: ACCEPT at RCPT would end filtering and skip EOM, losing the edits.
        return SMFIS_CONTINUE
    }

    static func endOfMessage(_ ctx: MilterContext) throws -> Int32 {
        let session = session(ctx)
        defer { session.endMessage() }
        // Made only for a line that is logged: most messages log nothing at the default level.
        var queueID: String { Libmilter.macro(ctx, "i") ?? "NOQUEUE" }
        let logger = session.logger
        if let failure = session.failure {
            logger.error("\(queueID): refusing the message: \(failure)")
            try Libmilter.setReply(ctx, code: "451", enhanced: "4.3.0", text: "splitmilter: \(failure)")
            return SMFIS_TEMPFAIL
        }
        let result = session.plan.edits(marker: session.snapshot.settings.marker)
        for decision in session.plan.decisions {
            for problem in decision.problems {
                logger.warning("\(queueID): rcpt=\(decision.recipient) \(problem)")
            }
            if case .excluded(let rule) = decision.selection {
                logger.debug(
                    "\(queueID): rcpt=\(decision.recipient) no action: excluded rule=\(rule.location.fileAndLine)"
                )
            }
        }
        for edit in result.edits {
            switch edit {
            case .deleteRecipient(let recipient):
                try Libmilter.deleteRecipient(ctx, recipient)
            case .addRecipient(let address, let parameters):
                try Libmilter.addRecipient(ctx, address, parameters: parameters)
            case .addHeader(let name, let value):
                try Libmilter.addHeader(ctx, name: name, value: value)
            }
        }
        for addition in result.additions {
            logger.info(
                "\(queueID): rcpt=\(addition.forRecipient) \(addition.kind.rawValue)=\(addition.target.address) rule=\(addition.target.rule.location.fileAndLine)"
            )
        }
        for skip in result.skipped {
            logger.info(
                "\(queueID): rcpt=\(skip.forRecipient) skipped=\(skip.target.address) reason=\"\(skip.reason)\" rule=\(skip.target.rule.location.fileAndLine)"
            )
        }
        return SMFIS_CONTINUE
    }
}

/// The actions and protocol steps one rule set needs; everything else is declined so Postfix sends
/// and waits for as little as possible.
struct Negotiation {
    let actions: UInt
    /// SMFIP_NO* (steps not sent) and SMFIP_NR_* (steps not answered) bits, within what was offered.
    let steps: UInt
    let noReplySteps: UInt

    init(rules: RuleSet, noReply: Bool, offeredSteps: UInt) {
        let makesCopies = rules.makesCopies
        let rewrites = rules.rewrites
        var actions: UInt = 0
        if makesCopies || rewrites { actions |= UInt(SMFIF_ADDRCPT_PAR) }
        if rewrites { actions |= UInt(SMFIF_DELRCPT) }
        if makesCopies { actions |= UInt(SMFIF_ADDHDRS) }
        self.actions = actions
        // Headers are read only to find our own marker, which matters only when copies are made.
        var skipped = UInt(SMFIP_NOHELO | SMFIP_NOBODY | SMFIP_NOEOH | SMFIP_NOUNKNOWN)
        if !makesCopies { skipped |= UInt(SMFIP_NOHDRS) }
        var silent: UInt = 0
        if noReply {
            // Steps that always continue need no answer. RCPT does only when no guard can refuse.
            silent = UInt(SMFIP_NR_CONN | SMFIP_NR_MAIL | SMFIP_NR_HDR)
            if !rules.checksRecipients { silent |= UInt(SMFIP_NR_RCPT) }
            skipped |= UInt(SMFIP_NODATA)
        }
        silent &= offeredSteps
        self.noReplySteps = silent
        self.steps = (skipped & offeredSteps) | silent
    }
}
