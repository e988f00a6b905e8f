/// Parsing what Postfix hands over as a recipient, refusing what cannot go into a template, and the DSN parameters.

import Testing

@testable import SplitCore

@Suite struct EnvelopeAddressTests {
    @Test(
        arguments: [
            ("<alice@Example.ORG>", "alice", "example.org"),
            ("alice@example.org", "alice", "example.org"),
            ("<Bob+News@example.org.>", "Bob+News", "example.org"),
            ("<postmaster>", "postmaster", ""),
            ("<o'neil@example.org>", nil, nil),
            // Blanks around the address, inside or outside the brackets: Postfix drops them.
            ("<zed@example.org >", "zed", "example.org"),
            ("<zed@example.org\t>", "zed", "example.org"),
            ("\t< Zed@EXAMPLE.org\t> ", "Zed", "example.org"),
        ] as [(String, String?, String?)])
    func parsesWhatPostfixSends(raw: String, local: String?, domain: String?) {
        switch EnvelopeAddressParser.parse(raw) {
        case .success(let address):
            #expect(address.localPart == local)
            #expect(address.domain == domain)
            #expect(address.description == "\(local ?? "")@\(domain ?? "")" || domain == "")
            #expect(address.identity == address.description.lowercased())
        case .failure(let problem):
            #expect(local == nil, "\(problem)")
        }
    }

    /// Nothing a client sends may reach a template unless it is a plain dot-atom.
    @Test(arguments: [
        ("<\"a b\"@example.org>", AddressProblem.quotedLocalPart),
        ("<@relay.example:alice@example.org>", .sourceRoute),
        ("<alice@[192.0.2.1]>", .addressLiteral),
        ("<>", .empty),
        ("<alice%other@example.org>", .unsafeLocalPart("character '%' is not allowed")),
        ("<alice!other@example.org>", .unsafeLocalPart("character '!' is not allowed")),
        ("<a\u{01}b@example.org>", .unsafeLocalPart("control character")),
        ("<a..b@example.org>", .unsafeLocalPart("two dots in a row")),
        ("<.ab@example.org>", .unsafeLocalPart("leading or trailing dot")),
        (
            "<\(String(repeating: "a", count: 65))@example.org>",
            .unsafeLocalPart("local part is 65 bytes, more than 64")
        ),
        ("<alice@exa mple.org>", .malformed("character 0x20 is not allowed in a domain")),
        ("<alice@example.org", .malformed("unbalanced angle brackets")),
        ("<" + String(repeating: "a", count: 600) + ">", .tooLong(602)),
        ("<a/b@example.org>", .unsafeLocalPart("character '/' is not allowed")),
        ("<a|b@example.org>", .unsafeLocalPart("character '|' is not allowed")),
        ("<j\u{F6}rg@example.org>", .unsafeLocalPart("character 0xC3 is not allowed")),
    ])
    func refusesWhatCannotBePlacedSafely(raw: String, problem: AddressProblem) {
        #expect(EnvelopeAddressParser.parse(raw) == .failure(problem))
    }

    @Test func xtextEncodesPlusEqualsAndNonPrintables() {
        #expect(XText.encode("bob+news@example.org") == "bob+2Bnews@example.org")
        #expect(XText.encode("a=b c") == "a+3Db+20c")
        #expect(XText.encode("zoë\u{7F}") == "zo+C3+AB+7F")
        #expect(XText.isValid(Array("bob+2Bnews".utf8)))
        #expect(!XText.isValid(Array("bob+2".utf8)))
        #expect(!XText.isValid(Array("a=b".utf8)))
    }

    @Test func keepsOnlyWellFormedDsnParameters() {
        let good = RecipientParameters.parse(["NOTIFY=success,failure", "ORCPT=rfc822;bob+2Bx@example.org", "X=1"])
        #expect(good.notify == "SUCCESS,FAILURE")
        #expect(good.originalRecipient == "rfc822;bob+2Bx@example.org")
        let bad = RecipientParameters.parse(["NOTIFY=NEVER,SUCCESS", "ORCPT=rfc822;a b", "NOTIFY=SUCCESS,SUCCESS"])
        #expect(bad.notify == nil)
        #expect(bad.originalRecipient == nil)
        #expect(RecipientParameters.parse(["ORCPT=" + String(repeating: "x", count: 600)]).originalRecipient == nil)
    }
}

@Suite struct CaseFoldingTests {
    @Test func foldsLikeLowercased() {
        for text in ["alice@example.org", "Alice@Example.ORG", "zoë@example.org", "ZOË", "", "a+B=c_d-e.f"] {
            #expect(text.caseFolded == text.lowercased())
        }
    }
}
