/// The stable renderings of replies and modifications: one line of text each, and a JSON
/// object each (through `Encodable`). Golden files and people both read these, so the forms
/// below are a contract: change them only on purpose.
///
///     continue | accept | reject | tempfail | discard | skip | conn-fail | shutdown
///     reply 550 5.7.1 text
///     add-rcpt <x@y> NOTIFY=NEVER ORCPT=rfc822;a@b
///     del-rcpt <x@y>
///     add-header X-Foo: bar
///     insert-header 1 X-Foo: bar
///     change-header X-Foo[1]: bar
///     delete-header X-Foo[1]                  (a change with an empty value)
///     replace-body 123 bytes
///     change-from <x@y> SIZE=100
///     quarantine "reason"
///
/// Addresses, names and values appear exactly as the milter sent them, except that control
/// characters and backslashes are escaped (`\n`, `\r`, `\t`, `\\`, `\xHH`) so each rendering
/// stays on one line.

extension Reply: CustomStringConvertible {
    /// The word for this reply's kind: `continue`, `reject`, `reply` …
    public var name: String {
        switch self {
        case .continue: "continue"
        case .accept: "accept"
        case .reject: "reject"
        case .tempfail: "tempfail"
        case .discard: "discard"
        case .skip: "skip"
        case .connectionFailure: "conn-fail"
        case .shutdown: "shutdown"
        case .replyCode: "reply"
        }
    }

    public var description: String {
        if case .replyCode(let reply) = self { return "reply \(escaped(reply.text))" }
        return name
    }
}

extension Reply: Encodable {
    private enum Key: String, CodingKey { case action, code, text }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Key.self)
        try container.encode(name, forKey: .action)
        if case .replyCode(let reply) = self {
            try container.encode(reply.code, forKey: .code)
            try container.encode(reply.text, forKey: .text)
        }
    }
}

extension Modification: CustomStringConvertible {
    /// The word that starts this modification's text form: `add-rcpt`, `change-header` …
    public var name: String {
        switch self {
        case .addRecipient, .addRecipientWithArguments: "add-rcpt"
        case .deleteRecipient: "del-rcpt"
        case .addHeader: "add-header"
        case .insertHeader: "insert-header"
        case .changeHeader(_, _, let value): value.isEmpty ? "delete-header" : "change-header"
        case .replaceBody: "replace-body"
        case .changeSender: "change-from"
        case .quarantine: "quarantine"
        }
    }

    public var description: String {
        switch self {
        case .addRecipient(let address), .deleteRecipient(let address):
            "\(name) \(escaped(address))"
        case .addRecipientWithArguments(let address, let arguments), .changeSender(let address, let arguments):
            ([name, address] + arguments).map { escaped($0) }.joined(separator: " ")
        case .addHeader(let headerName, let value):
            "\(name) \(escaped(headerName)): \(escaped(value))"
        case .insertHeader(let index, let headerName, let value):
            "\(name) \(index) \(escaped(headerName)): \(escaped(value))"
        case .changeHeader(let index, let headerName, let value):
            value.isEmpty
                ? "\(name) \(escaped(headerName))[\(index)]"
                : "\(name) \(escaped(headerName))[\(index)]: \(escaped(value))"
        case .replaceBody(let bytes):
            "\(name) \(bytes.count) bytes"
        case .quarantine(let reason):
            "\(name) \"\(escaped(reason, quote: true))\""
        }
    }
}

extension Modification: Encodable {
    private enum Key: String, CodingKey {
        case action, address, arguments, name, value, index, length, body, reason, text
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Key.self)
        try container.encode(self.name, forKey: .action)
        switch self {
        case .addRecipient(let address), .deleteRecipient(let address):
            try container.encode(address, forKey: .address)
        case .addRecipientWithArguments(let address, let arguments), .changeSender(let address, let arguments):
            try container.encode(address, forKey: .address)
            try container.encode(arguments, forKey: .arguments)
        case .addHeader(let name, let value):
            try container.encode(name, forKey: .name)
            try container.encode(value, forKey: .value)
        case .insertHeader(let index, let name, let value), .changeHeader(let index, let name, let value):
            try container.encode(index, forKey: .index)
            try container.encode(name, forKey: .name)
            if !value.isEmpty || self.code == .insertHeader { try container.encode(value, forKey: .value) }
        case .replaceBody(let bytes):
            try container.encode(bytes.count, forKey: .length)
            try container.encode(String(decoding: bytes, as: UTF8.self), forKey: .body)
        case .quarantine(let reason):
            try container.encode(reason, forKey: .reason)
        }
        try container.encode(description, forKey: .text)
    }
}

/// `text` with control characters and backslashes escaped so it prints on one line;
/// with `quote`, double quotes too.
func escaped(_ text: String, quote: Bool = false) -> String {
    var result = ""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\\": result += "\\\\"
        case "\n": result += "\\n"
        case "\r": result += "\\r"
        case "\t": result += "\\t"
        case "\"" where quote: result += "\\\""
        case _ where scalar.value < 0x20 || scalar.value == 0x7F:
            result += "\\x" + String(hex(UInt8(truncatingIfNeeded: scalar.value)).dropFirst(2))
        default: result.unicodeScalars.append(scalar)
        }
    }
    return result
}
