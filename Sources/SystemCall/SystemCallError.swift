/// The one edge between Swift and a failing system call, shared by the daemon (its milter engine,
/// the metrics listener) and the client (`MilterClient`): a call retried while it fails with EINTR,
/// and a -1 turned into a typed error that names the call and keeps its errno.
///
/// Invariant: `errno` is read right after the call that set it, before anything else can change it.

import Glibc

public struct SystemCallError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The C function, as a log line names it (`read`, `setsockopt(SO_REUSEADDR)`).
    public let call: String
    /// Its errno; nil for a failure reported otherwise (`getaddrinfo`'s codes).
    public let code: Int32?
    public let text: String

    public init(call: String, code: Int32) {
        self.call = call
        self.code = code
        text = Self.text(code)
    }

    /// A failure with its own text, not an errno.
    public init(call: String, text: String) {
        self.call = call
        code = nil
        self.text = text
    }

    public var description: String { "\(call): \(text)" }

    /// A blocking read or write bounded by SO_RCVTIMEO or SO_SNDTIMEO ran out of time.
    public var isTimeout: Bool { code == EAGAIN || code == EWOULDBLOCK }

    /// The system's text for an errno.
    public static func text(_ code: Int32) -> String { String(cString: strerror(code)) }

    /// The call's result, retried while it fails with EINTR; -1 and errno as it left them otherwise.
    public static func retrying<Result: BinaryInteger>(_ call: () -> Result) -> Result {
        while true {
            let result = call()
            if result != -1 || errno != EINTR { return result }
        }
    }

    /// The call's result; -1 (after EINTR's retries) thrown as an error naming the call.
    @discardableResult
    public static func check<Result: BinaryInteger>(_ name: String, _ call: () -> Result) throws(SystemCallError)
        -> Result
    {
        let result = retrying(call)
        guard result == -1 else { return result }
        throw SystemCallError(call: name, code: errno)
    }
}
