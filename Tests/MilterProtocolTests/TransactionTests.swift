/// Command-line spellings (milter endpoints, client addresses, envelope addresses, macro
/// names) and the splitting of a message into header fields and a CRLF body.

import Testing

@testable import MilterProtocol

@Suite struct TransactionTests {
    @Test(arguments: [
        ("unix:/run/m.sock", MilterEndpoint.unix(path: "/run/m.sock")),
        ("local:/run/m.sock", .unix(path: "/run/m.sock")),
        ("/run/m.sock", .unix(path: "/run/m.sock")),
        ("inet:127.0.0.1:8891", .inet(host: "127.0.0.1", port: 8891)),
        ("inet:milter.example:8891", .inet(host: "milter.example", port: 8891)),
        ("inet:[::1]:8891", .inet(host: "::1", port: 8891)),
        ("inet:8891@127.0.0.1", .inet(host: "127.0.0.1", port: 8891)),
        ("inet6:8891@[::1]", .inet(host: "::1", port: 8891)),
        ("inet:8891", .inet(host: "127.0.0.1", port: 8891)),
    ])
    func endpointsParse(text: String, expected: MilterEndpoint) throws {
        #expect(try MilterEndpoint(parsing: text) == expected)
    }

    @Test(arguments: ["", "tcp:1.2.3.4:25", "inet:host:0", "inet:host:port", "inet:99999@host", "unix:", "relative"])
    func badEndpointsAreRefused(text: String) {
        #expect(throws: InvalidArgument.self) { try MilterEndpoint(parsing: text) }
    }

    @Test(arguments: [
        ("192.0.2.1", ClientAddress.inet("192.0.2.1", port: 0)),
        ("192.0.2.1:4321", .inet("192.0.2.1", port: 4321)),
        ("2001:db8::1", .inet6("2001:db8::1", port: 0)),
        ("[2001:db8::1]:25", .inet6("2001:db8::1", port: 25)),
        ("::ffff:192.0.2.1", .inet6("::ffff:192.0.2.1", port: 0)),
        ("::1", .inet6("::1", port: 0)),
    ])
    func clientAddressesParse(text: String, expected: ClientAddress) throws {
        #expect(try ClientAddress(parsing: text) == expected)
    }

    @Test(arguments: [
        "1.2.3", "256.1.1.1", "1.2.3.4:x", "host.example", "[::1", "[::1]x", "1:2:3:4:5:6:7:8:9", "+1.2.3.4",
    ])
    func badClientAddressesAreRefused(text: String) {
        #expect(throws: InvalidArgument.self) { try ClientAddress(parsing: text) }
    }

    @Test func envelopeAddressesTakeArguments() {
        let recipient = Transaction.Address(parsing: "<bob@example.org> NOTIFY=NEVER ORCPT=rfc822;bob@example.org")
        #expect(recipient.address == "bob@example.org")
        #expect(recipient.arguments == ["NOTIFY=NEVER", "ORCPT=rfc822;bob@example.org"])
        #expect(recipient.wireForm == "<bob@example.org>")
        #expect(recipient.domain == "example.org")
        #expect(Transaction.Address(parsing: "<>").wireForm == "<>")
        #expect(Transaction.Address(parsing: "").wireForm == "<>")
        #expect(Transaction.Address(parsing: "postmaster").domain == nil)
    }

    @Test func macroAssignmentsParse() throws {
        #expect(try Macro(assignment: "i=4AbC") == Macro("i", "4AbC"))
        #expect(try Macro(assignment: "client_addr=192.0.2.1") == Macro("{client_addr}", "192.0.2.1"))
        #expect(try Macro(assignment: "{auth_authen}=") == Macro("{auth_authen}", ""))
        #expect(try Macro(assignment: "x=a=b") == Macro("x", "a=b"))
        #expect(throws: InvalidArgument(kind: "macro", text: "=v", reason: "expected NAME=VALUE")) {
            try Macro(assignment: "=v")
        }
        #expect(throws: InvalidArgument.self) { try Macro(assignment: "novalue") }
    }

    @Test func macroNamesAreSpelledAsPostfixDoes() {
        #expect(MacroName.normalized("i") == "i")
        #expect(MacroName.normalized("{i}") == "i")
        #expect(MacroName.normalized("rcpt_addr") == "{rcpt_addr}")
        #expect(MacroName.normalized("{rcpt_addr}") == "{rcpt_addr}")
    }

    @Test func messagesSplitIntoFieldsAndACRLFBody() {
        let text =
            "From alice@example.org Thu Jan  1 00:00:00 2026\nFrom: Alice <alice@example.org>\r\n"
            + "Subject: one\n two\n\tthree\nX-Empty:\n\nbody line\nlast line without newline"
        let message = MailMessage(parsing: Array(text.utf8))
        #expect(
            message.headers == [
                HeaderField(name: "From", rawValue: " Alice <alice@example.org>"),
                HeaderField(name: "Subject", rawValue: " one\n two\n\tthree"),
                HeaderField(name: "X-Empty", rawValue: ""),
            ]
        )
        #expect(message.body == Array("body line\r\nlast line without newline\r\n".utf8))
    }

    @Test func aLineThatIsNoFieldStartsTheBody() {
        let message = MailMessage(parsing: Array("Subject: x\nnot a header\nmore\n".utf8))
        #expect(message.headers == [HeaderField(name: "Subject", rawValue: " x")])
        #expect(message.body == Array("not a header\r\nmore\r\n".utf8))
        #expect(MailMessage(parsing: []) == MailMessage(headers: [], body: []))
        #expect(MailMessage(parsing: Array("Subject: only\n".utf8)).body.isEmpty)
    }

    @Test func theSampleMessageIsFixed() {
        let sample = MailMessage.sample(from: .init("a@x"), to: [.init("b@y"), .init("c@z")])
        #expect(sample.headers.map(\.name) == ["From", "To", "Subject", "Date", "Message-ID"])
        #expect(sample.headers[1].rawValue == " <b@y>, <c@z>")
        #expect(sample == MailMessage.sample(from: .init("a@x"), to: [.init("b@y"), .init("c@z")]))
        #expect(sample.body.suffix(2) == [0x0D, 0x0A])
    }

    /// Thousands of recipients used to make a To: line of every address, past the 64 KiB that
    /// libmilter takes in one frame: the milter dropped the connection at the header.
    @Test func theSampleToLineStaysShortForThousandsOfRecipients() throws {
        let recipients = (1...8_000).map { Transaction.Address("user\($0)@example.org") }
        let sample = MailMessage.sample(from: .init("a@x"), to: recipients)
        let to = try #require(sample.headers.first { $0.name == "To" })
        #expect(to.rawValue.utf8.count <= MailMessage.sampleToLimit + 1)
        #expect(to.rawValue.hasPrefix(" <user1@example.org>, <user2@example.org>, "))
        let listed = to.rawValue.split(separator: ",").count
        #expect(to.rawValue.hasSuffix(" (and \(8_000 - listed) more)"))
        let frame = try Command.header(name: to.name, value: to.value(leadingSpace: false)).frame()
        #expect(frame.payload.count < MilterLimits.defaultDataSize)
        // Everything fits, so everything is listed.
        let few = MailMessage.sample(from: .init("a@x"), to: Array(recipients.prefix(20)))
        #expect(few.headers[1].rawValue.split(separator: ",").count == 20)
        #expect(!few.headers[1].rawValue.contains("more"))
        #expect(MailMessage.sample(from: .init("a@x"), to: []).headers[1].rawValue == " undisclosed-recipients:;")
    }

    @Test(arguments: [0, 1, 2, 3, 45, 46, 47, 2048, 65_536])
    func theSampleBodyHasTheSizeAsked(size: Int) {
        let body = MailMessage.sample(from: .init("a@x"), to: [.init("b@y")], bodySize: size).body
        #expect(body.count == size)
        if size >= 2 { #expect(body.suffix(2) == [0x0D, 0x0A]) }
        #expect(!body.contains(0))
    }

    @Test func theSampleHasTheHeaderCountAsked() {
        let names = { (count: Int) in
            MailMessage.sample(from: .init("a@x"), to: [.init("b@y")], headerCount: count).headers.map(\.name)
        }
        #expect(names(0).isEmpty)
        #expect(names(2) == ["From", "To"])
        #expect(names(5) == ["From", "To", "Subject", "Date", "Message-ID"])
        #expect(names(8) == ["From", "To", "Subject", "Date", "Message-ID"] + (1...3).map { "X-Milter-Test-\($0)" })
    }
}
