/// Where rule text comes from. The parser is pure: it asks a `RuleSource` for bytes and glob
/// matches, and the shell (SplitSystem's `DiskRuleSource`, the database's rows) or a test supplies
/// them.
///
/// A database list (`pgsql:NAME`) comes as text in a list file's format, rendered from its rows
/// (`DatabaseRows.text(of:)`), so the parser validates a row exactly as it validates a line of a
/// file; or, when the rows changed little since the last parse, as those rows patched
/// (`DatabaseListParses`), each added row read as its own line.

public protocol RuleSource {
    /// The whole content of the file at `path`. Throw an error whose description says why not.
    func contents(of path: String) throws -> [UInt8]
    /// The existing files matching the glob `pattern`, sorted. No match is an empty list.
    func expand(pattern: String) throws -> [String]
    /// The rows of the database list `name` in `table` as text: for a user list, one name a line;
    /// for the rules of `user pgsql:NAME`, one `user NAME ACTION TARGETS` line a row.
    func databaseList(_ name: String, in table: DatabaseTable) throws -> [UInt8]
    /// The rows the database lists come from, when there are any: the parser then patches the
    /// lists it read before (`DatabaseListParses`) instead of reading them whole again.
    var databaseRows: DatabaseRows? { get }
    /// Called for each list the parser patched instead of asking `databaseList`, in reading order:
    /// a source that hashes what the rules are made of hashes the list here.
    func databaseListPatched(_ name: String, in table: DatabaseTable)
}

extension RuleSource {
    /// Without a database (`milter-test check`, tests), a `pgsql:` list cannot be read.
    public func databaseList(_ name: String, in table: DatabaseTable) throws -> [UInt8] { throw NoDatabase() }

    public var databaseRows: DatabaseRows? { nil }

    public func databaseListPatched(_ name: String, in table: DatabaseTable) {}
}

/// The two tables of docs/postgresql/schema.sql that rule files name lists of.
public enum DatabaseTable: String, Sendable, Hashable, CaseIterable {
    /// `splitmilter.list_members`: `only`, `except`, `known`, `allow-any pgsql:LIST`.
    case members = "list_members"
    /// `splitmilter.user_rules`: `user pgsql:LIST`.
    case rules = "user_rules"
}

/// The error of a `pgsql:` list read where no database is configured.
public struct NoDatabase: Error, CustomStringConvertible, Sendable {
    public init() {}
    public var description: String { "no database is configured (splitmilter --database FILE)" }
}

/// The prefix of a database list's name, and its check: the same characters wherever it is
/// written (the rule file, the `list` column).
public enum DatabaseListName {
    public static let prefix = "pgsql:"
    public static let maximumLength = 128

    /// Why `name` cannot name a list, or nil: 1 to 128 letters, digits, `.`, `_` and `-`.
    public static func problem(in name: Substring) -> String? {
        if name.isEmpty { return "the list name is empty" }
        if name.utf8.count > maximumLength { return "the list name is longer than \(maximumLength) bytes" }
        let allowed = name.utf8.allSatisfy {
            LocalPartCharacters.isAlphanumeric($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_")
                || $0 == UInt8(ascii: "-")
        }
        return allowed ? nil : "a list name has only letters, digits, '.', '_' and '-'"
    }
}

/// Path arithmetic the parser needs, without touching the file system.
enum RulePath {
    static func isGlob(_ path: String) -> Bool {
        path.contains { $0 == "*" || $0 == "?" || $0 == "[" }
    }

    /// `path` as seen from the file `base`: absolute paths stay, relative ones join base's folder.
    static func resolve(_ path: String, relativeTo base: String) -> String {
        if path.hasPrefix("/") { return path }
        guard let slash = base.lastIndex(of: "/") else { return path }
        return String(base[...slash]) + path
    }
}
