/// The milter protocol served by splitmilter itself, without libmilter (`--engine native`).
///
/// Why: libmilter reads every frame with a poll() and two read()s and answers each with its own
/// writev(); on a milter that decides in microseconds those system calls are nearly all of the
/// CPU per message, the same for every milter on libmilter (docs/postfix-milter.md, "Where the
/// time goes"). Here a connection reads whatever the MTA has sent in one read() and answers
/// everything due in one write(): a command and its macros arrive together, and with no-reply
/// steps Postfix sends several commands at once.
///
/// What it shares with the libmilter shell (`Callbacks`): the connection's `Session`, whose
/// `FilterSession` holds the whole message logic, the negotiation (`Negotiation`), the metrics and
/// the rule snapshot taken per connection. What is its own is the wire: frames as MilterProtocol
/// describes them (`CommandCode`, `ResponseCode`), parsed in place.
///
/// Invariants:
/// - Every length is bounded: a frame longer than libmilter's largest negotiable one ends the
///   connection (Postfix then applies its `milter_default_action`); so does any broken frame.
/// - Whatever is due is written before the connection waits for more input: a command that wants
///   an answer always gets it; answers to commands that came together go out in one write.
/// - Edits are sent only at end of message (`FilterSession` makes them only there), before the
///   final answer; a refusal's text goes as SMFIR_REPLYCODE, as libmilter sends it.
/// - A connection's failure ends only that connection; nothing here traps on input.

import Glibc
import Logging
import MilterProtocol
import SplitCore
import SplitMetrics
import SplitSystem
import SystemCall

enum NativeEngine {
    /// Accepts connections on the listening socket `fd` until `shutdown` is called on it; each
    /// connection is served on a thread of its own. Returns nil after a shutdown, else what failed.
    static func serve(listening fd: Int32, timeout: Int, stopping: @escaping @Sendable () -> Bool) -> String? {
        while true {
            let connection = accept(fd, nil, nil)
            if connection < 0 {
                let error = errno
                if stopping() { return nil }
                switch error {
                case EINTR, ECONNABORTED, EPROTO: continue
                case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                    // Out of descriptors or memory: the queued connection waits, as libmilter's does.
                    runtime.logger.error("accept: \(String(cString: strerror(error))); retrying in 100 ms")
                    usleep(100_000)
                    continue
                default:
                    return "accept: \(String(cString: strerror(error)))"
                }
            }
            _ = fcntl(connection, F_SETFD, FD_CLOEXEC)
            var wait = timeval(tv_sec: timeout, tv_usec: 0)
            setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &wait, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(connection, SOL_SOCKET, SO_SNDTIMEO, &wait, socklen_t(MemoryLayout<timeval>.size))
            let started = DetachedThread.start {
                NativeConnection(fd: connection).run()
                close(connection)
            }
            if started != 0 {
                runtime.logger.error("cannot start a thread for a connection: error \(started)")
                close(connection)
            }
        }
    }
}

/// One MTA connection: reads frames, hands them to the session, writes the answers.
final class NativeConnection: MilterActions {
    /// The most one read() takes; a frame longer than this arrives in several.
    static let readSize = 65_536

    let fd: Int32
    // Exclusivity is not checked at run time on this state: one thread serves the connection, and
    // the checks cost more per message than the rest of the engine's own work.
    /// Frames as they come in: bounded (`FrameDecoder.defaultMaximumLength`, libmilter's largest
    /// negotiable frame), in place.
    @exclusivity(unchecked) private var frames = FrameDecoder()
    private let readBuffer: UnsafeMutableRawBufferPointer
    @exclusivity(unchecked) private var output: [UInt8] = []
    /// The macros last sent for each command (SMFIC_MACRO), as their payload after the code byte,
    /// by `MacroSlot`.
    @exclusivity(unchecked) private var macros = [[UInt8]](repeating: [], count: MacroSlot.count)
    @exclusivity(unchecked) private var session: Session?
    /// The SMFIP_NR_* steps negotiated: their commands get no answer.
    @exclusivity(unchecked) private var noReplySteps: UInt = 0
    /// Set by `setReply`, sent (SMFIR_REPLYCODE) with the next refusal.
    @exclusivity(unchecked) private var pendingReply: String?
    /// The command the last SMFIC_MACRO was for: a command that comes without macros of its own
    /// drops those an earlier one of its kind left.
    @exclusivity(unchecked) private var macrosFor: UInt8?

    init(fd: Int32) {
        self.fd = fd
        readBuffer = .allocate(byteCount: Self.readSize, alignment: 8)
        output.reserveCapacity(4_096)
    }

    deinit {
        readBuffer.deallocate()
        if session != nil { runtime.metrics.connectionClosed() }
    }

    /// Serves the connection until the MTA quits or hangs up, a read times out, or a frame breaks
    /// the protocol; every answer due is written before each wait for more input.
    func run() {
        while true {
            do {
                while let goOn = try frames.withNextFrame({ handle($0, $1) }) {
                    guard goOn else {
                        _ = flush()
                        return
                    }
                }
            } catch {
                runtime.logger.warning("closing a milter connection: \(error)")
                _ = flush()
                return
            }
            guard flush() else { return }
            // A hang-up, a timeout (SO_RCVTIMEO) or an error all end the connection.
            guard let count = try? SystemCallError.check("read", { read(fd, readBuffer.baseAddress, Self.readSize) }),
                count > 0
            else { return }
            frames.append(UnsafeRawBufferPointer(rebasing: readBuffer[0..<count]))
        }
    }

    // MARK: Frames out

    /// A frame of `code` and the given NUL-terminated fields (each cut at its first NUL, as a C
    /// string ends there).
    private func append(_ code: ResponseCode, _ fields: String...) {
        var length = 1
        for field in fields { length += Self.cLength(field) + 1 }
        appendLength(length, code)
        for field in fields { appendField(field) }
    }

    private func appendLength(_ length: Int, _ code: ResponseCode) {
        withUnsafeBytes(of: UInt32(truncatingIfNeeded: length).bigEndian) { output.append(contentsOf: $0) }
        output.append(code.rawValue)
    }

    private func appendField(_ text: String) {
        var text = text
        text.withUTF8 { bytes in
            output.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[..<Self.cLength(bytes)]))
        }
        output.append(0)
    }

    /// The bytes of `text` before its first NUL.
    private static func cLength(_ text: String) -> Int {
        var text = text
        return text.withUTF8 { cLength($0) }
    }

    private static func cLength(_ bytes: UnsafeBufferPointer<UInt8>) -> Int {
        guard let base = bytes.baseAddress, let nul = memchr(base, 0, bytes.count) else { return bytes.count }
        return UnsafeRawPointer(nul) - UnsafeRawPointer(base)
    }

    /// Writes what is due; false when the connection failed (the peer gone: EPIPE, no signal; a
    /// timeout: SO_SNDTIMEO; an error).
    private func flush() -> Bool {
        defer { output.removeAll(keepingCapacity: true) }
        return output.withUnsafeBytes { bytes in
            guard let base = bytes.baseAddress else { return true }
            var written = 0
            while written < bytes.count {
                guard
                    let count = try? SystemCallError.check(
                        "send", { send(fd, base + written, bytes.count - written, Int32(MSG_NOSIGNAL)) }),
                    count > 0
                else { return false }
                written += count
            }
            return true
        }
    }

    // MARK: Commands

    /// Handles one command; false when the connection is to end.
    private func handle(_ byte: UInt8, _ payload: UnsafeRawBufferPointer) -> Bool {
        guard let code = CommandCode(rawValue: byte) else {
            runtime.logger.error("the MTA sent an unknown milter command \(byte); closing the connection")
            return false
        }
        if code != .macro {
            if macrosFor != byte, let slot = MacroSlot.of(byte) { macros[slot].removeAll(keepingCapacity: true) }
            macrosFor = nil
        }
        switch code {
        case .optionNegotiation:
            return negotiate(payload)
        case .macro:
            guard let command = payload.first else { return true }
            // Macros for a command no lookup reads are not kept.
            if let slot = MacroSlot.of(command) {
                macros[slot].removeAll(keepingCapacity: true)
                macros[slot].append(contentsOf: UnsafeRawBufferPointer(rebasing: payload.dropFirst()))
            }
            macrosFor = command
        case .connect:
            answer(.connect) { session in
                let filter = session.filter
                guard filter.readsClient else { return .proceed }
                var fields = PayloadFields(payload)
                let hostName = fields.string()
                let family = fields.byte()
                var address: IPAddress?
                var port: UInt16?
                if family == UInt8(ascii: "4") || family == UInt8(ascii: "6") {
                    port = fields.uint16()
                    // Postfix writes an IPv6 client as its address, some MTAs with `IPv6:` before it.
                    address = fields.string().flatMap {
                        IPAddress($0.hasPrefix("IPv6:") ? String($0.dropFirst(5)) : $0)
                    }
                }
                filter.connect(hostName: hostName, address: address, port: port)
                return .proceed
            }
        case .mail:
            forgetMacros(from: .recipient)
            answer(.mail) { session in
                let filter = session.filter
                filter.mail(authenticatedAs: filter.readsClient ? self.macro("{auth_authen}") : nil)
                return .proceed
            }
        case .recipient:
            answer(.rcpt) { session in
                var fields = PayloadFields(payload)
                guard let first = fields.field() else { return session.filter.recipientWithoutAddress(actions: self) }
                var parameters: [String] = []
                while parameters.count < maximumArguments - 1, let parameter = fields.string() {
                    parameters.append(parameter)
                }
                return try first.withMemoryRebound(to: UInt8.self) {
                    try session.filter.recipient($0, parameters: parameters, actions: self)
                }
            }
        case .header:
            answer(.header) { session in
                var fields = PayloadFields(payload)
                if let name = fields.field(), let value = fields.field() {
                    session.filter.header(
                        name: UnsafeRawBufferPointer(rebasing: name.prefix(64)),
                        value: { String(decoding: value, as: UTF8.self) })
                }
                return .proceed
            }
        case .data:
            answer(.data) { _ in .proceed }
        case .endOfMessage:
            let started = LatencyHistogram.now()
            answer(.eom) { session in try session.filter.endOfMessage(actions: self) }
            runtime.metrics.endOfMessage.record(since: started)
        case .abort:
            session?.filter.abort()
            forgetMacros(from: .mail)
        case .quit:
            return false
        case .quitNewConnection:
            // Another SMTP session on the same connection: a new session, the negotiation kept.
            if session != nil {
                session = nil
                runtime.metrics.connectionClosed()
            }
            for slot in macros.indices { macros[slot].removeAll(keepingCapacity: true) }
        case .helo, .endOfHeaders, .body, .unknown:
            // Negotiated away; answered should they come.
            append(.continue)
        }
        return true
    }

    private func negotiate(_ payload: UnsafeRawBufferPointer) -> Bool {
        var fields = PayloadFields(payload)
        guard let version = fields.uint32(), let offeredActions = fields.uint32(), let offeredSteps = fields.uint32(),
            version >= 2
        else { return false }
        let current = connectionSession()
        let needs = Negotiation(
            rules: current.snapshot.rules, noReply: current.snapshot.settings.noReply,
            offeredSteps: UInt(offeredSteps))
        guard UInt(offeredActions) & needs.actions == needs.actions else {
            current.logger.error(
                "the MTA does not offer the actions splitmilter needs; refusing the connection",
                metadata: ["offered": "\(offeredActions)", "needed": "\(needs.actions)"])
            return false
        }
        noReplySteps = needs.noReplySteps
        appendLength(13, .optionNegotiation)
        for word in [
            min(version, 6), UInt32(truncatingIfNeeded: needs.actions), UInt32(truncatingIfNeeded: needs.steps),
        ] {
            output.append(UInt8(truncatingIfNeeded: word >> 24))
            output.append(UInt8(truncatingIfNeeded: word >> 16))
            output.append(UInt8(truncatingIfNeeded: word >> 8))
            output.append(UInt8(truncatingIfNeeded: word))
        }
        return true
    }

    /// The connection's session, made with the current rules on first use.
    private func connectionSession() -> Session {
        if let session { return session }
        let created = Session(runtime.snapshot)
        session = created
        runtime.metrics.connectionOpened()
        return created
    }

    /// Runs one step's logic and writes its answer, as `Callbacks.guarded` does for libmilter:
    /// a thrown error answers TEMPFAIL, or, in a no-reply step, is remembered for end of message.
    private func answer(_ step: SessionStep, _ body: (Session) throws -> StepAnswer) {
        let current = connectionSession()
        let result = Callbacks.run(step, current, noReplySteps: noReplySteps, actions: self) { try body(current) }
        defer { pendingReply = nil }
        switch result {
        case nil: break
        case .proceed: append(.continue)
        case .reject, .tempfail:
            if let pendingReply {
                append(.replyCode, pendingReply)
            } else {
                append(result == .reject ? .reject : .tempfail)
            }
        }
    }

    /// Drops the macros last sent for the commands from `first` on (a new message starts).
    private func forgetMacros(from first: MacroSlot.Slot) {
        for slot in first.rawValue..<MacroSlot.count { macros[slot].removeAll(keepingCapacity: true) }
    }

    // MARK: MilterActions

    /// The value of macro `name`, looked for as `smfi_getsymval` does (`MacroSlot.lookupOrder`).
    func macro(_ name: String) -> String? {
        for slot in MacroSlot.lookupOrder where !macros[slot.rawValue].isEmpty {
            if let value = macros[slot.rawValue].withUnsafeBytes({ PayloadFields.macro(name, in: $0) }) {
                return value
            }
        }
        return nil
    }

    func setReply(code: String, enhanced: String, text: String) throws {
        pendingReply = "\(code) \(enhanced) \(text.asReplyText)"
    }

    func addRecipient(_ address: String, parameters: AddedParameters) throws {
        parameters.withCString { text in
            let count = strlen(text)
            appendLength(1 + Self.cLength(address) + 1 + count + 1, .addRecipientWithArguments)
            appendField(address)
            output.append(contentsOf: UnsafeRawBufferPointer(start: text, count: count))
            output.append(0)
        }
    }

    func deleteRecipient(_ recipient: String) throws { append(.deleteRecipient, recipient) }

    func addHeader(name: String, value: String) throws { append(.addHeader, name, value) }
}

/// Where the engine keeps each command's macros: the commands Postfix sends macros for, in the
/// order of a session.
enum MacroSlot {
    enum Slot: Int {
        case connect, helo, mail, recipient, data, endOfHeaders, endOfMessage
    }
    static let count = 7

    /// libmilter's order (`smfi_getsymval`): end of headers, end of message, DATA, RCPT, MAIL,
    /// HELO, CONNECT; the first match counts.
    static let lookupOrder: [Slot] = [.endOfHeaders, .endOfMessage, .data, .recipient, .mail, .helo, .connect]

    /// The slot of a command code (SMFIC_*); nil for a command without macros.
    static func of(_ code: UInt8) -> Int? {
        switch CommandCode(rawValue: code) {
        case .connect: Slot.connect.rawValue
        case .helo: Slot.helo.rawValue
        case .mail: Slot.mail.rawValue
        case .recipient: Slot.recipient.rawValue
        case .data: Slot.data.rawValue
        case .endOfHeaders: Slot.endOfHeaders.rawValue
        case .endOfMessage: Slot.endOfMessage.rawValue
        default: nil
        }
    }
}
