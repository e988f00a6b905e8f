/// Rule files on disk: the `RuleSource` the daemon and `milter-test` hand to the pure parser.
///
/// Reads whole files with bounded size and expands include globs with glob(3); every failure comes
/// back as an error whose text names the cause (errno), for the parser to place at file:line:col.

import Glibc
import SplitCore
import SystemCall

public struct FileError: Error, CustomStringConvertible, Sendable {
    public let description: String
}

public struct DiskRuleSource: RuleSource {
    /// Rule and list files larger than this are refused: 1 GiB is far beyond 10 million users.
    public static let maximumFileSize = 1 << 30

    public init() {}

    public func contents(of path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileError(description: Self.errnoText()) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw FileError(description: Self.errnoText()) }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw FileError(description: "not a regular file") }
        guard info.st_size <= Self.maximumFileSize else {
            throw FileError(description: "file is larger than \(Self.maximumFileSize) bytes")
        }
        var bytes = [UInt8](repeating: 0, count: Int(info.st_size))
        var filled = 0
        while filled < bytes.count {
            let n = bytes.withUnsafeMutableBytes { buffer in
                SystemCallError.retrying { read(fd, buffer.baseAddress.map { $0 + filled }, buffer.count - filled) }
            }
            if n < 0 { throw FileError(description: Self.errnoText()) }
            if n == 0 { break }
            filled += n
        }
        if filled < bytes.count { bytes.removeLast(bytes.count - filled) }
        return bytes
    }

    public func expand(pattern: String) throws -> [String] {
        var result = glob_t()
        defer { globfree(&result) }
        let rc = glob(pattern, 0, nil, &result)
        if rc == GLOB_NOMATCH { return [] }
        guard rc == 0 else { throw FileError(description: "glob failed (\(rc))") }
        var paths: [String] = []
        for index in 0..<Int(result.gl_pathc) {
            if let path = result.gl_pathv[index] { paths.append(String(cString: path)) }
        }
        return paths.sorted()
    }

    static func errnoText() -> String { String(cString: strerror(errno)) }
}

public enum RuleLoader {
    /// Parses the rule file at `path` and everything it includes.
    public static func load(_ path: String) -> RuleParseResult {
        RuleParser.parse(file: path, source: DiskRuleSource())
    }

    /// Parses the rule file with `inputs` (database rows, remembered files), and hashes what it read:
    /// the SHA-256 (64 hex digits) of the main file's bytes, then each further file's and database
    /// list's in `RuleSet.files` order (`RuleDigest.swift`); nil only when libcrypto fails. With
    /// `remember`, `files` holds every file as read, for a rebuild after a database change.
    public static func load(_ path: String, inputs: RuleInputs, remember: Bool = false) -> LoadedRules {
        let source = DigestingRuleSource(inputs, remember: remember)
        var lists = inputs.lists
        let result = RuleParser.parse(file: path, source: source, lists: &lists)
        return LoadedRules(
            result: result, sha256: source.digest.finish(), files: remember ? source.read : nil, lists: lists)
    }
}

public struct LoadedRules: Sendable {
    public let result: RuleParseResult
    /// SHA-256 of the files and database lists as read; nil only when libcrypto failed.
    public let sha256: String?
    public let files: RememberedFiles?
    /// The database lists as this parse read them, for the next (`RuleInputs.lists`).
    public let lists: DatabaseListParses
}
