/// libmilter's callbacks: stage events in, the core's decisions and edits out.
///
/// Each callback is a C function pointer, so it captures nothing and reaches state through the
/// session pointer and `runtime`. Nothing may escape a callback as a trap or an error: every
/// failure is logged and answered with TEMPFAIL, so Postfix keeps the message in the client's hands
/// (milter_default_action = tempfail covers the rest).

internal import CMilterShim
import Glibc
import Logging
import SplitCore

/// The longest argv libmilter hands us that we read: RCPT has one address and a few ESMTP params.
let maximumArguments = 64

enum Callbacks {
    /// What the daemon asks libmilter for; the negotiation narrows it per connection.
    static var flags: UInt { UInt(SMFIF_ADDRCPT_PAR | SMFIF_DELRCPT | SMFIF_ADDHDRS) }

    static func description() -> smfiDesc {
        var d = smfiDesc()
        d.xxfi_name = strdup("splitmilter")
        d.xxfi_version = SMFI_VERSION
        d.xxfi_flags = Callbacks.flags
        d.xxfi_negotiate = { ctx, f0, f1, _, _, pf0, pf1, pf2, pf3 in
            Callbacks.guarded(ctx, "negotiate") { ctx in try Callbacks.negotiate(ctx, f0, f1, pf0, pf1, pf2, pf3) }
        }
        d.xxfi_connect = { ctx, host, _ in
            Callbacks.guarded(ctx, "connect") { ctx in
                Callbacks.session(ctx).client = host.map { String(cString: $0) } ?? ""
                return SMFIS_CONTINUE
            }
        }
        d.xxfi_envfrom = { ctx, argv in
            Callbacks.guarded(ctx, "mail") { ctx in
                Callbacks.session(ctx).startMessage(sender: Callbacks.arguments(argv).first ?? "")
                return SMFIS_CONTINUE
            }
        }
        d.xxfi_envrcpt = { ctx, argv in Callbacks.guarded(ctx, "rcpt") { ctx in try Callbacks.recipient(ctx, Callbacks.arguments(argv)) } }
        // DATA is answered even though nothing is decided there: an unanswered step leaves Postfix's
        // next small write waiting on a delayed ACK over TCP (research/spike.md §9).
        d.xxfi_data = { ctx in Callbacks.guarded(ctx, "data") { _ in SMFIS_CONTINUE } }
        d.xxfi_header = { ctx, name, value in
            Callbacks.guarded(ctx, "header") { ctx in
                let session = Callbacks.session(ctx)
                if let name, let value, !session.plan.carriesMarker,
                    runtime.settings.marker.matches(name: String(cString: name), value: String(cString: value))
                {
                    session.plan.carriesMarker = true
                }
                return SMFIS_CONTINUE
            }
        }
        d.xxfi_eom = { ctx in Callbacks.guarded(ctx, "eom") { ctx in try Callbacks.endOfMessage(ctx) } }
        d.xxfi_abort = { ctx in
            Callbacks.guarded(ctx, "abort") { ctx in
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

    /// Runs one callback body; any thrown error is logged and answered with TEMPFAIL.
    static func guarded(_ ctx: OpaquePointer?, _ stage: String, _ body: (MilterContext) throws -> Int32) -> Int32 {
        guard let ctx else {
            runtime.logger.error("libmilter passed no context", metadata: ["stage": "\(stage)"])
            return SMFIS_TEMPFAIL
        }
        let context = MilterContext(pointer: ctx)
        do {
            return try body(context)
        } catch {
            let queueID = Libmilter.macro(context, "i") ?? "NOQUEUE"
            runtime.logger.error("\(queueID): \(stage): \(error); answering tempfail")
            try? Libmilter.setReply(
                context, code: "451", enhanced: "4.3.0", text: "splitmilter: temporary failure at \(stage)")
            return SMFIS_TEMPFAIL
        }
    }

    static func existingSession(_ ctx: MilterContext) -> Session? {
        Libmilter.getPrivate(ctx).map { Unmanaged<Session>.fromOpaque($0).takeUnretainedValue() }
    }

    /// The connection's session, created with the current rules on first use.
    static func session(_ ctx: MilterContext) -> Session {
        if let existing = existingSession(ctx) { return existing }
        let created = Session(rules: runtime.currentRules)
        let pointer = Unmanaged.passRetained(created).toOpaque()
        do {
            try Libmilter.setPrivate(ctx, pointer)
        } catch {
            Unmanaged<Session>.fromOpaque(pointer).release()
        }
        return created
    }

    /// argv of envfrom/envrcpt as Swift strings; at most `maximumArguments`.
    static func arguments(_ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> [String] {
        guard let argv else { return [] }
        var result: [String] = []
        var index = 0
        while index < maximumArguments, let argument = argv[index] {
            result.append(String(cString: argument))
            index += 1
        }
        return result
    }

    static func negotiate(
        _ ctx: MilterContext, _ offeredActions: UInt, _ offeredSteps: UInt,
        _ pf0: UnsafeMutablePointer<UInt>?, _ pf1: UnsafeMutablePointer<UInt>?,
        _ pf2: UnsafeMutablePointer<UInt>?, _ pf3: UnsafeMutablePointer<UInt>?
    ) throws -> Int32 {
        let rules = session(ctx).rules
        let needs = Negotiation(makesCopies: rules.makesCopies, rewrites: rules.rewrites)
        guard offeredActions & needs.actions == needs.actions else {
            runtime.logger.error(
                "the MTA does not offer the actions splitmilter needs; refusing the connection",
                metadata: ["offered": "\(offeredActions)", "needed": "\(needs.actions)"])
            return SMFIS_REJECT
        }
        pf0?.pointee = needs.actions
        pf1?.pointee = needs.skippedSteps & offeredSteps
        pf2?.pointee = 0
        pf3?.pointee = 0
        return SMFIS_CONTINUE
    }

    static func recipient(_ ctx: MilterContext, _ argv: [String]) throws -> Int32 {
        let session = session(ctx)
        guard let raw = argv.first else { return SMFIS_CONTINUE }
        let decision = session.rules.decide(recipient: raw, parameters: Array(argv.dropFirst()))
        guard session.plan.record(decision) else {
            try Libmilter.setReply(ctx, code: "452", enhanced: "4.5.3", text: "Too many recipients for splitmilter")
            return SMFIS_TEMPFAIL
        }
        // CONTINUE, never ACCEPT: ACCEPT at RCPT would end filtering and skip EOM, losing the edits.
        return SMFIS_CONTINUE
    }

    static func endOfMessage(_ ctx: MilterContext) throws -> Int32 {
        let session = session(ctx)
        defer { session.endMessage() }
        let queueID = Libmilter.macro(ctx, "i") ?? "NOQUEUE"
        let logger = runtime.logger
        let result = session.plan.edits(marker: runtime.settings.marker)
        for decision in session.plan.decisions {
            for problem in decision.problems {
                logger.warning("\(queueID): rcpt=\(decision.recipient) \(problem)")
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
    let skippedSteps: UInt

    init(makesCopies: Bool, rewrites: Bool) {
        var actions: UInt = 0
        if makesCopies || rewrites { actions |= UInt(SMFIF_ADDRCPT_PAR) }
        if rewrites { actions |= UInt(SMFIF_DELRCPT) }
        if makesCopies { actions |= UInt(SMFIF_ADDHDRS) }
        self.actions = actions
        // Headers are read only to find our own marker, which matters only when copies are made.
        var skipped = UInt(SMFIP_NOHELO | SMFIP_NOBODY | SMFIP_NOEOH | SMFIP_NOUNKNOWN)
        if !makesCopies { skipped |= UInt(SMFIP_NOHDRS) }
        self.skippedSteps = skipped
    }
}
