/// Finding a recipient's section: exact names, then the nearest `*.parent`, with few names (scanned)
/// as with many (hashed); and its user rule and `except` line, with or without the lists' prints.

import Testing

@testable import SplitCore

@Suite struct RuleSetTests {
    /// `count` sections, `d0.example`…, each also for `*.d0.example`…; the last one's line is found.
    func sections(_ count: Int) throws -> RuleSet {
        try rules(
            (0..<count).map { "domain d\($0).example, *.d\($0).example\n  copy %u@copy.example\n" }.joined())
    }

    @Test func findsTheSameSectionsWithFewNamesAsWithMany() throws {
        for count in [1, NameTable.scanLimit / 2, NameTable.scanLimit + 1, 40] {
            let set = try sections(count)
            for index in [0, count - 1] {
                let line = set.domains[index].location.line
                #expect(set.section(for: "d\(index).example")?.location.line == line)
                #expect(set.section(for: "a.b.d\(index).example")?.location.line == line)
                #expect(set.sectionPosition(for: "x.d\(index).example") == index)
            }
            #expect(set.section(for: "example") == nil)
            #expect(set.section(for: "d\(count).example") == nil)
            #expect(set.section(for: "") == nil)
        }
    }

    /// A section's user rule and `except` list answer as a lookup of each key would, for lists of
    /// a few names (a few print bits) and of many (every bit).
    @Test func userListsAnswerAsTheirTables() throws {
        for count in [2, 300] {
            let names = (0..<count).map { "u\($0)" } + ["bob", "x", "bob+news"]
            let set = try rules(
                "domain example.org\n  copy %u@copy.example\n  except \(names.joined(separator: " "))\n"
                    + names.map { "  user \($0) rewrite \($0)@new.example\n" }.joined())
            let section = try #require(set.section(for: "example.org"))
            let asked = names + ["u\(count)", "bobb", "y", "bob+other", "u1+x", "carol", "0", "Bob"]
            for local in asked {
                let address = EnvelopeAddress(localPart: local, domain: "example.org")
                let keys = UserKeys(RecipientParts(address: address, delimiters: "+"))
                let expected = section.users[keys.full] ?? keys.base.flatMap { section.users[$0] }
                #expect(section.userRule(keys) == expected, "\(local)")
                guard case .except(let excepted) = section.scope else {
                    Issue.record("no except line")
                    return
                }
                #expect(section.includes(keys) == !keys.contains(where: excepted.contains), "\(local)")
            }
        }
    }
}
