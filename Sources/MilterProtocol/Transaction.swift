/// What an MTA tells a milter about one SMTP session with one message: the client, HELO,
/// envelope and message, plus the macros it sends at each stage. Values only; the order
/// and the rules of telling are in `Conversation.swift`.
///
/// Macros follow Postfix 3.7's defaults (`milter_*_macros`): each stage has a list of names,
/// and only names with a value are sent. Values come from `--macro`-style overrides first,
/// then from the transaction itself (`{rcpt_addr}`, `{mail_addr}`, `_` …).

extension Transaction {
    /// An envelope address and its ESMTP arguments, as in `MAIL FROM:<a@b> SIZE=10`.
    ///
    /// Invariant: `address` has no angle brackets; `wireForm` adds them.
    public struct Address: Hashable, Sendable {
        public var address: String
        public var arguments: [String]

        public init(_ address: String, arguments: [String] = []) {
            self.address = Address.stripBrackets(address)
            self.arguments = arguments
        }

        /// Parses `a@b NOTIFY=NEVER ORCPT=rfc822;a@b`: the address, then whitespace-separated
        /// arguments. `<>` and the empty string are the null sender.
        public init(parsing text: String) {
            let words = text.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            self.init(words.first ?? "", arguments: Array(words.dropFirst()))
        }

        /// The address as an SMTP client writes it: `<a@b>`.
        public var wireForm: String { "<\(address)>" }

        /// The part after the last `@`, or nil.
        public var domain: String? {
            guard let at = address.lastIndex(of: "@") else { return nil }
            let domain = address[address.index(after: at)...]
            return domain.isEmpty ? nil : String(domain)
        }

        private static func stripBrackets(_ text: String) -> String {
            guard text.hasPrefix("<"), text.hasSuffix(">"), text.count >= 2 else { return text }
            return String(text.dropFirst().dropLast())
        }
    }
}

/// One header field as read from the message: the name, and the raw text after the colon
/// (leading space kept, continuation lines joined with "\n" as Postfix sends them).
public struct HeaderField: Hashable, Sendable {
    public var name: String
    public var rawValue: String

    public init(name: String, rawValue: String) {
        self.name = name
        self.rawValue = rawValue
    }

    /// The value as the milter receives it: Postfix (like Sendmail) drops one space after
    /// the colon unless the milter negotiated SMFIP_HDR_LEADSPC.
    public func value(leadingSpace: Bool) -> String {
        leadingSpace || !rawValue.hasPrefix(" ") ? rawValue : String(rawValue.dropFirst())
    }
}

/// A message split the way the MTA feeds it to a milter: header fields, then the body with
/// CRLF line ends.
public struct MailMessage: Hashable, Sendable {
    public var headers: [HeaderField]
    public var body: [UInt8]

    public init(headers: [HeaderField], body: [UInt8]) {
        self.headers = headers
        self.body = body
    }

    /// Splits RFC 5322 text (LF or CRLF line ends). A leading mbox `From ` line is dropped.
    /// The header section ends at the first empty line, or at the first line that is neither
    /// a field nor a continuation; that line then starts the body. Every body line gets a
    /// CRLF, as Postfix sends it.
    public init(parsing bytes: [UInt8]) {
        var lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false).map { line in
            line.last == 0x0D ? line.dropLast() : line
        }
        if bytes.last == 0x0A { lines.removeLast() }

        var headers: [HeaderField] = []
        var index = 0
        if let first = lines.first, first.starts(with: Array("From ".utf8)) {
            index = 1  // an mbox separator line, not part of the message
        }
        while index < lines.count {
            let line = lines[index]
            if line.isEmpty {
                index += 1
                break
            }
            if let first = line.first, first == 0x20 || first == 0x09, !headers.isEmpty {
                headers[headers.count - 1].rawValue += "\n" + String(decoding: line, as: UTF8.self)
            } else if let field = MailMessage.field(line) {
                headers.append(field)
            } else {
                break
            }
            index += 1
        }
        var body: [UInt8] = []
        for line in lines[index...] {
            body.append(contentsOf: line)
            body.append(contentsOf: [0x0D, 0x0A])
        }
        self.init(headers: headers, body: body)
    }

    /// `Name: value`, where the name is printable ASCII without space or colon.
    private static func field(_ line: ArraySlice<UInt8>) -> HeaderField? {
        guard let colon = line.firstIndex(of: 0x3A), colon > line.startIndex else { return nil }
        let name = line[..<colon]
        guard name.allSatisfy({ (0x21...0x7E).contains($0) }) else { return nil }
        return HeaderField(
            name: String(decoding: name, as: UTF8.self),
            rawValue: String(decoding: line[line.index(after: colon)...], as: UTF8.self)
        )
    }

    /// A small, fixed test message. The date and Message-ID are constant so that
    /// transcripts of it can be compared byte for byte.
    ///
    /// - Parameters:
    ///   - headerCount: the first of From, To, Subject, Date and Message-ID, then as many
    ///     `X-Milter-Test-N` fields as it takes.
    ///   - bodySize: the body's exact length in bytes: lines of text, each with CRLF.
    public static func sample(
        from sender: Transaction.Address,
        to recipients: [Transaction.Address],
        headerCount: Int = 5,
        bodySize: Int = 45
    ) -> MailMessage {
        let standard = [
            ("From", sender.address.isEmpty ? "MAILER-DAEMON" : sender.wireForm),
            ("To", sampleTo(recipients)),
            ("Subject", "milter-test"),
            ("Date", "Thu, 01 Jan 2026 00:00:00 +0000"),
            ("Message-ID", "<milter-test@localhost>"),
        ]
        var headers = standard.prefix(max(0, headerCount)).map { HeaderField(name: $0.0, rawValue: " " + $0.1) }
        if headerCount > standard.count {
            for number in 1...(headerCount - standard.count) {
                headers.append(HeaderField(name: "X-Milter-Test-\(number)", rawValue: " filler \(number)"))
            }
        }
        return MailMessage(headers: headers, body: sampleBody(bytes: bodySize))
    }

    /// The longest To: value the sample writes out, in bytes: one line under RFC 5322's 998.
    public static let sampleToLimit = 900

    /// The recipients as a To: value: as many as fit in `sampleToLimit` bytes, then
    /// "(and N more)". A message to thousands of recipients keeps a header of one line (a whole
    /// list past 64 KiB would not fit libmilter's frame limit).
    static func sampleTo(_ recipients: [Transaction.Address]) -> String {
        guard !recipients.isEmpty else { return "undisclosed-recipients:;" }
        var value = ""
        var listed = 0
        for recipient in recipients {
            let entry = (listed == 0 ? "" : ", ") + recipient.wireForm
            let more = " (and \(recipients.count - listed - 1) more)"
            let last = listed == recipients.count - 1
            guard value.utf8.count + entry.utf8.count + (last ? 0 : more.utf8.count) <= sampleToLimit || listed == 0
            else { break }
            value += entry
            listed += 1
        }
        if listed < recipients.count { value += " (and \(recipients.count - listed) more)" }
        return value
    }

    /// `bytes` bytes of body: lines of text with CRLF line ends.
    static func sampleBody(bytes: Int) -> [UInt8] {
        guard bytes > 0 else { return [] }
        let line = Array("This is a test message sent by milter-test.\r\n".utf8)
        var body: [UInt8] = []
        body.reserveCapacity(bytes)
        while body.count + line.count <= bytes { body += line }
        switch bytes - body.count {
        case 0: break
        case 1 where body.isEmpty: body = [0x0A]  // a one-byte body: an empty line (LF only)
        case 1: body.insert(0x2E, at: body.count - 2)  // one more character on the last line
        case let rest: body += line.prefix(rest - 2) + [0x0D, 0x0A]
        }
        return body
    }
}

/// Everything the MTA says to the milter about one session with one message.
public struct Transaction: Hashable, Sendable {
    /// The client's host name as SMFIC_CONNECT carries it; Postfix says `unknown` when
    /// the address has no verified name.
    public var clientName: String
    public var client: ClientAddress
    public var helo: String
    public var sender: Transaction.Address
    public var recipients: [Transaction.Address]
    public var message: MailMessage
    /// The MTA's own host name: `j` and `{daemon_name}`.
    public var hostname: String
    /// Macro values that override the computed ones. A name that no stage lists is sent
    /// with the connect macros, which libmilter keeps for the whole connection.
    public var macros: [Macro]

    public init(
        clientName: String = "unknown",
        client: ClientAddress = .inet("127.0.0.1", port: 0),
        helo: String = "localhost",
        sender: Transaction.Address,
        recipients: [Transaction.Address],
        message: MailMessage,
        hostname: String = "localhost",
        macros: [Macro] = []
    ) {
        self.clientName = clientName
        self.client = client
        self.helo = helo
        self.sender = sender
        self.recipients = recipients
        self.message = message
        self.hostname = hostname
        self.macros = macros.map { Macro(MacroName.normalized($0.name), $0.value) }
    }

    /// Postfix 3.7's default macro lists (`milter_connect_macros` and friends).
    public static let postfixMacroLists: [MacroStage: [String]] = [
        .connect: ["j", "{daemon_name}", "{daemon_addr}", "v", "_"],
        .helo: ["{tls_version}", "{cipher}", "{cipher_bits}", "{cert_subject}", "{cert_issuer}"],
        .mail: ["i", "{auth_type}", "{auth_authen}", "{auth_author}", "{mail_addr}", "{mail_host}", "{mail_mailer}"],
        .recipient: ["i", "{rcpt_addr}", "{rcpt_host}", "{rcpt_mailer}"],
        .data: ["i"],
        .endOfHeaders: ["i"],
        .endOfMessage: ["i"],
    ]

    /// The macro lists in force: the milter's list for a stage if it gave a non-empty
    /// one, otherwise Postfix's (an empty milter list cannot switch macros off with
    /// Postfix either).
    public static func macroLists(askedFor milterLists: [MacroStage: [String]]) -> [MacroStage: [String]] {
        postfixMacroLists.merging(milterLists.filter { !$0.value.isEmpty }) { _, milter in milter }
    }

    /// The macros to send before the command of `stage`: every name in that stage's list
    /// that has a value, and at connect also every given macro that no list names.
    ///
    /// - Parameters:
    ///   - lists: the lists in force, from `macroLists(askedFor:)`.
    ///   - recipient: the recipient at the RCPT stage.
    ///   - queueIDAssigned: whether Postfix would know the queue ID yet. It does not at
    ///     MAIL, nor at the first RCPT: smtpd opens the queue file only after the first
    ///     recipient is accepted.
    public func macros(
        for stage: MacroStage,
        lists: [MacroStage: [String]],
        recipient: Transaction.Address? = nil,
        queueIDAssigned: Bool
    ) -> [Macro] {
        macros(for: stage, plan: MacroPlan(lists), recipient: recipient, queueIDAssigned: queueIDAssigned)
    }

    /// `macros(for:lists:…)` with the lists resolved once (`Conversation` does it per connection).
    func macros(
        for stage: MacroStage,
        plan: MacroPlan,
        recipient: Transaction.Address? = nil,
        queueIDAssigned: Bool
    ) -> [Macro] {
        var sent: [Macro] = []
        for entry in plan.entries[Int(stage.rawValue)] {
            if entry.key == "i" && !queueIDAssigned { continue }
            if let value = value(of: entry, recipient: recipient), !value.isEmpty {
                sent.append(Macro(entry.name, value))
            }
        }
        if stage == .connect {
            sent += macros.filter { !plan.listed.contains($0.name) }
        }
        return sent
    }

    private func value(of entry: MacroPlan.Entry, recipient: Transaction.Address?) -> String? {
        if !macros.isEmpty, let given = macros.last(where: { $0.name == entry.key }) { return given.value }
        switch entry.source {
        case .hostname: return hostname
        case .daemonAddress: return "127.0.0.1"
        case .version: return "milter-test"
        case .client: return "\(clientName) [\(clientIP ?? "")]"
        case .clientAddress: return clientIP
        case .clientName: return clientName
        case .senderAddress: return sender.address
        case .senderHost: return sender.domain
        case .senderMailer: return sender.address.isEmpty ? nil : "smtp"
        case .recipientAddress: return recipient?.address
        case .recipientHost: return recipient?.domain
        case .recipientMailer: return recipient == nil ? nil : "smtp"
        case .none: return nil
        }
    }

    private var clientIP: String? {
        switch client {
        case .inet(let ip, _), .inet6(let ip, _): ip
        case .unix(let path): path
        case .unknown: nil
        }
    }
}

/// The macro lists in force, resolved once: for each stage the names as the lists spell them,
/// their normalized keys, and where each value comes from.
struct MacroPlan {
    enum Source {
        case hostname, daemonAddress, version, client, clientAddress, clientName
        case senderAddress, senderHost, senderMailer, recipientAddress, recipientHost, recipientMailer
        /// Only a given macro (`Transaction.macros`) has a value.
        case none
    }

    struct Entry {
        let name: String
        let key: String
        let source: Source
    }

    /// Postfix's own lists (`Transaction.postfixMacroLists`), resolved once per process.
    static let postfix = MacroPlan(Transaction.postfixMacroLists)

    /// By `MacroStage.rawValue`.
    let entries: [[Entry]]
    /// Every normalized name in some list.
    let listed: Set<String>

    init(_ lists: [MacroStage: [String]]) {
        var entries = [[Entry]](repeating: [], count: MacroStage.allCases.count)
        var listed = Set<String>()
        for (stage, names) in lists {
            entries[Int(stage.rawValue)] = names.map { name in
                let key = MacroName.normalized(name)
                listed.insert(key)
                return Entry(name: name, key: key, source: MacroPlan.source(key))
            }
        }
        self.entries = entries
        self.listed = listed
    }

    static func source(_ key: String) -> Source {
        switch key {
        case "j", "{daemon_name}": .hostname
        case "{daemon_addr}": .daemonAddress
        case "v": .version
        case "_": .client
        case "{client_addr}": .clientAddress
        case "{client_name}": .clientName
        case "{mail_addr}": .senderAddress
        case "{mail_host}": .senderHost
        case "{mail_mailer}": .senderMailer
        case "{rcpt_addr}": .recipientAddress
        case "{rcpt_host}": .recipientHost
        case "{rcpt_mailer}": .recipientMailer
        default: .none
        }
    }
}

/// Macro names as Postfix spells them: one character bare (`i`), longer ones in braces
/// (`{rcpt_addr}`). libmilter accepts either spelling in `smfi_getsymval`.
public enum MacroName {
    public static func normalized(_ name: String) -> String {
        var bare = Substring(name)
        if bare.hasPrefix("{") && bare.hasSuffix("}") && bare.count >= 2 { bare = bare.dropFirst().dropLast() }
        return bare.count == 1 ? String(bare) : "{\(bare)}"
    }
}
