/// The local copy of the last good database rows (`--database`'s `cache`): what a daemon serves
/// from when it starts while the database is unreachable.
///
/// A text file, one row a line, every field percent-encoded where it holds a blank, a control
/// character or `%`, so any row the database holds reads back as it was:
///
///     splitmilter database cache 1
///     change 42
///     saved 1764600000
///     member google alice
///     rule example-users bob copy bob@gapps.example.org
///     end 2
///
/// `saved` is when the rows were last known to be the database's (Unix seconds); `end` counts the
/// rows, so a file cut short is refused, not served half.

public enum DatabaseCache {
    public static let header = "splitmilter database cache 1"

    public struct Contents: Sendable, Equatable {
        public let rows: DatabaseRows
        public let saved: Int64
    }

    public struct FormatError: Error, CustomStringConvertible, Sendable {
        public let line: Int
        public let problem: String
        public var description: String { "line \(line): \(problem)" }
    }

    public static func encode(_ rows: DatabaseRows, saved: Int64) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity((rows.memberCount + rows.ruleCount) * 32 + 64)
        // A million rows: each line is written field by field, the list's part once per list.
        func field(_ text: String) {
            out.append(UInt8(ascii: " "))
            escape(text, into: &out)
        }
        out.append(contentsOf: "\(header)\nchange \(rows.changeID)\nsaved \(saved)\n".utf8)
        /// Each row of each list (lists in name order): `KIND LIST` once per list, then the fields.
        func lists<Row>(_ kind: String, _ table: [String: [Row]], _ fields: (Row) -> Void) {
            for list in table.keys.sorted() {
                var start = Array(kind.utf8)
                start.append(UInt8(ascii: " "))
                escape(list, into: &start)
                for row in table[list] ?? [] {
                    out.append(contentsOf: start)
                    fields(row)
                    out.append(UInt8(ascii: "\n"))
                }
            }
        }
        lists("member", rows.members) { field($0) }
        lists("rule", rows.rules) { rule in
            field(rule.name)
            field(rule.action)
            field(rule.targets)
        }
        out.append(contentsOf: "end \(rows.memberCount + rows.ruleCount)\n".utf8)
        return out
    }

    public static func decode(_ bytes: [UInt8]) throws(FormatError) -> Contents {
        var members: [(list: String, name: String)] = []
        var rules: [(list: String, rule: DatabaseRows.Rule)] = []
        var change: Int64?
        var saved: Int64?
        var ended = false
        var number = 0
        var failure: FormatError?
        forEachLine(bytes) { line, lineNumber in
            guard failure == nil, !ended else {
                if failure == nil, !line.isEmpty {
                    failure = FormatError(line: lineNumber, problem: "text after 'end'")
                }
                return
            }
            number = lineNumber
            var words: [String] = []
            for field in line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false) {
                guard let word = unescape(field) else {
                    failure = FormatError(line: lineNumber, problem: "a bad %-escape")
                    return
                }
                words.append(word)
            }
            switch (lineNumber, words.first, words.count) {
            case (1, _, _):
                if String(decoding: line, as: UTF8.self) != header {
                    failure = FormatError(line: 1, problem: "not a splitmilter database cache")
                }
            case (_, "change", 2), (_, "saved", 2):
                guard let value = Int64(words[1]) else {
                    failure = FormatError(line: lineNumber, problem: "'\(words[0])' takes a number")
                    return
                }
                if words[0] == "change" { change = value } else { saved = value }
            case (_, "member", 3): members.append((words[1], words[2]))
            case (_, "rule", 5):
                rules.append((words[1], DatabaseRows.Rule(name: words[2], action: words[3], targets: words[4])))
            case (_, "end", 2):
                guard Int(words[1]) == members.count + rules.count else {
                    failure = FormatError(line: lineNumber, problem: "the row count does not match")
                    return
                }
                ended = true
            default:
                failure = FormatError(line: lineNumber, problem: "not a cache line")
            }
        }
        if let failure { throw failure }
        guard ended else { throw FormatError(line: number + 1, problem: "the file ends before 'end' (cut short)") }
        guard let change, let saved else { throw FormatError(line: 2, problem: "no 'change' or 'saved' line") }
        let rows = DatabaseRows(changeID: change, members: members, rules: rules)
        guard rows.memberCount + rows.ruleCount == members.count + rules.count else {
            throw FormatError(line: number, problem: "a row's key appears twice (a damaged cache)")
        }
        return Contents(rows: rows, saved: saved)
    }

    static func escape(_ field: String, into out: inout [UInt8]) {
        func plain(_ byte: UInt8) -> Bool { byte > 0x20 && byte != 0x7F && byte != UInt8(ascii: "%") }
        RowBytes.bytes(field) { bytes in
            // Nearly every field has nothing to escape: one scan, one copy.
            if bytes.allSatisfy(plain) {
                out.append(contentsOf: bytes)
                return
            }
            let digits: StaticString = "0123456789ABCDEF"
            for byte in bytes {
                if plain(byte) {
                    out.append(byte)
                } else {
                    out.append(UInt8(ascii: "%"))
                    out.append(digits.utf8Start[Int(byte >> 4)])
                    out.append(digits.utf8Start[Int(byte & 0x0F)])
                }
            }
        }
    }

    static func unescape(_ field: ArraySlice<UInt8>) -> String? {
        guard field.contains(UInt8(ascii: "%")) else { return String(decoding: field, as: UTF8.self) }
        var out: [UInt8] = []
        out.reserveCapacity(field.count)
        var index = field.startIndex
        while index < field.endIndex {
            let byte = field[index]
            guard byte == UInt8(ascii: "%") else {
                out.append(byte)
                index += 1
                continue
            }
            guard index + 2 < field.endIndex, let high = hexValue(field[index + 1]),
                let low = hexValue(field[index + 2])
            else { return nil }
            out.append(high << 4 | low)
            index += 3
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
