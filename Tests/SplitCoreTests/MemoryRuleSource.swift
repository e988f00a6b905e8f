/// Rule files held in memory, so parser tests need no disk.

import Glibc
import SplitCore

struct MemoryRuleSource: RuleSource {
    var files: [String: String]

    struct Missing: Error, CustomStringConvertible {
        let description = "No such file or directory"
    }

    func contents(of path: String) throws -> [UInt8] {
        guard let text = files[path] else { throw Missing() }
        return Array(text.utf8)
    }

    func expand(pattern: String) throws -> [String] {
        files.keys.filter { fnmatch(pattern, $0, FNM_PATHNAME) == 0 }.sorted()
    }
}

/// Parses `main` (and whatever it includes) from `files`.
func parse(_ files: [String: String], main: String = "/etc/sm/main.rules") -> RuleParseResult {
    RuleParser.parse(file: main, source: MemoryRuleSource(files: files))
}

func parse(_ text: String) -> RuleParseResult {
    parse(["/etc/sm/main.rules": text])
}

/// The rule set of a file that must parse cleanly; `files` are the other files it reads.
func rules(_ text: String, files: [String: String] = [:]) throws -> RuleSet {
    let result = parse(files.merging(["/etc/sm/main.rules": text]) { _, main in main })
    guard let set = result.ruleSet else {
        throw ParseFailure(description: result.diagnostics.map(\.description).joined(separator: "\n"))
    }
    return set
}

struct ParseFailure: Error, CustomStringConvertible {
    let description: String
}
