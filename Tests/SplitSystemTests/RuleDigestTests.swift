/// The rules' hash is `sha256sum`'s: of the file alone, or of the files the rules read, joined in
/// `RuleSet.files` order.

import Foundation
import SplitCore
import SplitSystem
import Testing

extension DiskRuleSourceTests {
    /// `sha256sum`'s hex digest of what the shell command prints.
    func sha256sum(of command: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "\(command) | sha256sum"]
        process.currentDirectoryURL = URL(fileURLWithPath: folder)
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(String(decoding: data, as: UTF8.self).prefix(64))
    }

    @Test func aFileAloneHashesAsSha256sum() throws {
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try write("main.rules", "domain example.org\n  copy %u@copy.example.org\n")
        let load = RuleLoader.load(folder + "/main.rules", inputs: RuleInputs())
        let (loaded, sha256) = (load.result, load.sha256)
        #expect(loaded.ruleSet != nil)
        #expect(sha256 == (try sha256sum(of: "cat main.rules")))
        #expect(sha256?.count == 64)
    }

    @Test func includesAndListsFollowInFilesOrder() throws {
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try write(
            "main.rules",
            "include domains/*.rules\ndomain example.org\n  copy %u@copy.example.org\n  only file:users.txt\n")
        try write("domains/b.rules", "domain b.example\n  copy %u@copy.example\n")
        try write("domains/a.rules", "domain a.example\n  copy %u@copy.example\n")
        try write("users.txt", "alice\nbob\n")
        let load = RuleLoader.load(folder + "/main.rules", inputs: RuleInputs())
        let (loaded, sha256) = (load.result, load.sha256)
        let set = try #require(loaded.ruleSet, "\(loaded.diagnostics)")
        let files = set.files.map { String($0.dropFirst(folder.count + 1)) }
        #expect(files == ["main.rules", "domains/a.rules", "domains/b.rules", "users.txt"])
        #expect(sha256 == (try sha256sum(of: "cat " + files.joined(separator: " "))))
        // Another order of the same bytes is another hash.
        #expect(sha256 != (try sha256sum(of: "cat main.rules domains/b.rules domains/a.rules users.txt")))
    }

    @Test func anEmptyFileHashesAsNothing() throws {
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try write("main.rules", "")
        #expect(
            RuleLoader.load(folder + "/main.rules", inputs: RuleInputs()).sha256
                == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    @Test func theDaemonsSummaryNamesTheHash() throws {
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try write("main.rules", "domain example.org\n  copy %u@copy.example.org\n")
        let load = RuleLoader.load(folder + "/main.rules", inputs: RuleInputs())
        let (loaded, sha256) = (load.result, load.sha256)
        let set = try #require(loaded.ruleSet)
        #expect(
            RuleReport.summary(set, sha256: sha256)
                == "1 domain, 0 listed users, 1 rule, 1 file, sha256=\(sha256?.prefix(12) ?? "")")
        #expect(RuleReport.summary(set, sha256: nil).hasSuffix(", sha256=unknown"))
    }
}

extension DiskRuleSourceTests {
    /// A database list is hashed as its row count and checksum, the same whether the parse read it
    /// whole or patched the last parse's: the same rows give the same hash on every host, and any
    /// changed byte of a row another.
    func applied(
        _ rows: inout DatabaseRows, _ change: DatabaseRows.Change,
        sourceLocation: Testing.SourceLocation = #_sourceLocation
    ) {
        let applied = rows.apply(change)
        #expect(applied, sourceLocation: sourceLocation)
    }

    @Test func aDatabaseListHashesTheSameReadWholeOrPatched() throws {
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try write("main.rules", "domain example.org\n  copy %u@copy.example\n  only pgsql:big\n  user pgsql:people\n")
        typealias Rule = DatabaseRows.Rule
        let first = DatabaseRows(
            changeID: 7, members: (0..<100).map { ("big", "u\($0)") },
            rules: (0..<100).map { ("people", Rule(name: "u\($0)", action: "copy", targets: "u\($0)@x.example")) })
        var second = first
        applied(&second, .setRule(list: "people", Rule(name: "u5", action: "copy", targets: "u5@y.example")))
        applied(&second, .deleteMember(list: "big", name: "u9"))
        var third = second
        applied(&third, .setRule(list: "people", Rule(name: "u5", action: "copy", targets: "u5@x.example")))
        applied(&third, .setMember(list: "big", name: "u9"))

        let path = folder + "/main.rules"
        func whole(_ rows: DatabaseRows) -> String? { RuleLoader.load(path, inputs: RuleInputs(database: rows)).sha256 }
        var lists = DatabaseListParses()
        func patched(_ rows: DatabaseRows) -> String? {
            let load = RuleLoader.load(path, inputs: RuleInputs(database: rows, lists: lists))
            lists = load.lists
            return load.sha256
        }
        let hashes = [patched(first), patched(second), patched(third)]
        #expect(!lists.isEmpty)
        #expect(hashes == [whole(first), whole(second), whole(third)])
        #expect(hashes[0] == hashes[2] && hashes[0] != hashes[1])
        #expect(hashes.allSatisfy { $0?.count == 64 })
        // Two spellings of é are two rows: another hash.
        var composed = first
        applied(&composed, .setRule(list: "people", Rule(name: "u1", action: "copy", targets: "caf\u{E9}@x.example")))
        var decomposed = first
        applied(
            &decomposed, .setRule(list: "people", Rule(name: "u1", action: "copy", targets: "cafe\u{301}@x.example")))
        #expect(whole(composed) != whole(decomposed))
    }
}
