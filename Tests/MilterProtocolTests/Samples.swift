/// Shared test material: one sample of every command and every response, and the
/// decode-three-ways check (whole, byte by byte, split at every boundary) after NIO's
/// ByteToMessageDecoderVerifier.

import Testing

@testable import MilterProtocol

enum Samples {
    static let commands: [Command] = [
        .negotiate(.postfixOffer),
        .macros(
            .connect,
            [Macro("j", "mx.example.org"), Macro("{daemon_name}", "mx"), Macro("_", "unknown [192.0.2.1]")]
        ),
        .macros(.endOfMessage, []),
        .connect(hostname: "client.example.net", address: .inet("192.0.2.1", port: 40_123)),
        .connect(hostname: "v6.example.net", address: .inet6("2001:db8::1", port: 25)),
        .connect(hostname: "localhost", address: .unix(path: "/run/smtp.sock")),
        .connect(hostname: "unknown", address: .unknown),
        .helo("client.example.net"),
        .mail(sender: "<alice@example.org>", arguments: ["SIZE=1000", "BODY=8BITMIME"]),
        .mail(sender: "<>", arguments: []),
        .recipient("<bob@example.org>", arguments: ["NOTIFY=NEVER", "ORCPT=rfc822;bob@example.org"]),
        .data,
        .header(name: "Subject", value: "hello\n\tworld"),
        .header(name: "X-Empty", value: ""),
        .endOfHeaders,
        .body(Array("line one\r\nline two\r\n".utf8)),
        .body([]),
        .endOfMessage([]),
        .endOfMessage(Array("tail\r\n".utf8)),
        .abort,
        .quit,
        .quitNewConnection,
        .unknown("XCLIENT NAME=foo"),
    ]

    static func responses() throws -> [Response] {
        [
            .reply(.continue), .reply(.accept), .reply(.reject), .reply(.tempfail), .reply(.discard),
            .reply(.skip), .reply(.connectionFailure), .reply(.shutdown),
            .reply(.replyCode(try SMTPReply("550 5.7.1 no such user"))),
            .reply(.replyCode(try SMTPReply("451-4.3.0 first\r\n451 4.3.0 second"))),
            .progress,
            .negotiate(
                Negotiation(
                    actions: [.addHeaders, .addRecipients, .setSymbolList],
                    steps: [.noReplyHeader, .skip],
                    macroLists: [.recipient: ["{rcpt_addr}", "i"], .connect: ["j"]]
                )
            ),
            .setSymbolList(.endOfMessage, ["i", "{rcpt_addr}"]),
            .modification(.addRecipient("<copy@gapps.example.org>")),
            .modification(.addRecipientWithArguments("<bcc@example.org>", arguments: ["NOTIFY=NEVER"])),
            .modification(.addRecipientWithArguments("<plain@example.org>", arguments: [])),
            .modification(.deleteRecipient("<bob@example.org>")),
            .modification(.addHeader(name: "X-Split", value: "yes")),
            .modification(.insertHeader(index: 0, name: "X-First", value: "top")),
            .modification(.changeHeader(index: 2, name: "Subject", value: "new")),
            .modification(.changeHeader(index: 1, name: "Subject", value: "")),
            .modification(.replaceBody(Array("new body\r\n".utf8))),
            .modification(.changeSender("<new@example.org>", arguments: ["SIZE=10"])),
            .modification(.quarantine(reason: "looks odd")),
        ]
    }

    /// The frames decoded from `bytes` fed whole, one byte at a time, and split in two at
    /// every boundary; all ways must agree with `expected`.
    static func expectDecodesEveryWay(
        _ bytes: [UInt8],
        to expected: [Frame],
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        var whole = FrameDecoder()
        whole.append(bytes)
        #expect(try whole.frames() == expected, "whole", sourceLocation: sourceLocation)
        #expect(whole.bufferedCount == 0, sourceLocation: sourceLocation)

        var drip = FrameDecoder()
        var dripped: [Frame] = []
        for byte in bytes {
            drip.append([byte])
            dripped += try drip.frames()
        }
        #expect(dripped == expected, "byte by byte", sourceLocation: sourceLocation)

        for cut in 0...bytes.count {
            var split = FrameDecoder()
            split.append(bytes[..<cut])
            var frames = try split.frames()
            split.append(bytes[cut...])
            frames += try split.frames()
            #expect(frames == expected, "split at \(cut)", sourceLocation: sourceLocation)
        }
    }
}
