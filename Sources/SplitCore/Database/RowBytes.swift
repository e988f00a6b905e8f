/// The bytes of the database's fields, compared and scanned in place.
///
/// Rows are ordered and told apart by their bytes, as PostgreSQL's `COLLATE "C"` does, never by
/// `String`'s canonical equivalence (the two spellings of é are two names). A change to a list of a
/// million rows compares and renders every row (`DatabaseListParses.diff`, `DatabaseRows.text`),
/// so these loops run over the contiguous UTF-8 of each string, not through the generic
/// collection machinery of `String.UTF8View`.

enum RowBytes {
    /// `body` over the string's UTF-8, borrowed (no retain, no copy of a native string).
    @inline(__always)
    static func bytes<Result>(_ string: String, _ body: (UnsafeBufferPointer<UInt8>) -> Result) -> Result {
        if let result = string.utf8.withContiguousStorageIfAvailable(body) { return result }
        return Array(string.utf8).withUnsafeBufferPointer(body)
    }

    /// True when both strings have the same bytes.
    static func equal(_ left: String, _ right: String) -> Bool {
        guard left.utf8.count == right.utf8.count else { return false }
        return bytes(left) { left in bytes(right) { right in sameBytes(left, right) } }
    }

    /// True when `left`'s bytes sort before `right`'s (a prefix sorts first).
    static func precedes(_ left: String, _ right: String) -> Bool {
        bytes(left) { left in
            bytes(right) { right in
                for index in 0..<min(left.count, right.count) where left[index] != right[index] {
                    return left[index] < right[index]
                }
                return left.count < right.count
            }
        }
    }

    /// True when every byte of `field` passes `test`.
    static func all(_ field: String, _ test: (UInt8) -> Bool) -> Bool {
        bytes(field) { bytes in
            for byte in bytes where !test(byte) { return false }
            return true
        }
    }
}

/// A 64-bit checksum of one row: FNV-1a over its fields' bytes (each followed by a 0 byte, which no
/// field holds), mixed by MurmurHash3's finalizer so that the sum of a list's rows changes with any
/// byte of any row. Fixed, unlike Swift's per-process `Hasher`: every host computes the same sums.
/// It tells hosts that followed the database to different rows apart, by accident (a chance of
/// 2^-64); it is not a defence against someone who chooses rows to collide.
enum RowChecksum {
    static func of(member name: String) -> UInt64 { mix(fields(0xCBF2_9CE4_8422_2325, name)) }

    static func of(rule: DatabaseRows.Rule) -> UInt64 {
        mix(fields(fields(fields(0xCBF2_9CE4_8422_2325, rule.name), rule.action), rule.targets))
    }

    private static func fields(_ state: UInt64, _ field: String) -> UInt64 {
        RowBytes.bytes(field) { bytes in
            var hash = state
            for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01B3 }
            return hash &* 0x100_0000_01B3
        }
    }

    private static func mix(_ value: UInt64) -> UInt64 {
        var mixed = value
        mixed = (mixed ^ (mixed >> 33)) &* 0xFF51_AFD7_ED55_8CCD
        mixed = (mixed ^ (mixed >> 33)) &* 0xC4CE_B9FE_1A85_EC53
        return mixed ^ (mixed >> 33)
    }
}
