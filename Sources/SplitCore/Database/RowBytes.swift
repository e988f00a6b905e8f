/// The bytes of the database's fields, compared and scanned in place.
///
/// Rows are ordered and told apart by their bytes, as PostgreSQL's `COLLATE "C"` does, never by
/// `String`'s canonical equivalence (the two spellings of é are two names). A change to a list of a
/// million rows compares and renders every row (`DatabaseListParses.diff`, `DatabaseRows.text`),
/// so these loops run over the contiguous UTF-8 of each string, not through the generic
/// collection machinery of `String.UTF8View`.

enum RowBytes {
    /// True when both strings have the same bytes.
    static func equal(_ left: String, _ right: String) -> Bool {
        guard left.utf8.count == right.utf8.count else { return false }
        var left = left
        var right = right
        return left.withUTF8 { left in right.withUTF8 { right in sameBytes(left, right) } }
    }

    /// True when `left`'s bytes sort before `right`'s (a prefix sorts first).
    static func precedes(_ left: String, _ right: String) -> Bool {
        var left = left
        var right = right
        return left.withUTF8 { left in
            right.withUTF8 { right in
                for index in 0..<min(left.count, right.count) where left[index] != right[index] {
                    return left[index] < right[index]
                }
                return left.count < right.count
            }
        }
    }

    /// True when every byte of `field` passes `test`.
    static func all(_ field: String, _ test: (UInt8) -> Bool) -> Bool {
        var field = field
        return field.withUTF8 { bytes in
            for byte in bytes where !test(byte) { return false }
            return true
        }
    }
}
