/// The SHA-256 of the rule files as the daemon read them, for its log lines and metrics page: an
/// administrator compares it with `sha256sum` to know which rules are in force.
///
/// Invariants:
/// - The digest covers the bytes the parser was handed, not the files as they are later: a file
///   changed after the read does not change the hash of the rules in force. A database list is
///   hashed as its row count and rows' checksum (`DatabaseRows.checksum`): hosts with the same rows
///   show the same hash, and a list of a million rows is not rendered to hash it on each change.
/// - Order: the main file, then each further file in `RuleSet.files` order. The parser appends a
///   path to `files` exactly when its read succeeds (rule files, included files and lists alike),
///   so hashing in reading order is hashing in `files` order; for a file without includes or lists
///   the digest is `sha256sum FILE`'s.
/// - The files are never joined in memory: the digest is fed file by file (libcrypto, CCryptoShim).

internal import CCryptoShim
import SplitCore

/// A SHA-256 fed in pieces.
final class SHA256Digest {
    /// nil once finished, or when libcrypto failed (then `finish` answers nil).
    private var context: UnsafeMutableRawPointer?

    init() { context = ccrypto_sha256_begin() }

    deinit { if let context { ccrypto_sha256_end(context, nil) } }

    func update(_ bytes: [UInt8]) {
        guard let context else { return }
        let ok = bytes.withUnsafeBytes { ccrypto_sha256_update(context, $0.baseAddress, $0.count) }
        if ok != 1 {
            ccrypto_sha256_end(context, nil)
            self.context = nil
        }
    }

    /// The digest as 64 lower-case hex digits; nil when libcrypto failed on the way.
    func finish() -> String? {
        guard let context else { return nil }
        self.context = nil
        var digest = [UInt8](repeating: 0, count: 32)
        guard ccrypto_sha256_end(context, &digest) == 1 else { return nil }
        let hex = Array("0123456789abcdef".utf8)
        return String(decoding: digest.flatMap { [hex[Int($0 >> 4)], hex[Int($0 & 0xF)]] }, as: UTF8.self)
    }
}

/// A `DiskRuleSource` that hashes every file it hands the parser, in reading order, and the text
/// of every database list (`inputs.database`). With `inputs.files`, files are served from there
/// instead of the disk (a database change rebuilds the rules from the files as last read); the
/// files it read are kept in `read` when asked (`remember`).
final class DigestingRuleSource: RuleSource {
    let disk = DiskRuleSource()
    let digest = SHA256Digest()
    let inputs: RuleInputs
    let remember: Bool
    private(set) var read = RememberedFiles()

    init(_ inputs: RuleInputs = RuleInputs(), remember: Bool = false) {
        self.inputs = inputs
        self.remember = remember
    }

    func contents(of path: String) throws -> [UInt8] {
        let bytes = try inputs.files?.contents[path] ?? disk.contents(of: path)
        if remember { read.contents[path] = bytes }
        digest.update(bytes)
        return bytes
    }

    func expand(pattern: String) throws -> [String] {
        let paths = try inputs.files?.expansions[pattern] ?? disk.expand(pattern: pattern)
        if remember { read.expansions[pattern] = paths }
        return paths
    }

    func databaseList(_ name: String, in table: DatabaseTable) throws -> [UInt8] {
        guard let rows = inputs.database else { throw NoDatabase() }
        let bytes = try rows.text(of: name, in: table)
        databaseListPatched(name, in: table)
        return bytes
    }

    /// A list is hashed as its table, name, row count and checksum (`DatabaseRows.checksum`), the
    /// same whether the parser read it whole or patched it: a one-row change to a list of a million
    /// rows does not render the list to hash it.
    func databaseListPatched(_ name: String, in table: DatabaseTable) {
        guard let (count, sum) = inputs.database?.checksum(of: name, in: table) else { return }
        digest.update(Array("pgsql:\(table.rawValue):\(name) rows \(count) checksum \(sum)\n".utf8))
    }

    var databaseRows: DatabaseRows? { inputs.database }
}

/// What rules are built from besides the rule file's path: the database's rows, the files as
/// last read (nil: read them from the disk), and the database lists as the last build read them
/// (patched, not read whole, where the rows changed little).
public struct RuleInputs: Sendable {
    public var database: DatabaseRows?
    public var files: RememberedFiles?
    public var lists: DatabaseListParses

    public init(
        database: DatabaseRows? = nil, files: RememberedFiles? = nil, lists: DatabaseListParses = DatabaseListParses()
    ) {
        self.database = database
        self.files = files
        self.lists = lists
    }
}

/// Rule and list files as read, and the include globs' matches.
public struct RememberedFiles: Sendable {
    var contents: [String: [UInt8]] = [:]
    var expansions: [String: [String]] = [:]
}
