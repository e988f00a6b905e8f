/// The one choke point between Swift and libmilter's C API.
///
/// Every `smfi_*` call the daemon makes goes through here, and every failure comes back as a
/// `LibmilterError` naming the C function, so no return code is ever dropped: a modification that
/// libmilter refuses (e.g. an action that was not negotiated) must turn the message into a
/// temporary failure, never into a message delivered without its copies.
///
/// Strings reach C through `withCString`, never as an implicit `String` argument: the implicit
/// conversion copies the string into a new array at every call (two per added recipient), where
/// `withCString` hands over the string's own bytes. A copy's parameters are written into one
/// temporary C string from their parts (`AddedParameters.withCString`).

internal import CMilterShim
import SplitCore

struct LibmilterError: Error, CustomStringConvertible {
    let function: String
    let detail: String

    var description: String { "\(function) failed: \(detail)" }
}

/// A libmilter connection context, valid only inside the callback it was handed to.
struct MilterContext: MilterActions {
    let pointer: OpaquePointer

    func macro(_ name: String) -> String? { Libmilter.macro(self, name) }
    func setReply(code: String, enhanced: String, text: String) throws {
        try Libmilter.setReply(self, code: code, enhanced: enhanced, text: text)
    }
    func addRecipient(_ address: String, parameters: AddedParameters) throws {
        try Libmilter.addRecipient(self, address, parameters: parameters)
    }
    func deleteRecipient(_ recipient: String) throws { try Libmilter.deleteRecipient(self, recipient) }
    func addHeader(name: String, value: String) throws { try Libmilter.addHeader(self, name: name, value: value) }
}

enum Libmilter {
    static func check(_ rc: Int32, _ function: String, _ detail: @autoclosure () -> String) throws {
        guard rc == MI_SUCCESS else { throw LibmilterError(function: function, detail: detail()) }
    }

    static func addRecipient(_ ctx: MilterContext, _ address: String, parameters: AddedParameters) throws {
        var rc: Int32 = 0
        address.withCString { address in parameters.withCString { rc = cmilter_addrcpt_par(ctx.pointer, address, $0) } }
        try check(rc, "smfi_addrcpt_par", "<\(address)> \(parameters)")
    }

    static func deleteRecipient(_ ctx: MilterContext, _ recipient: String) throws {
        try check(recipient.withCString { cmilter_delrcpt(ctx.pointer, $0) }, "smfi_delrcpt", recipient)
    }

    static func addHeader(_ ctx: MilterContext, name: String, value: String) throws {
        let rc = name.withCString { name in value.withCString { cmilter_addheader(ctx.pointer, name, $0) } }
        try check(rc, "smfi_addheader", "\(name): \(value)")
    }

    /// Sets the SMTP reply used when the callback returns REJECT or TEMPFAIL. The text must hold no
    /// CR/LF and `%` must be doubled (Postfix drops a lone `%`).
    static func setReply(_ ctx: MilterContext, code: String, enhanced: String, text: String) throws {
        let safe = text.asReplyText
        let rc = code.withCString { code in
            enhanced.withCString { enhanced in safe.withCString { cmilter_setreply(ctx.pointer, code, enhanced, $0) } }
        }
        try check(rc, "smfi_setreply", "\(code) \(enhanced) \(safe)")
    }

    /// A macro's value, or nil when the MTA did not send it.
    static func macro(_ ctx: MilterContext, _ name: String) -> String? {
        guard let value = name.withCString({ cmilter_getsymval(ctx.pointer, $0) }) else { return nil }
        return String(cString: value)
    }

    static func setPrivate(_ ctx: MilterContext, _ pointer: UnsafeMutableRawPointer?) throws {
        try check(smfi_setpriv(ctx.pointer, pointer), "smfi_setpriv", "context")
    }

    static func getPrivate(_ ctx: MilterContext) -> UnsafeMutableRawPointer? {
        smfi_getpriv(ctx.pointer)
    }

    static func setConnection(_ spec: String) throws {
        try check(spec.withCString { cmilter_setconn($0) }, "smfi_setconn", spec)
    }

    /// How long a connection may wait for the MTA's next command (docs/postfix-milter.md, "Failure handling and timeouts").
    static func setTimeout(_ seconds: Int) throws {
        try check(smfi_settimeout(Int32(clamping: seconds)), "smfi_settimeout", "\(seconds) s")
    }

    static func openSocket() throws {
        try check(smfi_opensocket(false), "smfi_opensocket", "libmilter logs the reason to syslog only")
    }

    static func register(_ description: smfiDesc) throws {
        try check(smfi_register(description), "smfi_register", "version or flags refused")
    }

    /// Runs the accept loop until SIGTERM, SIGHUP or SIGINT (libmilter's signal thread) or `stop()`.
    static func main() throws {
        try check(smfi_main(), "smfi_main", "libmilter logs the reason to syslog only")
    }

    static func stop() { _ = smfi_stop() }
}

extension String {
    /// The text as an SMTP reply may carry it, for either engine: printable ASCII only (no CR/LF),
    /// at most 900 characters (libmilter takes 980 in all), `%` doubled (Postfix drops a lone `%`).
    var asReplyText: String {
        var out = ""
        for c in unicodeScalars.filter({ $0.value >= 0x20 && $0.value < 0x7F }).prefix(900) {
            out += c == "%" ? "%%" : String(c)
        }
        return out
    }
}
