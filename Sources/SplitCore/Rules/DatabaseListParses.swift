/// The parses of database lists kept from one build of the rules to the next: a one-row change to
/// a list of a million rows costs a diff of the rows and a parse of the changed row, not a parse of
/// the million.
///
/// Invariants:
/// - An entry is a list's rows read alone (into a section with no user of that kind before the
///   list) with no diagnostic and no file read: the users it holds are what reading the same rows
///   whole gives.
/// - A patch diffs the rows the entry was made from with the rows now (both sorted bytewise, byte
///   for byte: two spellings of é are two names). A removed row's rule is taken out, an added
///   row is read as its own line. A diagnostic on the way, an `allow-clients` row, or more than
///   `maximumPatch` rows changed since the list was last read whole: no patch, the list is read
///   whole, so every error and warning is the one a whole read gives.
/// - A rule's reference keeps the line number its row had when it was read (whole, or alone in a
///   patch): an insert does not renumber the rows after it. The row's key, which every
///   diagnostic of a row names, is what identifies it.
/// - Entries no parse asked for are dropped: each parse starts a new set from the previous one.

public struct DatabaseListParses: Sendable {
    struct RulesKey: Hashable {
        let list: String
        let shadow: Bool
    }

    struct Rules {
        var rows: [DatabaseRows.Rule]
        var users: [String: UserRule]
        /// Rows read alone since the list was last read whole.
        var patched: Int
    }

    struct Members {
        var rows: [String]
        var users: Set<String>
        var patched: Int
    }

    var rules: [RulesKey: Rules] = [:]
    var members: [String: Members] = [:]

    /// Past this many rows read alone, a list is read whole again (the follower's own limit for
    /// reading the change log, too): the texts of patched rows stay bounded (~12 MB), and a list
    /// of a million rows that changes one row at a time is read whole once in 50,000 UPDATEs
    /// (~1.5 s then, instead of ~0.2 s).
    static let maximumPatch = 100_000

    public init() {}

    public var isEmpty: Bool { rules.isEmpty && members.isEmpty }

    /// What changed from `old` to `new` (each sorted by `precedes`): rows only in `old` (or with
    /// other contents), and rows only in `new` with their index there. nil past `limit` rows.
    ///
    /// The rows the follower did not touch are the very strings of the previous version (the array
    /// was copied, not its strings): two rows whose bits are equal are equal, and are passed over
    /// without reading their bytes; only the others are compared by key and contents.
    static func diff<Row>(
        _ old: [Row], _ new: [Row], limit: Int, precedes: (Row, Row) -> Bool, sameKey: (Row, Row) -> Bool,
        same: (Row, Row) -> Bool
    ) -> (removed: [Row], added: [(index: Int, row: Row)])? {
        old.withUnsafeBufferPointer { old in
            new.withUnsafeBufferPointer { new in
                if old.count == new.count, old.baseAddress == new.baseAddress { return ([], []) }
                var removed: [Row] = []
                var added: [(index: Int, row: Row)] = []
                var oldIndex = 0
                var newIndex = 0
                while oldIndex < old.count || newIndex < new.count {
                    if oldIndex < old.count, newIndex < new.count,
                        sameBits(old.baseAddress! + oldIndex, new.baseAddress! + newIndex)
                            || sameKey(old[oldIndex], new[newIndex])
                    {
                        if !sameBits(old.baseAddress! + oldIndex, new.baseAddress! + newIndex),
                            !same(old[oldIndex], new[newIndex])
                        {
                            removed.append(old[oldIndex])
                            added.append((newIndex, new[newIndex]))
                        }
                        oldIndex += 1
                        newIndex += 1
                    } else if newIndex == new.count || (oldIndex < old.count && precedes(old[oldIndex], new[newIndex]))
                    {
                        removed.append(old[oldIndex])
                        oldIndex += 1
                    } else {
                        added.append((newIndex, new[newIndex]))
                        newIndex += 1
                    }
                    if removed.count + added.count > limit { return nil }
                }
                return (removed, added)
            }
        }
    }

    /// True when the two values' bits are equal (then so are the values: the same strings).
    @inline(__always)
    static func sameBits<Row>(_ left: UnsafePointer<Row>, _ right: UnsafePointer<Row>) -> Bool {
        let left = UnsafeRawPointer(left)
        let right = UnsafeRawPointer(right)
        let size = MemoryLayout<Row>.size
        var offset = 0
        while offset + 8 <= size {
            guard
                left.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
                    == right.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
            else { return false }
            offset += 8
        }
        while offset < size {
            guard
                left.load(fromByteOffset: offset, as: UInt8.self) == right.load(fromByteOffset: offset, as: UInt8.self)
            else { return false }
            offset += 1
        }
        return true
    }
}

extension ParserState {
    /// The users of `user pgsql:LIST` (`name`) from the previous parse, patched to `rows`, and the
    /// users of the rows read in the patch (the others were linted when they were read); nil when
    /// the list must be read whole. Records the entry for the next parse.
    mutating func patchedUserRules(_ name: String, shadow: Bool, rows: [DatabaseRows.Rule]) -> (
        users: [String: UserRule], added: [String]
    )? {
        let key = DatabaseListParses.RulesKey(list: name, shadow: shadow)
        guard var entry = lists.rules[key] ?? previousLists.rules[key],
            let (removed, added) = DatabaseListParses.diff(
                entry.rows, rows, limit: DatabaseListParses.maximumPatch - entry.patched,
                precedes: DatabaseRows.Rule.precedes, sameKey: DatabaseRows.sameKey, same: DatabaseRows.Rule.same)
        else { return nil }
        if removed.isEmpty, added.isEmpty {
            lists.rules[key] = entry
            return (entry.users, [])
        }
        var section = SectionBuilder(names: [], location: SourceLocation(file: "", line: 0, column: 0), delimiters: "")
        section.users = entry.users
        section.usersReserved = true
        section.usersToLint = []
        for row in removed {
            let user = lowercasedName(row.name)
            guard var rule = section.users[user] else { return nil }
            if row.action.utf8.elementsEqual("copy".utf8) {
                rule.copy = nil
            } else if row.action.utf8.elementsEqual("rewrite".utf8) {
                rule.rewrite = nil
            } else {
                return nil
            }
            let has = rule.has
            section.users[user] = has.copy || has.rewrite || has.allowClients ? rule : nil
        }
        let path = DatabaseListName.prefix + name
        let diagnosticsBefore = diagnostics.count
        let filesBefore = files.count
        for (index, row) in added {
            guard !row.action.utf8.elementsEqual("allow-clients".utf8) else { return nil }
            var bytes: [UInt8] = []
            guard (try? DatabaseRows.appendLine(rule: row, list: name, to: &bytes)) != nil else { return nil }
            let file = RuleFileText(path: path, bytes: bytes)
            bytes.withUnsafeBufferPointer { bytes in
                var line = Line(file: file, bytes: bytes)
                _ = line.read(from: 0, number: index + 1)
                line.shadow = shadow
                parseUser(line, into: &section)
            }
            guard diagnostics.count == diagnosticsBefore, files.count == filesBefore else {
                diagnostics.removeSubrange(diagnosticsBefore...)
                files.removeSubrange(filesBefore...)
                return nil
            }
        }
        entry.rows = rows
        entry.users = section.users
        entry.patched += removed.count + added.count
        lists.rules[key] = entry
        return (entry.users, section.usersToLint ?? [])
    }

    /// The names of the user list `name` from the previous parse, patched to `rows`; nil when the
    /// list must be read whole. Records the entry for the next parse.
    mutating func patchedMembers(_ name: String, rows: [String]) -> Set<String>? {
        guard var entry = lists.members[name] ?? previousLists.members[name],
            let (removed, added) = DatabaseListParses.diff(
                entry.rows, rows, limit: DatabaseListParses.maximumPatch - entry.patched,
                precedes: RowBytes.precedes, sameKey: RowBytes.equal,
                same: { _, _ in true })
        else { return nil }
        if !removed.isEmpty || !added.isEmpty {
            var users = entry.users
            for row in removed {
                guard users.remove(lowercasedName(row)) != nil else { return nil }
            }
            for (_, row) in added {
                var row = row
                guard DatabaseRows.isOneWord(row),
                    row.withUTF8({ LocalPartCharacters.problem(in: $0) }) == nil,
                    users.insert(lowercasedName(row)).inserted
                else { return nil }
            }
            entry.rows = rows
            entry.users = users
            entry.patched += removed.count + added.count
        }
        lists.members[name] = entry
        return entry.users
    }
}

/// A row's name lower-cased as the parser makes a user's key of it (`lowercasedString`).
func lowercasedName(_ name: String) -> String {
    var name = name
    return name.withUTF8(lowercasedString)
}
