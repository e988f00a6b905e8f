/// `splitmilter --database FILE`: where the rows of `pgsql:` lists come from. One `key = value` a
/// line, `#` comments, the keys named as libpq names its connection parameters:
///
///     host = db.example.org          # a name, an address, or a unix socket folder
///     port = 5432
///     dbname = mail
///     user = splitmilter             # a role with SELECT on schema splitmilter, nothing more
///     password_file = /etc/splitmilter/database.password
///     sslmode = verify-full          # default: verify-full, or prefer for 127.0.0.1, ::1, localhost, a socket
///                                    # (every host of a list)
///     sslrootcert = /etc/ssl/certs/ca-certificates.crt
///     connect_timeout = 5
///     cache = /var/lib/splitmilter/database.cache
///
/// Invariants: every error has its `file:line:col`; the password is never a key of this file (it
/// would show wherever the file is shown), only read from `password_file`, which must be readable
/// by its owner alone (`DatabasePassword`); a host that is not the machine itself gets a verified
/// TLS connection unless the file says otherwise.

import SplitCore

public struct DatabaseSettings: Sendable, Equatable {
    public var host = "/var/run/postgresql"
    public var port = 5432
    public var dbname = "mail"
    public var user = "splitmilter"
    public var passwordFile: String?
    public var sslmode: String?
    public var sslrootcert: String?
    public var sslcert: String?
    public var sslkey: String?
    public var connectTimeout = 5
    public var cache = "/var/lib/splitmilter/database.cache"

    public static let sslmodes = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
    static let keys = [
        "host", "port", "dbname", "user", "password_file", "sslmode", "sslrootcert", "sslcert", "sslkey",
        "connect_timeout", "cache",
    ]

    public init() {}

    /// Every host of `host` (libpq takes a comma-separated list) is a unix socket folder, or this
    /// machine: `localhost`, `::1`, or an address of 127.0.0.0/8 in four numbers. A name that only
    /// starts like one (`127.db.example.org`) is elsewhere.
    public var isLocal: Bool {
        host.split(separator: ",", omittingEmptySubsequences: false).allSatisfy { one in
            one.hasPrefix("/") || one == "localhost" || one == "::1" || Self.isLoopbackIPv4(one)
        }
    }

    static func isLoopbackIPv4(_ text: Substring) -> Bool {
        let numbers = text.split(separator: ".", omittingEmptySubsequences: false)
        return numbers.count == 4 && numbers[0] == "127"
            && numbers.allSatisfy { number in
                (1...3).contains(number.utf8.count) && number.utf8.allSatisfy { (0x30...0x39).contains($0) }
                    && Int(number)! <= 255
            }
    }

    /// The sslmode in force: the file's, or verify-full for a host elsewhere and prefer here.
    public var effectiveSSLMode: String { sslmode ?? (isLocal ? "prefer" : "verify-full") }

    /// libpq's keywords and values (without the password), in a fixed order.
    public func connectionParameters(password: String?) -> [(String, String)] {
        var parameters: [(String, String)] = [
            ("host", host), ("port", String(port)), ("dbname", dbname), ("user", user),
            ("sslmode", effectiveSSLMode), ("connect_timeout", String(connectTimeout)),
            ("application_name", "splitmilter"),
            // A dead server is noticed in about 30 s, not after the kernel's two hours.
            ("keepalives", "1"), ("keepalives_idle", "10"), ("keepalives_interval", "5"), ("keepalives_count", "3"),
            ("tcp_user_timeout", "30000"),
            ("options", "-c default_transaction_read_only=on"),
        ]
        let verifies = effectiveSSLMode.hasPrefix("verify-")
        if let root = sslrootcert ?? (verifies ? "/etc/ssl/certs/ca-certificates.crt" : nil) {
            parameters.append(("sslrootcert", root))
        }
        if let sslcert { parameters.append(("sslcert", sslcert)) }
        if let sslkey { parameters.append(("sslkey", sslkey)) }
        if let password { parameters.append(("password", password)) }
        return parameters
    }

    /// For the log: where, as whom, how (never the password).
    public var description: String {
        let place = host.hasPrefix("/") ? "\(host)/.s.PGSQL.\(port)" : "\(host):\(port)"
        return "postgresql://\(user)@\(place)/\(dbname) (sslmode=\(effectiveSSLMode))"
    }

    /// Parses the file's text; every problem is a diagnostic at its place.
    public static func parse(_ bytes: [UInt8], path: String) -> Result<DatabaseSettings, DatabaseSettingsErrors> {
        var settings = DatabaseSettings()
        var diagnostics: [Diagnostic] = []
        var seen: [String: Int] = [:]
        var number = 0
        for rawLine in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            number += 1
            let text = String(decoding: rawLine, as: UTF8.self)
            let content = text.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            guard content.contains(where: { !$0.isWhitespace }) else { continue }
            let column =
                (content.firstIndex { !$0.isWhitespace }).map { content.distance(from: content.startIndex, to: $0) + 1 }
                ?? 1
            let at = SourceLocation(file: path, line: number, column: column)
            guard let equals = content.firstIndex(of: "=") else {
                diagnostics.append(.error("expected 'key = value'", at: at))
                continue
            }
            let key = content[..<equals].trimmingBlanks
            let value = String(content[content.index(after: equals)...].trimmingBlanks)
            let valueAt = SourceLocation(
                file: path, line: number, column: content.distance(from: content.startIndex, to: equals) + 2)
            guard keys.contains(String(key)) else {
                diagnostics.append(
                    .error("unknown key '\(key)'; expected one of: \(keys.joined(separator: ", "))", at: at))
                continue
            }
            if let first = seen[String(key)] {
                diagnostics.append(.error("duplicate '\(key)'; first at line \(first)", at: at))
                continue
            }
            seen[String(key)] = number
            if value.isEmpty || value.utf8.count > 4096 || value.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }) {
                diagnostics.append(.error("'\(key)' needs a value of 1 to 4096 printable bytes", at: valueAt))
                continue
            }
            if let problem = settings.set(String(key), value) {
                diagnostics.append(.error(problem, at: valueAt))
            }
        }
        if settings.passwordFile == nil, !settings.host.hasPrefix("/") {
            diagnostics.append(
                .warning(
                    "no 'password_file': the connection to \(settings.host) must then be allowed without a password",
                    at: SourceLocation(file: path, line: 1)))
        }
        let errors = diagnostics.filter { $0.severity == .error }
        return errors.isEmpty ? .success(settings) : .failure(DatabaseSettingsErrors(diagnostics: diagnostics))
    }

    /// Sets one key; the problem with its value, or nil.
    mutating func set(_ key: String, _ value: String) -> String? {
        switch key {
        case "host": host = value
        case "port":
            guard let number = Int(value), (1...65535).contains(number) else { return "'port' takes 1 to 65535" }
            port = number
        case "dbname": dbname = value
        case "user": user = value
        case "password_file":
            guard value.hasPrefix("/") else { return "'password_file' takes an absolute path" }
            passwordFile = value
        case "sslmode":
            guard Self.sslmodes.contains(value) else {
                return "'sslmode' takes one of: \(Self.sslmodes.joined(separator: ", "))"
            }
            sslmode = value
        // Absolute, like password_file: libpq would read a relative path from the daemon's working
        // directory, which is not where the administrator wrote the file from.
        case "sslrootcert":
            guard value.hasPrefix("/") else { return "'sslrootcert' takes an absolute path" }
            sslrootcert = value
        case "sslcert":
            guard value.hasPrefix("/") else { return "'sslcert' takes an absolute path" }
            sslcert = value
        case "sslkey":
            guard value.hasPrefix("/") else { return "'sslkey' takes an absolute path" }
            sslkey = value
        case "connect_timeout":
            guard let seconds = Int(value), (1...300).contains(seconds) else {
                return "'connect_timeout' takes 1 to 300 seconds"
            }
            connectTimeout = seconds
        case "cache":
            guard value.hasPrefix("/") else { return "'cache' takes an absolute path" }
            cache = value
        default: return "unknown key '\(key)'"
        }
        return nil
    }
}

/// The diagnostics of a settings file with at least one error.
public struct DatabaseSettingsErrors: Error, CustomStringConvertible, Sendable {
    public let diagnostics: [Diagnostic]
    public var description: String { diagnostics.map(\.description).joined(separator: "\n") }
}

extension Substring {
    var trimmingBlanks: Substring {
        var text = self
        while let first = text.first, first == " " || first == "\t" || first == "\r" { text = text.dropFirst() }
        while let last = text.last, last == " " || last == "\t" || last == "\r" { text = text.dropLast() }
        return text
    }
}
