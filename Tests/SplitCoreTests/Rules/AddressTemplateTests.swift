/// Filling templates with the parts of a recipient, and refusing results that are not usable local parts.

import Testing

@testable import SplitCore

@Suite struct AddressTemplateTests {
    let parts = RecipientParts(
        address: EnvelopeAddress(localPart: "Bob+news", domain: "example.org"), delimiters: "+")

    @Test(arguments: [
        ("%u@gapps.example.org", "Bob+news@gapps.example.org"),
        ("%b@gapps.example.org", "Bob@gapps.example.org"),
        ("archive+%b=%d@Archive.Example", "archive+Bob=example.org@archive.example"),
        ("%b.%e@lists.example", "Bob.news@lists.example"),
        ("carol", "carol"),
    ])
    func fillsInTheRecipient(template: String, expected: String) throws {
        let parsed = try AddressTemplate.parse(template, allowBareLocalPart: true).get()
        #expect(try parsed.render(parts).get().description == expected)
    }

    /// The source is spelled from the parsed pieces when it can be, kept as written when not.
    @Test(arguments: ["%u@gapps.example.org", "archive+%b=%d@Archive.Example", "Carol.%e", "a%d%b@x"])
    func keepsItsSourceAsWritten(template: String) throws {
        let parsed = try AddressTemplate.parse(template, allowBareLocalPart: true).get()
        #expect(parsed.source == template)
        #expect(parsed.description == template)
        #expect(parsed == (try AddressTemplate.parse(template, allowBareLocalPart: true).get()))
    }

    @Test func splitsAtTheFirstDelimiterButNotALeadingOne() {
        let split = RecipientParts(address: EnvelopeAddress(localPart: "a-b+c", domain: "x"), delimiters: "+-")
        #expect(split.base == "a")
        #expect(split.fileExtension == "b+c")
        let leading = RecipientParts(address: EnvelopeAddress(localPart: "+a", domain: "x"), delimiters: "+")
        #expect(leading.base == "+a")
        #expect(leading.fileExtension == "")
        for (local, base, rest) in [
            ("bob+news", "bob", "news"), ("a.rather.long.name+tag+x", "a.rather.long.name", "tag+x"),
        ] {
            let parts = RecipientParts(address: EnvelopeAddress(localPart: local, domain: "x"), delimiters: "+")
            #expect(parts.base == base && parts.fileExtension == rest && parts.localPart == local)
        }
    }

    @Test func refusesARenderingThatIsNotAUsableLocalPart() throws {
        let template = try AddressTemplate.parse("%e.%b@x.org", allowBareLocalPart: false).get()
        let noExtension = RecipientParts(address: EnvelopeAddress(localPart: "bob", domain: "x"), delimiters: "+")
        guard case .failure(.unsafeLocalPart) = template.render(noExtension) else {
            Issue.record("a leading dot after filling in must be refused")
            return
        }
        let long = try AddressTemplate.parse("%u%u@x.org", allowBareLocalPart: false).get()
        let parts = RecipientParts(
            address: EnvelopeAddress(localPart: String(repeating: "a", count: 40), domain: "x"), delimiters: "+")
        guard case .failure(.unsafeLocalPart) = long.render(parts) else {
            Issue.record("a local part over 64 bytes must be refused")
            return
        }
    }
}
