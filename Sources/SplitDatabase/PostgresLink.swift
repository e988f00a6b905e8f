/// One connection to PostgreSQL through libpq: the only code that calls libpq.
///
/// Invariants:
/// - Used by one thread at a time (the follower's); libpq connections are not shared.
/// - Every libpq failure comes back as a `DatabaseError` with libpq's own text; a result is cleared
///   on every path.
/// - Rows are streamed with `COPY … TO STDOUT` (text format), one buffer a row: a million rows are
///   never one result in memory. Fields are unescaped as COPY's text format escapes them.
/// - Waiting for a notification is `poll()` on libpq's socket with a timeout: a dead server ends
///   the wait with an error (keepalives, `tcp_user_timeout`), never a hang.

internal import CPostgresShim
import Glibc

public struct DatabaseError: Error, CustomStringConvertible, Sendable {
    public let description: String

    init(_ description: String) {
        // libpq's messages end with a newline and may span lines: one line for the log.
        self.description = description.split(whereSeparator: \.isWhitespace).joined(separator: " ")
    }
}

final class PostgresLink {
    private let connection: OpaquePointer

    /// Connects; `parameters` are libpq keywords and values (`DatabaseSettings`).
    init(parameters: [(String, String)]) throws(DatabaseError) {
        let keys = parameters.map { strdup($0.0) } + [nil]
        let values = parameters.map { strdup($0.1) } + [nil]
        defer {
            for key in keys { free(key) }
            // The password is among the values: wiped before it is freed.
            for value in values {
                if let value { memset(value, 0, strlen(value)) }
                free(value)
            }
        }
        let made = keys.map { UnsafePointer($0) }.withUnsafeBufferPointer { keyPointers in
            values.map { UnsafePointer($0) }.withUnsafeBufferPointer { valuePointers in
                PQconnectdbParams(keyPointers.baseAddress, valuePointers.baseAddress, 0)
            }
        }
        guard let made else { throw DatabaseError("libpq could not allocate a connection") }
        guard PQstatus(made) == CONNECTION_OK else {
            let message = String(cString: PQerrorMessage(made))
            PQfinish(made)
            throw DatabaseError(message)
        }
        // libpq would print the server's notices and its closing FATAL to stderr, outside the
        // daemon's log format; what matters reaches the follower as an error, which it logs.
        PQsetNoticeProcessor(made, { _, _ in }, nil)
        connection = made
    }

    deinit { PQfinish(connection) }

    /// How the connection travels, for the log lines: `over TLSv1.3` or `without TLS` (under
    /// `sslmode=prefer`, the default for this machine, either may happen).
    var transport: String {
        guard PQsslInUse(connection) == 1 else { return "without TLS" }
        guard let version = PQsslAttribute(connection, "protocol") else { return "over TLS" }
        return "over \(String(cString: version))"
    }

    /// Runs `sql` (no parameters: only the follower's own statements) and returns the rows as text
    /// (nil for NULL).
    @discardableResult
    func query(_ sql: String) throws(DatabaseError) -> [[String?]] {
        guard let result = PQexec(connection, sql) else { throw DatabaseError(lastError) }
        defer { PQclear(result) }
        let status = PQresultStatus(result)
        guard status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK else {
            throw DatabaseError(String(cString: PQresultErrorMessage(result)))
        }
        var rows: [[String?]] = []
        for row in 0..<PQntuples(result) {
            rows.append(
                (0..<PQnfields(result)).map { field in
                    PQgetisnull(result, row, field) == 1 ? nil : String(cString: PQgetvalue(result, row, field))
                })
        }
        return rows
    }

    /// Runs `COPY (query) TO STDOUT` and calls `row` with each row's fields (nil for NULL).
    func copyRows(_ query: String, row: ([String?]) throws(DatabaseError) -> Void) throws(DatabaseError) {
        guard let started = PQexec(connection, "COPY (\(query)) TO STDOUT") else { throw DatabaseError(lastError) }
        let status = PQresultStatus(started)
        let startError = String(cString: PQresultErrorMessage(started))
        PQclear(started)
        guard status == PGRES_COPY_OUT else { throw DatabaseError(startError) }
        var fields: [String?] = []
        while true {
            var buffer: UnsafeMutablePointer<CChar>?
            let length = PQgetCopyData(connection, &buffer, 0)
            if length == -1 { break }
            guard length >= 0, let buffer else { throw DatabaseError(lastError) }
            defer { PQfreemem(buffer) }
            buffer.withMemoryRebound(to: UInt8.self, capacity: Int(length)) { bytes in
                Self.fields(UnsafeBufferPointer(start: bytes, count: Int(length)), into: &fields)
            }
            try row(fields)
        }
        // The COPY's own result, then the end of the command.
        while let result = PQgetResult(connection) {
            defer { PQclear(result) }
            guard PQresultStatus(result) == PGRES_COMMAND_OK else {
                throw DatabaseError(String(cString: PQresultErrorMessage(result)))
            }
        }
    }

    /// Waits up to `timeout` seconds for a notification on a channel this connection listens on;
    /// true when one (or more) came, all of them consumed.
    func waitForNotification(timeout: Double) throws(DatabaseError) -> Bool {
        if try drainNotifications() { return true }
        var descriptor = pollfd(fd: PQsocket(connection), events: Int16(POLLIN), revents: 0)
        guard descriptor.fd >= 0 else { throw DatabaseError("the connection has no socket") }
        let ready = poll(&descriptor, 1, Int32(timeout * 1000))
        if ready < 0, errno != EINTR { throw DatabaseError("poll: \(String(cString: strerror(errno)))") }
        guard ready > 0 else { return false }
        guard PQconsumeInput(connection) == 1 else { throw DatabaseError(lastError) }
        return try drainNotifications()
    }

    private func drainNotifications() throws(DatabaseError) -> Bool {
        var any = false
        while let notification = PQnotifies(connection) {
            PQfreemem(notification)
            any = true
        }
        guard PQstatus(connection) == CONNECTION_OK else { throw DatabaseError(lastError) }
        return any
    }

    private var lastError: String { String(cString: PQerrorMessage(connection)) }

    /// Splits one COPY text-format row (as libpq hands it, with its newline) into fields:
    /// tab-separated, `\N` alone is NULL, backslash escapes `\t \n \r \\ \b \f \v` and octal `\ddd`.
    static func fields(_ bytes: UnsafeBufferPointer<UInt8>, into fields: inout [String?]) {
        fields.removeAll(keepingCapacity: true)
        var end = bytes.count
        if end > 0, bytes[end - 1] == UInt8(ascii: "\n") { end -= 1 }
        var field: [UInt8] = []
        var index = 0
        var rawNull = false
        while index <= end {
            if index == end || bytes[index] == UInt8(ascii: "\t") {
                fields.append(rawNull ? nil : String(decoding: field, as: UTF8.self))
                field.removeAll(keepingCapacity: true)
                rawNull = false
                index += 1
                continue
            }
            let byte = bytes[index]
            guard byte == UInt8(ascii: "\\"), index + 1 < end else {
                field.append(byte)
                index += 1
                continue
            }
            let next = bytes[index + 1]
            index += 2
            switch next {
            case UInt8(ascii: "N") where field.isEmpty && (index == end || bytes[index] == UInt8(ascii: "\t")):
                rawNull = true
            case UInt8(ascii: "t"): field.append(0x09)
            case UInt8(ascii: "n"): field.append(0x0A)
            case UInt8(ascii: "r"): field.append(0x0D)
            case UInt8(ascii: "b"): field.append(0x08)
            case UInt8(ascii: "f"): field.append(0x0C)
            case UInt8(ascii: "v"): field.append(0x0B)
            case UInt8(ascii: "0")...UInt8(ascii: "7"):
                var value = Int(next - UInt8(ascii: "0"))
                var digits = 1
                while digits < 3, index < end, (UInt8(ascii: "0")...UInt8(ascii: "7")).contains(bytes[index]) {
                    value = value * 8 + Int(bytes[index] - UInt8(ascii: "0"))
                    index += 1
                    digits += 1
                }
                field.append(UInt8(truncatingIfNeeded: value))
            default: field.append(next)
            }
        }
    }
}
