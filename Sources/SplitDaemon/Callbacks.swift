/// libmilter's callbacks: a thin shell over the connection's `FilterSession` (SplitCore), which
/// holds the message logic and is unit-tested without libmilter. The shell turns C arguments into
/// Swift values, hands libmilter's context to the session as its `MilterActions`, and turns the
/// session's answers into libmilter's, NOREPLY for the steps negotiated as such.
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
import SplitMetrics

/// The longest argv libmilter hands us that we read: RCPT has one address and a few ESMTP params.
let maximumArguments = 64

enum Callbacks {
    /// The filter's name for libmilter, kept for the life of the process (libmilter copies it, but a
    /// string made per call would be a leak the sanitizers report).
    nonisolated(unsafe) static let name = strdup("splitmilter")

    /// What the daemon may ask libmilter for; the negotiation narrows it per connection.
    static var flags: UInt { UInt(SMFIF_ADDRCPT_PAR | SMFIF_DELRCPT | SMFIF_ADDHDRS) }

    static func description() -> smfiDesc {
        var d = smfiDesc()
        d.xxfi_name = Callbacks.name
        d.xxfi_version = SMFI_VERSION
        d.xxfi_flags = Callbacks.flags
        d.xxfi_negotiate = { ctx, f0, f1, _, _, pf0, pf1, pf2, pf3 in
            Callbacks.guarded(ctx, .negotiate) { _, session in
                Callbacks.negotiate(session, f0, f1, pf0, pf1, pf2, pf3)
            }
        }
        d.xxfi_connect = { ctx, hostName, address in
            Callbacks.guarded(ctx, .connect) { _, session in
                guard session.filter.readsClient else { return .proceed }
                let endpoint = address.flatMap(Callbacks.ipAddress)
                session.filter.connect(
                    hostName: hostName.map { String(cString: $0) }, address: endpoint?.address, port: endpoint?.port)
                return .proceed
            }
        }
        d.xxfi_envfrom = { ctx, _ in
            Callbacks.guarded(ctx, .mail) { ctx, session in
                let filter = session.filter
                filter.mail(authenticatedAs: filter.readsClient ? Libmilter.macro(ctx, "{auth_authen}") : nil)
                return .proceed
            }
        }
        d.xxfi_envrcpt = { ctx, argv in
            Callbacks.guarded(ctx, .rcpt) { ctx, session in
                let filter = session.filter
                guard let argv, let first = argv[0] else { return filter.recipientWithoutAddress(actions: ctx) }
                let raw = UnsafeBufferPointer(
                    start: UnsafeRawPointer(first).assumingMemoryBound(to: UInt8.self), count: strlen(first))
                return try filter.recipient(
                    raw, parameters: argv[1] == nil ? [] : Callbacks.parameters(argv), actions: ctx)
            }
        }
        // DATA is answered even though nothing is decided there: an unanswered step leaves Postfix's
        // next small write waiting on a delayed ACK over TCP (docs/postfix-milter.md, "Delayed ACK").
        d.xxfi_data = { ctx in Callbacks.guarded(ctx, .data) { _, _ in .proceed } }
        d.xxfi_header = { ctx, name, value in
            Callbacks.guarded(ctx, .header) { _, session in
                if let name, let value {
                    // Bounded: a marker name is 20 bytes, anything longer is not it.
                    session.filter.header(
                        name: UnsafeRawBufferPointer(start: name, count: strnlen(name, 64)),
                        value: { String(cString: value) })
                }
                return .proceed
            }
        }
        d.xxfi_eom = { ctx in
            let started = LatencyHistogram.now()
            defer { runtime.metrics.endOfMessage.record(since: started) }
            return Callbacks.guarded(ctx, .eom) { ctx, session in try session.filter.endOfMessage(actions: ctx) }
        }
        d.xxfi_abort = { ctx in
            Callbacks.guarded(ctx, .abort) { _, session in
                session.filter.abort()
                return .proceed
            }
        }
        d.xxfi_close = { ctx in
            // Close may come without connect (libmilter's docs): release only what was set.
            guard let ctx else { return SMFIS_CONTINUE }
            let context = MilterContext(pointer: ctx)
            if let pointer = Libmilter.getPrivate(context) {
                Unmanaged<Session>.fromOpaque(pointer).release()
                try? Libmilter.setPrivate(context, nil)
                runtime.metrics.connectionClosed()
            }
            return SMFIS_CONTINUE
        }
        return d
    }

    /// Runs one callback body and turns its answer into libmilter's. A thrown error goes to the
    /// session (`FilterSession.failed`): TEMPFAIL, or, in a step negotiated as no-reply, remembered
    /// for end of message; such a step always answers NOREPLY. Errors and TEMPFAIL answers are
    /// counted here, whatever their cause.
    static func guarded(
        _ ctx: OpaquePointer?, _ step: SessionStep, _ body: (MilterContext, Session) throws -> StepAnswer
    ) -> Int32 {
        guard let ctx else {
            runtime.logger.error("libmilter passed no context", metadata: ["stage": "\(step.rawValue)"])
            runtime.metrics.answeredTempfail(step)
            return SMFIS_TEMPFAIL
        }
        let context = MilterContext(pointer: ctx)
        // Looked up once per callback (a header callback does little else).
        let session = session(context)
        let answer = run(step, session, noReplySteps: session.noReplySteps, actions: context) {
            try body(context, session)
        }
        switch answer {
        case nil: return SMFIS_NOREPLY
        case .proceed: return SMFIS_CONTINUE
        case .reject: return SMFIS_REJECT
        case .tempfail: return SMFIS_TEMPFAIL
        }
    }

    /// One step's logic with the bookkeeping both engines share: a thrown error goes to the session
    /// (`FilterSession.failed`), failures and TEMPFAIL answers are counted. nil when the step was
    /// negotiated as no-reply (`noReplySteps`): it is then never answered, whatever happened.
    static func run(
        _ step: SessionStep, _ session: Session, noReplySteps: UInt, actions: some MilterActions,
        _ body: () throws -> StepAnswer
    ) -> StepAnswer? {
        let flag = noReplyFlag(step)
        let noReply = flag != 0 && noReplySteps & flag != 0
        let answer: StepAnswer
        do {
            answer = try body()
        } catch {
            runtime.metrics.callbackFailed(step)
            answer = session.filter.failed(step, error, canAnswer: !noReply, actions: actions)
        }
        if noReply { return nil }
        if answer == .tempfail { runtime.metrics.answeredTempfail(step) }
        return answer
    }

    /// The SMFIP_NR_* flag a step can be negotiated with; 0 for steps that must always answer.
    static func noReplyFlag(_ step: SessionStep) -> UInt {
        switch step {
        case .connect: UInt(SMFIP_NR_CONN)
        case .mail: UInt(SMFIP_NR_MAIL)
        case .rcpt: UInt(SMFIP_NR_RCPT)
        case .data: UInt(SMFIP_NR_DATA)
        case .header: UInt(SMFIP_NR_HDR)
        case .negotiate, .eom, .abort: 0
        }
    }

    /// The connection's session, created with the current rules on first use.
    static func session(_ ctx: MilterContext) -> Session {
        if let pointer = Libmilter.getPrivate(ctx) {
            return Unmanaged<Session>.fromOpaque(pointer).takeUnretainedValue()
        }
        let created = Session(runtime.snapshot)
        let pointer = Unmanaged.passRetained(created).toOpaque()
        do {
            try Libmilter.setPrivate(ctx, pointer)
            runtime.metrics.connectionOpened()
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
        _ session: Session, _ offeredActions: UInt, _ offeredSteps: UInt,
        _ pf0: UnsafeMutablePointer<UInt>?, _ pf1: UnsafeMutablePointer<UInt>?,
        _ pf2: UnsafeMutablePointer<UInt>?, _ pf3: UnsafeMutablePointer<UInt>?
    ) -> StepAnswer {
        let needs = Negotiation(
            rules: session.snapshot.rules, noReply: session.snapshot.settings.noReply, offeredSteps: offeredSteps)
        guard offeredActions & needs.actions == needs.actions else {
            session.logger.error(
                "the MTA does not offer the actions splitmilter needs; refusing the connection",
                metadata: ["offered": "\(offeredActions)", "needed": "\(needs.actions)"])
            return .reject
        }
        session.noReplySteps = needs.noReplySteps
        pf0?.pointee = needs.actions
        pf1?.pointee = needs.steps
        pf2?.pointee = 0
        pf3?.pointee = 0
        return .proceed
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
            // Steps that always continue need no answer. RCPT always gets one: a guard may refuse,
            // and the recipient past MessagePlan.maximumRecipients gets 452 4.5.3 (unanswered, the
            // whole message would have to be refused, on every retry).
            silent = UInt(SMFIP_NR_CONN | SMFIP_NR_MAIL | SMFIP_NR_HDR)
            skipped |= UInt(SMFIP_NODATA)
        }
        silent &= offeredSteps
        self.noReplySteps = silent
        self.steps = (skipped & offeredSteps) | silent
    }
}
