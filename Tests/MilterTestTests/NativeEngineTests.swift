/// The daemon's own milter engine (`--engine native`, the default) at the wire, where `milter-test
/// send` does not go: a second SMTP session on one connection (SMFIC_QUIT_NC), commands that come
/// all at once, and frames that break the protocol. The golden cases and the end-to-end scenarios
/// run both engines through whole sessions; these look at single frames.

import Foundation
import Glibc
import MilterClient
import MilterProtocol
import Testing

@Suite(.enabled(if: Paths.binaries != nil, "splitmilter is not built next to the test bundle"))
struct NativeEngineTests {
    static let rules = "domain example.org\n    copy %u@copy.example.org\n"

    /// Postfix's offer: every action, every step (docs/postfix-milter.md, "Negotiation").
    static let offer = Negotiation(actions: Actions(rawValue: 0x1FF), steps: ProtocolSteps(rawValue: 0x1F_FFFF))

    static func daemon() async throws -> RunningMilter {
        let folder = try TemporaryFolder()
        _ = try folder.write(rules, to: "r.rules")
        return try await RunningMilter.splitmilter(
            rules: "r.rules", in: folder.url, instance: "native.example", extra: ["--no-reply", "off"])
    }

    /// One message for `recipient` on an open connection: every answer the daemon gives, in order.
    static func message(_ channel: SocketChannel, to recipient: String) throws -> [Response] {
        var answers: [Response] = []
        for command: Command in [
            .connect(hostname: "client.example.net", address: .inet("192.0.2.1", port: 4000)),
            .mail(sender: "<sender@example.net>", arguments: []),
            .recipient("<\(recipient)>", arguments: []),
            .data,
            .header(name: "Subject", value: " hello"),
        ] {
            try channel.send([command.frame()])
            answers.append(try Response(channel.receive()))
        }
        try channel.send([Command.endOfMessage([]).frame()])
        while true {
            let answer = try Response(channel.receive())
            answers.append(answer)
            if case .modification = answer { continue }
            return answers
        }
    }

    @Test func aSecondSessionOnOneConnectionIsServedAfresh() async throws {
        let daemon = try await NativeEngineTests.daemon()
        let (first, second) = try await daemon.run { daemon in
            try await offThePool {
                let channel = try SocketChannel(connectingTo: MilterEndpoint(parsing: daemon.socket), timeout: 10)
                try channel.send([Command.negotiate(NativeEngineTests.offer).frame()])
                guard case .negotiate = try Response(channel.receive()) else { throw EngineTestFailure("no OPTNEG") }
                let first = try NativeEngineTests.message(channel, to: "alice@example.org")
                try channel.send([Command.quitNewConnection.frame()])
                let second = try NativeEngineTests.message(channel, to: "bob@example.org")
                try channel.send([Command.quit.frame()])
                return (first, second)
            }
        }
        /// Five steps continued, then end of message: the copy, the marker, continue.
        func copied(_ user: String) -> [Response] {
            Array(repeating: .reply(.continue), count: 5) + [
                NativeEngineTests.copy(of: user),
                .modification(.addHeader(name: "X-Splitmilter-Copied", value: "native.example")),
                .reply(.continue),
            ]
        }
        #expect(first == copied("alice"), "\(first)\n\(daemon.log)")
        #expect(second == copied("bob"), "\(second)\n\(daemon.log)")
    }

    /// The copy this rule file adds for `user`@example.org.
    static func copy(of user: String) -> Response {
        .modification(
            .addRecipientWithArguments(
                "\(user)@copy.example.org", arguments: ["NOTIFY=NEVER ORCPT=rfc822;\(user)@example.org"]))
    }

    /// A whole message's commands in one write: every answer comes, in order.
    @Test func commandsThatComeTogetherAreAllAnswered() async throws {
        let daemon = try await NativeEngineTests.daemon()
        let answers = try await daemon.run { daemon in
            try await offThePool {
                let channel = try SocketChannel(
                    connectingTo: MilterEndpoint(parsing: daemon.socket), timeout: 10, coalescing: true)
                try channel.send([Command.negotiate(NativeEngineTests.offer).frame()])
                _ = try channel.receive()
                try channel.send(
                    try [
                        Command.connect(hostname: "client.example.net", address: .inet("192.0.2.1", port: 4000)),
                        .mail(sender: "<sender@example.net>", arguments: []),
                        .recipient("<carol@example.org>", arguments: []),
                        .recipient("<dave@example.org>", arguments: []),
                        .data,
                        .endOfMessage([]),
                    ].map { try $0.frame() })
                var answers: [Response] = []
                while answers.count < 9 { answers.append(try Response(channel.receive())) }
                return answers
            }
        }
        #expect(
            answers == Array(repeating: .reply(.continue), count: 5) + [
                NativeEngineTests.copy(of: "carol"), NativeEngineTests.copy(of: "dave"),
                .modification(.addHeader(name: "X-Splitmilter-Copied", value: "native.example")),
                .reply(.continue),
            ], "\(answers)\n\(daemon.log)")
    }

    /// Frames that break the protocol end their connection, and only it: the daemon serves the
    /// next one. Each is written whole; the answer is the connection closing.
    @Test(arguments: [
        ("longer than 1 MiB", [0x00, 0x20, 0x00, 0x00, 0x4F] as [UInt8]),
        ("of length 0", [0x00, 0x00, 0x00, 0x00]),
        ("an unknown command", [0x00, 0x00, 0x00, 0x01, 0x7A]),
        (
            "an offer of protocol version 1",
            [0x00, 0x00, 0x00, 0x0D, 0x4F, 0, 0, 0, 1, 0, 0, 1, 0xFF, 0, 0x1F, 0xFF, 0xFF]
        ),
    ])
    func aBrokenFrameEndsItsConnection(_ what: String, _ bytes: [UInt8]) async throws {
        let daemon = try await NativeEngineTests.daemon()
        let (closed, servedNext) = try await daemon.run { daemon in
            try await offThePool {
                let path = String(daemon.socket.dropFirst("unix:".count))
                let closed = try RawPeer.closesAfter(bytes, path: path)
                let channel = try SocketChannel(connectingTo: MilterEndpoint(parsing: daemon.socket), timeout: 10)
                try channel.send([Command.negotiate(NativeEngineTests.offer).frame()])
                guard case .negotiate = try Response(channel.receive()) else { return (closed, false) }
                return (closed, true)
            }
        }
        #expect(closed, "a frame \(what): the connection stayed open\n\(daemon.log)")
        #expect(servedNext, "a frame \(what): the next connection was not served\n\(daemon.log)")
    }
}

struct EngineTestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A client that writes raw bytes and waits (5 s at most) for the daemon to close the connection.
enum RawPeer {
    static func closesAfter(_ bytes: [UInt8], path: String) throws -> Bool {
        let fd = try UnixClient.connected(to: path)
        defer { close(fd) }
        try #require(send(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL)) == bytes.count)
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, 5_000) == 1 else { return false }
        var byte: UInt8 = 0
        return read(fd, &byte, 1) <= 0
    }
}
