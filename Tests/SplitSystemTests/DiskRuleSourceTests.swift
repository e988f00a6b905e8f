/// Rule files on a real file system: glob includes, unreadable files, a million-user list.

import Foundation
import SplitCore
import SplitSystem
import Testing

/// Rule files on a real file system: includes by glob, unreadable files, a million-user list.
@Suite struct DiskRuleSourceTests {
    let folder: String

    init() throws {
        folder = NSTemporaryDirectory() + "splitmilter-tests-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder + "/domains", withIntermediateDirectories: true)
    }

    func write(_ name: String, _ text: String) throws {
        try text.write(toFile: folder + "/" + name, atomically: true, encoding: .utf8)
    }

    @Test func loadsIncludedFilesByGlobInOrder() throws {
        try write("main.rules", "include domains/*.rules\n")
        try write("domains/b.rules", "domain b.example\n  copy %u@copy.example\n")
        try write("domains/a.rules", "domain a.example\n  copy %u@copy.example\n")
        let loaded = RuleLoader.load(folder + "/main.rules")
        let set = try #require(loaded.ruleSet, "\(loaded.diagnostics)")
        #expect(set.files == [folder + "/main.rules", folder + "/domains/a.rules", folder + "/domains/b.rules"])
        try FileManager.default.removeItem(atPath: folder)
    }

    @Test func reportsAnUnreadableIncludeWithItsCause() throws {
        try write("main.rules", "include secret.rules\n")
        try write("secret.rules", "")
        chmod(folder + "/secret.rules", 0)
        let loaded = RuleLoader.load(folder + "/main.rules")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // root reads any file; then the include must simply load.
        if geteuid() == 0 {
            #expect(loaded.ruleSet != nil)
        } else {
            #expect(loaded.errors.first?.description.hasSuffix("Permission denied") == true)
        }
        try write("main.rules", "include " + folder + "/domains\n")
        #expect(
            RuleLoader.load(folder + "/main.rules").errors.map(\.description) == [
                "\(folder)/main.rules:1:9: error: cannot read '\(folder)/domains': not a regular file"
            ])
    }

    /// A million users load and are looked up by hash; the time is reported by the benchmark
    /// script, not asserted here.
    @Test func loadsAMillionUserList() throws {
        defer { try? FileManager.default.removeItem(atPath: folder) }
        var list = ""
        list.reserveCapacity(12_000_000)
        for index in 0..<1_000_000 { list += "user\(index)\n" }
        try write("users.txt", list)
        try write("main.rules", "domain example.org\n  copy %u@gapps.example.org\n  only file:users.txt\n")
        let loaded = RuleLoader.load(folder + "/main.rules")
        let set = try #require(loaded.ruleSet, "\(loaded.diagnostics.prefix(3))")
        #expect(set.userCount == 1_000_000)
        #expect(set.decide(recipient: "<user999999@example.org>").copies.count == 1)
        #expect(set.decide(recipient: "<USER0@example.org>").copies.count == 1)
        #expect(set.decide(recipient: "<user1000000@example.org>").copies.isEmpty)
    }
}
