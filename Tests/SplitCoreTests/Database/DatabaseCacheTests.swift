/// The local cache of the database's rows: every row reads back as it was written, and a file that is
/// not a whole cache is refused at its line.

import Testing

@testable import SplitCore

@Suite struct DatabaseCacheTests {
    typealias Rule = DatabaseRows.Rule

    /// The refusal of `text`, or nil when it decodes.
    func refusal(_ text: String) -> DatabaseCache.FormatError? {
        do {
            _ = try DatabaseCache.decode(Array(text.utf8))
            return nil
        } catch {
            return error
        }
    }

    @Test func roundTripsEveryField() throws {
        let odd = [
            "a b", "50%", "%41", "line\nbreak", "tab\there", "cr\r", "M\u{FC}ller", "\u{65E5}\u{672C}", "e\u{301}",
            "\u{E9}", "", " ", "%", "x\u{7F}y", "nul\u{0}",
        ]
        var members: [(list: String, name: String)] = []
        var rules: [(list: String, rule: Rule)] = []
        for (index, field) in odd.enumerated() {
            members.append((list: "google", name: field))
            members.append((list: "list-\(index)", name: "alice"))
            rules.append(
                (list: "users", rule: Rule(name: field, action: "copy", targets: "\(field)@x.org  b@y.org \(index)")))
            rules.append((list: "users", rule: Rule(name: "bob\(index)", action: field, targets: field)))
        }
        let rows = DatabaseRows(changeID: 123_456_789_012, members: members, rules: rules)
        let encoded = DatabaseCache.encode(rows, saved: 1_764_600_000)
        // One row a line: no field's byte breaks a line or a field.
        #expect(encoded.count(where: { $0 == UInt8(ascii: "\n") }) == 4 + members.count + rules.count)
        let decoded = try DatabaseCache.decode(encoded)
        #expect(decoded.saved == 1_764_600_000)
        #expect(decoded.rows.changeID == 123_456_789_012)
        #expect(decoded.rows == rows)
        #expect(rowBytes(decoded.rows) == rowBytes(rows))
        #expect(decoded == DatabaseCache.Contents(rows: rows, saved: 1_764_600_000))
        #expect(DatabaseCache.encode(decoded.rows, saved: decoded.saved) == encoded)
    }

    @Test func roundTripsNoRows() throws {
        let encoded = DatabaseCache.encode(DatabaseRows(), saved: 0)
        #expect(encoded == Array("splitmilter database cache 1\nchange 0\nsaved 0\nend 0\n".utf8))
        let decoded = try DatabaseCache.decode(encoded)
        #expect(decoded.rows == DatabaseRows() && decoded.saved == 0)
    }

    @Test func writesTheDocumentedText() {
        let rows = DatabaseRows(
            changeID: 42,
            members: [("google", "bob"), ("example-users", "x y"), ("google", "alice")],
            rules: [
                (list: "example-users", rule: Rule(name: "bob", action: "copy", targets: "bob@gapps.example.org")),
                (list: "example-users", rule: Rule(name: "al%", action: "copy", targets: "a@x.org b@y.org\t")),
            ])
        let expected = """
            splitmilter database cache 1
            change 42
            saved 1764600000
            member example-users x%20y
            member google alice
            member google bob
            rule example-users al%25 copy a@x.org%20b@y.org%09
            rule example-users bob copy bob@gapps.example.org
            end 5

            """
        #expect(String(decoding: DatabaseCache.encode(rows, saved: 1_764_600_000), as: UTF8.self) == expected)
    }

    static let good = """
        splitmilter database cache 1
        change 42
        saved 1764600000
        member google alice
        rule example-users bob copy bob@gapps.example.org
        end 2

        """

    @Test func readsTheDocumentedText() throws {
        let decoded = try DatabaseCache.decode(Array(Self.good.utf8))
        #expect(decoded.saved == 1_764_600_000)
        #expect(
            decoded.rows
                == DatabaseRows(
                    changeID: 42, members: [("google", "alice")],
                    rules: [
                        (
                            list: "example-users",
                            rule: Rule(name: "bob", action: "copy", targets: "bob@gapps.example.org")
                        )
                    ]))
    }

    @Test(arguments: [
        ("splitmilter database cache 2\nchange 1\nsaved 1\nend 0\n", 1, "not a splitmilter database cache"),
        ("\nchange 1\nsaved 1\nend 0\n", 1, "not a splitmilter database cache"),
        ("change 1\nsaved 1\nend 0\n", 1, "not a splitmilter database cache"),
        ("splitmilter database cache 1\nchange 1\nsaved 1\nmember g a%4\nend 1\n", 4, "a bad %-escape"),
        ("splitmilter database cache 1\nchange 1\nsaved 1\nmember g a%4b\nend 1\n", 4, "a bad %-escape"),
        ("splitmilter database cache 1\nchange 1\nsaved 1\nmember g a\nmember g %zz\nend 2\n", 5, "a bad %-escape"),
        ("splitmilter database cache 1\nchange 1\nsaved 1\nrule u b copy %\nend 1\n", 4, "a bad %-escape"),
        ("splitmilter database cache 1\nchange 1\nsaved 1\nmember g a\nbogus g a\nend 2\n", 5, "not a cache line"),
        ("splitmilter database cache 1\nchange 1\nsaved 1\nmember g a b\nend 1\n", 4, "not a cache line"),
        ("splitmilter database cache 1\nchange 1\nsaved 1\nrule u b copy\nend 1\n", 4, "not a cache line"),
        ("splitmilter database cache 1\nchange 1\nsaved 1\n\nend 0\n", 4, "not a cache line"),
        ("splitmilter database cache 1\nchange 1\nsaved 1\nmember g a\nend 2\n", 5, "the row count does not match"),
        ("splitmilter database cache 1\nchange 1\nsaved 1\nmember g a\nend 0\n", 5, "the row count does not match"),
        ("splitmilter database cache 1\nchange 1\nsaved 1\nmember g a\nend x\n", 5, "the row count does not match"),
        ("splitmilter database cache 1\nchange 1\nsaved 1\nmember g a\n", 5, "the file ends before 'end' (cut short)"),
        ("splitmilter database cache 1\nchange 1\nsaved 1\nmember g al", 5, "the file ends before 'end' (cut short)"),
        ("", 1, "the file ends before 'end' (cut short)"),
        ("splitmilter database cache 1\nchange 1\nsaved 1\nend 0\nmember g a\n", 5, "text after 'end'"),
        ("splitmilter database cache 1\nchange 1\nsaved 1\nend 0\n\nend 0\n", 6, "text after 'end'"),
        ("splitmilter database cache 1\nsaved 1\nend 0\n", 2, "no 'change' or 'saved' line"),
        ("splitmilter database cache 1\nchange 1\nend 0\n", 2, "no 'change' or 'saved' line"),
    ])
    func refusesAFileThatIsNotAWholeCache(text: String, line: Int, problem: String) {
        let found = refusal(text)
        #expect(found?.line == line, "\(String(describing: found))")
        #expect(found?.problem == problem)
        #expect(found?.description == "line \(line): \(problem)")
    }

    @Test func refusesTheGoodFileCutShortAnywhere() {
        let bytes = Array(Self.good.utf8)
        #expect(Self.good.hasSuffix("\nend 2\n"))
        for length in 0..<(bytes.count - 2) {
            #expect(throws: DatabaseCache.FormatError.self, "cut at \(length)") {
                try DatabaseCache.decode(Array(bytes[..<length]))
            }
        }
    }
}
