/// Fuzz target `cache`: the database cache file (`DatabaseCache`), which the daemon reads from disk
/// when it starts while the database is unreachable, and the rendering of its rows as the parser's
/// text (`DatabaseRows.text(of:in:)`).
///
/// Input: the bytes of a cache file.
///
/// Properties:
///   1. decoding never traps; it succeeds or names a line of the input (1 to one past the last);
///   2. decoded rows are kept sorted bytewise, per list, and counted as the `end` line says;
///   3. encoding the decoded rows and decoding that gives the same rows, and encoding is canonical
///      (a second round gives the same bytes);
///   4. every list renders as text with one line per row, or is refused naming its table and list.

import SplitCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = input(data, size)
    let contents: DatabaseCache.Contents
    do {
        contents = try DatabaseCache.decode(bytes)
    } catch {
        let lines = bytes.count(where: { $0 == UInt8(ascii: "\n") }) + 1
        require(error.line >= 1 && error.line <= lines + 1, "error at line \(error.line) of \(lines): \(error)")
        return 0
    }
    let rows = contents.rows
    for (list, names) in rows.members {
        require(
            zip(names, names.dropFirst()).allSatisfy { $0.utf8.lexicographicallyPrecedes($1.utf8) },
            "members of \(list) not sorted: \(names)")
        checkText(rows, list, .members, count: names.count)
    }
    for (list, rules) in rows.rules {
        func precedes(_ left: DatabaseRows.Rule, _ right: DatabaseRows.Rule) -> Bool {
            if !left.name.utf8.elementsEqual(right.name.utf8) {
                return left.name.utf8.lexicographicallyPrecedes(right.name.utf8)
            }
            return left.action.utf8.lexicographicallyPrecedes(right.action.utf8)
        }
        require(zip(rules, rules.dropFirst()).allSatisfy { precedes($0, $1) }, "rules of \(list) not sorted")
        checkText(rows, list, .rules, count: rules.count)
    }
    let encoded = DatabaseCache.encode(rows, saved: contents.saved)
    guard let again = try? DatabaseCache.decode(encoded) else {
        require(false, "the encoded rows do not decode")
        return 0
    }
    require(again.saved == contents.saved && again.rows.changeID == rows.changeID, "change or saved differ")
    require(again.rows.members == rows.members && again.rows.rules == rows.rules, "rows differ after a round")
    require(DatabaseCache.encode(again.rows, saved: again.saved) == encoded, "encoding is not canonical")
    return 0
}

func checkText(_ rows: DatabaseRows, _ list: String, _ table: DatabaseTable, count: Int) {
    do {
        let text = try rows.text(of: list, in: table)
        require(
            text.count(where: { $0 == UInt8(ascii: "\n") }) == count,
            "\(table) \(list): \(count) rows but another number of lines")
    } catch let error as DatabaseRows.RowError {
        require(error.list == list && error.table == table, "refusal names another list: \(error)")
    } catch {
        require(false, "unexpected error \(error)")
    }
}
