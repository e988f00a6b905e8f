/// PostgresLink.fields: one COPY text-format row (as libpq hands it, with its newline) split into
/// fields and unescaped, with no database: what `COPY ... TO STDOUT` writes for NULLs, tabs,
/// newlines, backslashes and bytes beyond ASCII comes back as the values that were stored.

import Testing

@testable import SplitDatabase

@Suite struct PostgresLinkFieldsTests {
    /// The fields of `row`'s bytes.
    func fields(_ row: [UInt8]) -> [String?] {
        var fields: [String?] = []
        row.withUnsafeBufferPointer { PostgresLink.fields($0, into: &fields) }
        return fields
    }

    func fields(_ row: String) -> [String?] { fields(Array(row.utf8)) }

    @Test func plainFieldsAreSplitAtTabs() {
        #expect(
            fields("alpha\tbob@example.org\tcopy\tarchive@example.org\n") == [
                "alpha", "bob@example.org", "copy", "archive@example.org",
            ])
        #expect(fields("one\n") == ["one"])
        #expect(fields("a b,c;d=e\tf\n") == ["a b,c;d=e", "f"])
    }

    @Test func backslashNAloneIsNullButAnEscapedBackslashBeforeNIsText() {
        #expect(fields(#"\N"# + "\n") == [nil])
        #expect(fields(#"a\t\N\tb"#.replacingTabs + "\n") == ["a", nil, "b"])
        #expect(fields(#"\N\t\N"#.replacingTabs + "\n") == [nil, nil])
        #expect(fields(#"\N\ta"#.replacingTabs) == [nil, "a"])
        #expect(fields(#"a\t\N"#.replacingTabs) == ["a", nil])
        // The two characters backslash-N as a value: COPY doubles the backslash.
        #expect(fields(#"\\N"# + "\n") == [#"\N"#])
        #expect(fields(#"x\t\\N\t\N"#.replacingTabs + "\n") == ["x", #"\N"#, nil])
        // \N inside a longer field is not NULL: it is an N (backslash before any other
        // character is that character).
        #expect(fields(#"a\N"# + "\n") == ["aN"])
        #expect(fields(#"\Na"# + "\n") == ["Na"])
        #expect(fields(#"\N\N"# + "\n") == ["NN"])
        // An empty field is the empty string, not NULL.
        #expect(fields("\t\\N\t\n") == ["", nil, ""])
    }

    @Test func everyEscape() {
        #expect(fields(#"a\tb"# + "\n") == ["a\tb"])
        #expect(fields(#"a\nb"# + "\n") == ["a\nb"])
        #expect(fields(#"a\rb"# + "\n") == ["a\rb"])
        #expect(fields(#"a\\b"# + "\n") == [#"a\b"#])
        #expect(fields(#"a\bb"# + "\n") == ["a\u{08}b"])
        #expect(fields(#"a\fb"# + "\n") == ["a\u{0C}b"])
        #expect(fields(#"a\vb"# + "\n") == ["a\u{0B}b"])
        #expect(fields(#"\t\n\r\\\b\f\v"# + "\n") == ["\t\n\r\\\u{08}\u{0C}\u{0B}"])
        // Any other character after a backslash is itself (a tab byte too: data, not a separator).
        #expect(fields(#"\a\.\""# + "\n") == [#"a.""#])
        #expect(fields([UInt8(ascii: "\\"), 0x09, UInt8(ascii: "x"), 0x0A]) == ["\tx"])
        // Escapes next to separators and at both ends of a field.
        #expect(fields(#"\t"# + "\t" + #"\\"# + "\n") == ["\t", #"\"#])
        #expect(fields(#"\\"# + "\t" + #"\\"# + "\n") == [#"\"#, #"\"#])
    }

    @Test func octalEscapes() {
        #expect(fields(#"\101\102C"# + "\n") == ["ABC"])
        #expect(fields(#"\0"# + "\n") == ["\u{00}"])
        #expect(fields(#"\7x"# + "\n") == ["\u{07}x"])
        #expect(fields(#"\11x"# + "\n") == ["\tx"])
        // At most three digits: the fourth is a character of its own.
        #expect(fields(#"\1011"# + "\n") == ["A1"])
        // 8 and 9 are not octal digits.
        #expect(fields(#"\18"# + "\n") == ["\u{01}8"])
        #expect(fields(#"\8"# + "\n") == ["8"])
        // Bytes of UTF-8, escaped one by one.
        #expect(fields(#"caf\303\251"# + "\n") == ["café"])
        // An octal escape ends at a separator.
        #expect(fields(#"\12\t\12"#.replacingTabs + "\n") == ["\n", "\n"])
    }

    @Test func theTrailingNewlineIsTheRowsEndOnlyOnce() {
        #expect(fields("a\tb\n") == ["a", "b"])
        #expect(fields("a\tb") == ["a", "b"])
        // A newline in the data is escaped; a second raw one would be part of the last field.
        #expect(fields(#"a\n"# + "\n") == ["a\n"])
        #expect(fields("a\n\n") == ["a\n"])
        // A backslash escaped just before the row's end.
        #expect(fields(#"a\\"# + "\n") == [#"a\"#])
        // A lone backslash at the very end stays a backslash.
        #expect(fields("a\\\n") == [#"a\"#])
        #expect(fields("a\\") == [#"a\"#])
    }

    @Test func emptyFields() {
        #expect(fields("\n") == [""])
        #expect(fields("") == [""])
        #expect(fields("\t\n") == ["", ""])
        #expect(fields("\t\t\n") == ["", "", ""])
        #expect(fields("a\t\t\n") == ["a", "", ""])
        #expect(fields("\t\ta\n") == ["", "", "a"])
    }

    @Test func bytesBeyondASCIIPassThrough() {
        #expect(fields("zoë\t日本語\t🦆\n") == ["zoë", "日本語", "🦆"])
        #expect(fields(#"ü\\ß\tñ"#.replacingTabs + "\n") == [#"ü\ß"#, "ñ"])
        // A byte that is not UTF-8 becomes U+FFFD, as String(decoding:) makes it; the fields
        // around it are whole.
        #expect(fields([0x61, 0xFF, 0x62, 0x09, 0x63, 0x0A]) == ["a\u{FFFD}b", "c"])
        #expect(fields(#"\377"# + "\n") == ["\u{FFFD}"])
    }

    @Test func theFieldsArrayIsReusedWithoutLeftovers() {
        var fields: [String?] = []
        Array("a\tb\tc\n".utf8).withUnsafeBufferPointer { PostgresLink.fields($0, into: &fields) }
        #expect(fields == ["a", "b", "c"])
        Array("\\N\n".utf8).withUnsafeBufferPointer { PostgresLink.fields($0, into: &fields) }
        #expect(fields == [nil])
        Array("x\n".utf8).withUnsafeBufferPointer { PostgresLink.fields($0, into: &fields) }
        #expect(fields == ["x"])
    }
}

extension String {
    /// `\t` written in a raw string as the two characters, turned into the separator tab: only
    /// for rows in these tests, where every `\t` between fields is a separator.
    fileprivate var replacingTabs: String {
        var result = ""
        var chars = self[...]
        while let first = chars.first {
            if first == "\\", chars.dropFirst().first == "t" {
                result.append("\t")
                chars = chars.dropFirst(2)
            } else if first == "\\", let next = chars.dropFirst().first {
                result.append(first)
                result.append(next)
                chars = chars.dropFirst(2)
            } else {
                result.append(first)
                chars = chars.dropFirst()
            }
        }
        return result
    }
}
