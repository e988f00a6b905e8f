/// Where rule text comes from. The parser is pure: it asks a `RuleSource` for bytes and glob
/// matches, and the shell (SplitSystem's `DiskRuleSource`) or a test supplies them.

public protocol RuleSource {
    /// The whole content of the file at `path`. Throw an error whose description says why not.
    func contents(of path: String) throws -> [UInt8]
    /// The existing files matching the glob `pattern`, sorted. No match is an empty list.
    func expand(pattern: String) throws -> [String]
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
