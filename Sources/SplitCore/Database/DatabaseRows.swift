/// The rows splitmilter follows in PostgreSQL (docs/postgresql/schema.sql): user lists
/// (`list_members`) and per-user rules (`user_rules`), by list name, and the id of the last change
/// they include (`changes.id`).
///
/// Invariants:
/// - each list's rows are sorted by their key's bytes (PostgreSQL's `COLLATE "C"`), so every host
///   renders the same text, and the same SHA-256, from the same rows;
/// - applying the changes after `changeID`, in id order, gives the rows as of the newest of them
///   (the schema hands ids out densely, in commit order);
/// - a change is O(log n) to find and one array shift to apply: a one-row change to a list of a
///   million names is not a re-read of the list;
/// - `checksums` holds, per list, the wrapping sum of its rows' `RowChecksum`s, kept with every
///   change: the hash of the rules in force covers a list without rendering it;
/// - nothing is checked here but that a row can be written as one line: the parser checks a list's
///   text exactly as it checks a file (`RuleSource.databaseList`); rows of a list no rule file can
///   name (`DatabaseListName`) are not kept.

public struct DatabaseRows: Sendable, Equatable {
    /// One row of `user_rules`: read as the rule line `user NAME ACTION TARGETS`.
    public struct Rule: Sendable, Hashable {
        public let name: String
        public let action: String
        public let targets: String

        public init(name: String, action: String, targets: String) {
            self.name = name
            self.action = action
            self.targets = targets
        }

        /// The row's key as diagnostics name it.
        var key: String { "name='\(name)' action='\(action)'" }

        /// True when both rows have the same key and the same targets, byte for byte.
        static func same(_ left: Rule, _ right: Rule) -> Bool {
            DatabaseRows.sameKey(left, right) && RowBytes.equal(left.targets, right.targets)
        }

        /// Sorted by name, then action, bytewise.
        static func precedes(_ left: Rule, _ right: Rule) -> Bool {
            if !RowBytes.equal(left.name, right.name) { return RowBytes.precedes(left.name, right.name) }
            return RowBytes.precedes(left.action, right.action)
        }
    }

    /// A row of `changes`: what one committed row change did.
    public enum Change: Sendable, Equatable {
        case setMember(list: String, name: String)
        case deleteMember(list: String, name: String)
        case setRule(list: String, Rule)
        case deleteRule(list: String, name: String, action: String)
        /// A table was truncated: only a whole new read gives the rows.
        case reload
    }

    /// Names of each list, sorted bytewise.
    public private(set) var members: [String: [String]] = [:]
    /// Rules of each list, sorted by (name, action).
    public private(set) var rules: [String: [Rule]] = [:]
    /// The id of the last change the rows include (0: none yet).
    public var changeID: Int64
    /// Per table and list, the wrapping sum of the rows' `RowChecksum`s.
    private var checksums: [DatabaseTable: [String: UInt64]] = [:]

    public init(changeID: Int64 = 0) { self.changeID = changeID }

    /// Rows read whole: `members` and `rules` in any order (sorted here, once). A key given twice
    /// (the database's primary keys make that impossible; a damaged cache file does not) is kept
    /// once, the last given.
    public init(changeID: Int64, members: [(list: String, name: String)], rules: [(list: String, rule: Rule)]) {
        self.changeID = changeID
        for (list, name) in members where Self.canBeNamed(list) { self.members[list, default: []].append(name) }
        for (list, rule) in rules where Self.canBeNamed(list) { self.rules[list, default: []].append(rule) }
        // The database hands its rows over in this order already: then one pass checks it and
        // nothing is sorted or copied.
        for list in Array(self.members.keys) {
            guard var names = self.members.removeValue(forKey: list) else { continue }
            if !zip(names, names.dropFirst()).allSatisfy({ RowBytes.precedes($0, $1) }) {
                names.sort(by: RowBytes.precedes)
                names = names.enumerated().filter {
                    $0.offset == 0 || !RowBytes.equal(names[$0.offset - 1], $0.element)
                }
                .map(\.element)
            }
            self.members[list] = names
        }
        for list in Array(self.rules.keys) {
            guard var rows = self.rules.removeValue(forKey: list) else { continue }
            if !zip(rows, rows.dropFirst()).allSatisfy({ Rule.precedes($0, $1) }) {
                // A stable sort keeps equal keys in the order given: the last of each run is kept.
                let sorted = rows.enumerated().sorted {
                    Rule.precedes($0.element, $1.element)
                        || (!Rule.precedes($1.element, $0.element) && $0.offset < $1.offset)
                }.map(\.element)
                rows = sorted.enumerated().filter { index, rule in
                    index == sorted.count - 1 || !Self.sameKey(rule, sorted[index + 1])
                }.map(\.element)
            }
            self.rules[list] = rows
        }
        for (list, names) in self.members {
            checksums[.members, default: [:]][list] = names.reduce(0) { $0 &+ RowChecksum.of(member: $1) }
        }
        for (list, rows) in self.rules {
            checksums[.rules, default: [:]][list] = rows.reduce(0) { $0 &+ RowChecksum.of(rule: $1) }
        }
    }

    /// The list's row count and checksum (the wrapping sum of its rows' `RowChecksum`s): equal
    /// for equal rows on every host, and kept with each change, not computed over the list.
    public func checksum(of list: String, in table: DatabaseTable) -> (rows: Int, sum: UInt64) {
        let rows =
            switch table {
            case .members: members[list]?.count ?? 0
            case .rules: rules[list]?.count ?? 0
            }
        return (rows, checksums[table]?[list] ?? 0)
    }

    /// A list with no rows has no checksum (so rows equal by content are equal as values).
    private mutating func removeChecksum(of list: String, in table: DatabaseTable) {
        checksums[table]?[list] = nil
        if checksums[table]?.isEmpty == true { checksums[table] = nil }
    }

    private mutating func addChecksum(_ value: UInt64, to list: String, in table: DatabaseTable) {
        checksums[table, default: [:]][list, default: 0] &+= value
    }

    static func sameKey(_ left: Rule, _ right: Rule) -> Bool {
        RowBytes.equal(left.name, right.name) && RowBytes.equal(left.action, right.action)
    }

    public var memberCount: Int { members.values.reduce(0) { $0 + $1.count } }
    public var ruleCount: Int { rules.values.reduce(0) { $0 + $1.count } }

    /// True when a rule file can name `list` (`DatabaseListName`): rows of other lists are not
    /// kept. (Their names could also be equal as strings and differ in bytes, as the two spellings
    /// of é do; the lists are keyed by string.)
    static func canBeNamed(_ list: String) -> Bool { DatabaseListName.problem(in: list[...]) == nil }

    /// Applies one change; false for `.reload`, which these rows cannot apply (read them anew).
    public mutating func apply(_ change: Change) -> Bool {
        switch change {
        case .setMember(let list, _), .deleteMember(let list, _), .setRule(let list, _), .deleteRule(let list, _, _):
            guard Self.canBeNamed(list) else { return true }
        case .reload: break
        }
        switch change {
        case .setMember(let list, let name):
            let index = Self.position(of: name, in: members[list] ?? [])
            if index.found { return true }
            members[list, default: []].insert(name, at: index.at)
            addChecksum(RowChecksum.of(member: name), to: list, in: .members)
        case .deleteMember(let list, let name):
            let index = Self.position(of: name, in: members[list] ?? [])
            guard index.found else { return true }
            members[list]?.remove(at: index.at)
            addChecksum(0 &- RowChecksum.of(member: name), to: list, in: .members)
            if members[list]?.isEmpty == true {
                members[list] = nil
                removeChecksum(of: list, in: .members)
            }
        case .setRule(let list, let rule):
            let index = Self.position(of: rule, in: rules[list] ?? [])
            if index.found, let old = rules[list]?[index.at] {
                rules[list]?[index.at] = rule
                addChecksum(0 &- RowChecksum.of(rule: old), to: list, in: .rules)
            } else {
                rules[list, default: []].insert(rule, at: index.at)
            }
            addChecksum(RowChecksum.of(rule: rule), to: list, in: .rules)
        case .deleteRule(let list, let name, let action):
            let index = Self.position(of: Rule(name: name, action: action, targets: ""), in: rules[list] ?? [])
            guard index.found, let old = rules[list]?.remove(at: index.at) else { return true }
            addChecksum(0 &- RowChecksum.of(rule: old), to: list, in: .rules)
            if rules[list]?.isEmpty == true {
                rules[list] = nil
                removeChecksum(of: list, in: .rules)
            }
        case .reload:
            return false
        }
        return true
    }

    /// The list's rows as the parser reads them: a user list one name a line, user rules one
    /// `user NAME ACTION TARGETS` line a row. A list with no rows is empty text. Throws for a row
    /// that cannot be one line of words (a blank, comma, `#` or control character in a key, a line
    /// break in the targets), naming the row.
    public func text(of list: String, in table: DatabaseTable) throws -> [UInt8] {
        var text: [UInt8] = []
        switch table {
        case .members:
            let names = members[list] ?? []
            text.reserveCapacity(names.reduce(0) { $0 + $1.utf8.count + 1 })
            for name in names { try Self.appendLine(member: name, list: list, to: &text) }
        case .rules:
            let rows = rules[list] ?? []
            text.reserveCapacity(
                rows.reduce(0) { $0 + 7 + $1.name.utf8.count + $1.action.utf8.count + $1.targets.utf8.count })
            for rule in rows { try Self.appendLine(rule: rule, list: list, to: &text) }
        }
        return text
    }

    /// One name of a user list as its line of the list's text (`text(of:in:)`).
    static func appendLine(member name: String, list: String, to text: inout [UInt8]) throws {
        guard isOneWord(name) else {
            throw RowError(list: list, table: .members, key: "name='\(name)'", problem: notOneWord)
        }
        text.append(contentsOf: name.utf8)
        text.append(UInt8(ascii: "\n"))
    }

    /// One row of user rules as its line of the list's text: `user NAME ACTION TARGETS`.
    static func appendLine(rule: Rule, list: String, to text: inout [UInt8]) throws {
        guard isOneWord(rule.name), isOneWord(rule.action) else {
            throw RowError(list: list, table: .rules, key: rule.key, problem: notOneWord)
        }
        guard RowBytes.all(rule.targets, { $0 >= 0x20 && $0 != 0x7F && $0 != UInt8(ascii: "#") }) else {
            throw RowError(
                list: list, table: .rules, key: rule.key, problem: "the targets hold '#' or a control character")
        }
        text.append(contentsOf: "user ".utf8)
        text.append(contentsOf: rule.name.utf8)
        text.append(UInt8(ascii: " "))
        text.append(contentsOf: rule.action.utf8)
        text.append(UInt8(ascii: " "))
        text.append(contentsOf: rule.targets.utf8)
        text.append(UInt8(ascii: "\n"))
    }

    /// A row that cannot be written as one line of the list's text.
    public struct RowError: Error, CustomStringConvertible, Sendable {
        public let list: String
        public let table: DatabaseTable
        public let key: String
        public let problem: String

        public var description: String { "row of \(table.rawValue) list='\(list)' \(key): \(problem)" }
    }

    static let notOneWord = "a key holds a blank, a comma, '#' or a control character"

    /// True when `word` is read back as one word: no separator, `#` or control character.
    static func isOneWord(_ word: String) -> Bool {
        !word.isEmpty
            && RowBytes.all(word) {
                $0 > 0x20 && $0 != 0x7F && $0 != UInt8(ascii: ",") && $0 != UInt8(ascii: "#")
            }
    }

    /// Where `name` is in the sorted `names`, or where it goes.
    static func position(of name: String, in names: [String]) -> (at: Int, found: Bool) {
        position(of: name, in: names, precedes: RowBytes.precedes, sameKey: RowBytes.equal)
    }

    static func position(of rule: Rule, in rules: [Rule]) -> (at: Int, found: Bool) {
        position(of: rule, in: rules, precedes: Rule.precedes, sameKey: sameKey)
    }

    /// A binary search of `rows`, sorted by `precedes`: the first index whose row does not precede
    /// `row`, and whether that row has `row`'s key.
    static func position<Row>(
        of row: Row, in rows: [Row], precedes: (Row, Row) -> Bool, sameKey: (Row, Row) -> Bool
    ) -> (at: Int, found: Bool) {
        var low = 0
        var high = rows.count
        while low < high {
            let middle = (low + high) / 2
            if precedes(rows[middle], row) { low = middle + 1 } else { high = middle }
        }
        return (low, low < rows.count && sameKey(rows[low], row))
    }
}
