/// Finding a recipient's section: exact names, then the nearest `*.parent`, with few names (scanned)
/// as with many (hashed).

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
}
