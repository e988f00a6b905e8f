/// The stable text and JSON forms that golden files rely on.

import Foundation
import Testing

@testable import MilterProtocol

@Suite struct RenderingTests {
    @Test func modificationsRenderOneLineEach() {
        let expected: [(Modification, String)] = [
            (.addRecipient("<x@y>"), "add-rcpt <x@y>"),
            (
                .addRecipientWithArguments("<x@y>", arguments: ["NOTIFY=NEVER", "ORCPT=rfc822;a@b"]),
                "add-rcpt <x@y> NOTIFY=NEVER ORCPT=rfc822;a@b"
            ),
            (.addRecipientWithArguments("x@y", arguments: []), "add-rcpt x@y"),
            (.deleteRecipient("<x@y>"), "del-rcpt <x@y>"),
            (.addHeader(name: "X-Foo", value: "bar"), "add-header X-Foo: bar"),
            (.insertHeader(index: 1, name: "X-Foo", value: "bar"), "insert-header 1 X-Foo: bar"),
            (.changeHeader(index: 1, name: "X-Foo", value: "bar"), "change-header X-Foo[1]: bar"),
            (.changeHeader(index: 2, name: "X-Foo", value: ""), "delete-header X-Foo[2]"),
            (.replaceBody(Array(repeating: 0x41, count: 123)), "replace-body 123 bytes"),
            (.changeSender("<s@y>", arguments: ["SIZE=10"]), "change-from <s@y> SIZE=10"),
            (.quarantine(reason: "reason"), "quarantine \"reason\""),
            (.quarantine(reason: "say \"hi\""), "quarantine \"say \\\"hi\\\"\""),
            (.addHeader(name: "X-Multi", value: "a\n\tb\\c\u{1}"), "add-header X-Multi: a\\n\\tb\\\\c\\x01"),
        ]
        for (modification, text) in expected {
            #expect(modification.description == text)
        }
    }

    @Test func repliesRenderAsWords() throws {
        #expect(Reply.continue.description == "continue")
        #expect(Reply.connectionFailure.description == "conn-fail")
        #expect(Reply.replyCode(try SMTPReply("550 5.7.1 text")).description == "reply 550 5.7.1 text")
        #expect(Reply.replyCode(try SMTPReply("451-a\r\n451 b")).description == "reply 451-a\\r\\n451 b")
    }

    @Test func modificationsEncodeAsJSONObjects() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        func json(_ value: some Encodable) throws -> String {
            String(decoding: try encoder.encode(value), as: UTF8.self)
        }

        #expect(
            try json(Modification.addRecipientWithArguments("<x@y>", arguments: ["NOTIFY=NEVER"]))
                == #"{"action":"add-rcpt","address":"<x@y>","arguments":["NOTIFY=NEVER"],"text":"add-rcpt <x@y> NOTIFY=NEVER"}"#
        )
        #expect(
            try json(Modification.changeHeader(index: 1, name: "X", value: ""))
                == #"{"action":"delete-header","index":1,"name":"X","text":"delete-header X[1]"}"#
        )
        #expect(
            try json(Reply.replyCode(try SMTPReply("550 5.7.1 no")))
                == #"{"action":"reply","code":550,"text":"550 5.7.1 no"}"#
        )
    }

    @Test func transcriptTextIsStable() throws {
        var transcript = Transcript(offer: .postfixOffer)
        transcript.negotiated = Negotiation(
            actions: [.addHeaders, .addRecipients],
            steps: [.noReplyHeader],
            macroLists: [.recipient: ["{rcpt_addr}"]]
        )
        transcript.steps = [
            .init(
                event: .connect(hostname: "unknown", address: .inet("127.0.0.1", port: 0)),
                answer: .reply(.continue)
            ),
            .init(event: .helo("h"), answer: .notSent(.noHelo)),
            .init(event: .recipient(.init("b@x")), answer: .reply(.replyCode(try SMTPReply("550 5.1.1 no")))),
            .init(event: .header(name: "Subject", value: "hi"), answer: .noReply(.noReplyHeader)),
            .init(event: .body(length: 12), answer: .reply(.continue)),
            .init(
                event: .endOfMessage,
                macros: [Macro("i", "ABC")],
                answer: .reply(.accept),
                progress: 2,
                modifications: [.addRecipient("<c@x>"), .addHeader(name: "X-A", value: "1")]
            ),
            .init(event: .quit, answer: .none),
        ]
        transcript.verdict = .accept
        #expect(
            transcript.text(macros: true) == """
                negotiate version 6 actions ADDHDRS,ADDRCPT steps NR_HDR
                  macro-list SMFIM_ENVRCPT: {rcpt_addr}
                connect unknown 127.0.0.1:0 -> continue
                helo h -> not sent (NOHELO)
                rcpt <b@x> -> reply 550 5.1.1 no
                header Subject: hi -> no reply (NR_HDR)
                body 12 bytes -> continue
                  macros i=ABC
                eom -> accept (2 progress)
                  add-rcpt <c@x>
                  add-header X-A: 1
                quit
                verdict accept

                """
        )
    }
}
