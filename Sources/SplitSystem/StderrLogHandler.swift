/// Log lines on standard error, one `write` per line: `splitmilter: info: <message> key=value…`.
///
/// libmilter itself logs only to syslog; everything the daemon says goes here, where systemd's
/// journal, a terminal or a test harness can read it.

import Glibc
import Logging
import SplitCore

public struct StderrLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    let label: String

    public init(label: String) { self.label = label }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var line = "\(label): \(event.level): \(event.message)"
        let merged = metadata.merging(event.metadata ?? [:]) { _, new in new }
        for key in merged.keys.sorted() {
            if let value = merged[key] { line += " \(key)=\(value)" }
        }
        line += "\n"
        var stream = StandardError()
        stream.write(line)
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
                let n = Glibc.write(2, buffer.baseAddress.map { $0 + offset }, buffer.count - offset)
                if n <= 0 {
                    if errno == EINTR { continue }
                    return
                }
                offset += n
            }
        }
    }
}

public enum RuleReport {
    /// `N domains, N users, N rules in N files` for `--check` and `milter-test check`.
    public static func summary(_ ruleSet: SplitCore.RuleSet) -> String {
        let domains = ruleSet.domains.reduce(0) { $0 + $1.names.count }
        return
            "\(domains) domain\(domains == 1 ? "" : "s"), \(ruleSet.userCount) listed user\(ruleSet.userCount == 1 ? "" : "s"), "
            + "\(ruleSet.ruleCount) rule\(ruleSet.ruleCount == 1 ? "" : "s"), \(ruleSet.files.count) file\(ruleSet.files.count == 1 ? "" : "s")"
    }
}
