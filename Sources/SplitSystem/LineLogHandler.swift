/// The daemon's log lines, one per event, to standard error, the journal or syslog.
///
/// Invariants:
/// - One event is one line: every control character in the message and in metadata values is
///   escaped (`\x0D`), so no logged value (a recipient, a macro from the MTA) can start a forged
///   line of its own.
/// - One `write(2)` loop (or one `syslog(3)` call) per line: lines of different threads never
///   interleave mid-line.
///
/// libmilter itself logs only to syslog; everything splitmilter says goes through here.

import Glibc
import Logging
import SystemCall

/// Where log lines go and how they look.
public enum LogDestination: Sendable, Equatable {
    /// `splitmilter: info: message`, for a terminal or a test harness.
    case standardError
    /// `<6>message`, `<4>warning: message`: standard error read by systemd's journal, which takes
    /// the priority from the prefix (`journalctl -p warning` works) and adds the name itself.
    case journal
    /// syslog(3) with facility mail and ident `splitmilter[pid]`: `/var/log/mail.log`, beside
    /// Postfix's lines for the same queue id.
    case syslog

    /// `--log auto`: the journal's form when systemd connected standard error to it
    /// (`JOURNAL_STREAM` names stderr's device and inode), plain standard error otherwise.
    public static var automatic: LogDestination {
        guard let stream = getenv("JOURNAL_STREAM").map({ String(cString: $0) }) else { return .standardError }
        var info = stat()
        guard fstat(2, &info) == 0 else { return .standardError }
        return stream == "\(info.st_dev):\(info.st_ino)" ? .journal : .standardError
    }
}

public struct LineLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    let label: String
    let destination: LogDestination

    /// For `.syslog`, call `LineLogHandler.openSyslog()` once first.
    public init(label: String, destination: LogDestination) {
        self.label = label
        self.destination = destination
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// Opens the syslog connection: facility mail, ident `splitmilter`, with the pid. Call once:
    /// openlog(3) keeps the ident pointer, so it is allocated here and never freed.
    public static func openSyslog() {
        openlog(strdup("splitmilter"), LOG_PID | LOG_NDELAY, LOG_MAIL)
    }

    public func log(event: LogEvent) {
        var text = LogText.escaped("\(event.message)")
        let merged = metadata.merging(event.metadata ?? [:]) { _, new in new }
        for key in merged.keys.sorted() {
            if let value = merged[key] { text += " \(key)=\(LogText.escaped("\(value)"))" }
        }
        let priority = LogText.priority(event.level)
        switch destination {
        case .standardError:
            var stream = StandardError()
            stream.write("\(label): \(event.level): \(text)\n")
        case .journal:
            var stream = StandardError()
            stream.write("<\(priority)>\(LogText.postfixPrefix(event.level))\(text)\n")
        case .syslog:
            let line = LogText.postfixPrefix(event.level) + text
            line.withCString { cString in withVaList([cString]) { vsyslog(priority, "%s", $0) } }
        }
    }
}

/// The pieces of a log line, pure so that tests can pin them.
public enum LogText {
    /// `text` with every C0 and C1 control character and DEL written as `\xNN`.
    public static func escaped(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: isControl) else { return text }
        var out = ""
        for scalar in text.unicodeScalars {
            if isControl(scalar) {
                let hex = String(scalar.value, radix: 16, uppercase: true)
                out += "\\x" + (hex.count < 2 ? "0" + hex : hex)
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || (scalar.value >= 0x7F && scalar.value < 0xA0)
    }

    /// The syslog(3) priority of a level (also the journal's `<N>` prefix).
    public static func priority(_ level: Logger.Level) -> Int32 {
        switch level {
        case .trace, .debug: LOG_DEBUG
        case .info: LOG_INFO
        case .notice: LOG_NOTICE
        case .warning: LOG_WARNING
        case .error: LOG_ERR
        case .critical: LOG_CRIT
        }
    }

    /// Postfix's convention: no prefix for information, `warning: ` and `error: ` for trouble,
    /// `fatal: ` for what stops the daemon.
    public static func postfixPrefix(_ level: Logger.Level) -> String {
        switch level {
        case .trace, .debug, .info, .notice: ""
        case .warning: "warning: "
        case .error: "error: "
        case .critical: "fatal: "
        }
    }
}

/// Standard error as a `TextOutputStream`; each `write` is one write(2) loop, so lines from
/// different threads do not interleave mid-line.
public struct StandardError: TextOutputStream {
    public init() {}

    public mutating func write(_ string: String) {
        var bytes = Array(string.utf8)
        bytes.withUnsafeMutableBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let n = SystemCallError.retrying {
                    Glibc.write(2, buffer.baseAddress.map { $0 + offset }, buffer.count - offset)
                }
                if n <= 0 { return }
                offset += n
            }
        }
    }
}
