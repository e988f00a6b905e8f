/// Loading grows linearly with every kind of line: ten times the lines may take at most 25 times as
/// long. Linear is 10×; a table ten times larger falls out of the caches, which takes the user
/// list to 15–23× on this project's 2-core machine; a quadratic loader takes 100×. Measured as a
/// ratio within one run, so a slow or busy machine does not matter; the absolute times at real
/// sizes are in `scripts/bench-load`'s output, not here.

import SplitCore
import Testing

@Suite struct LoadGrowthTests {
    enum Kind: String, CaseIterable {
        case userCopy, userRewrite, shadowUserCopy, domainSections, userList

        func files(_ count: Int) -> [String: String] {
            switch self {
            case .userCopy:
                [
                    "/r/main.rules": "domain big.example\n"
                        + (0..<count).map { "user u\($0) copy u\($0)@copy.example\n" }.joined()
                ]
            case .shadowUserCopy:
                [
                    "/r/main.rules": "domain big.example\n"
                        + (0..<count).map { "shadow user u\($0) copy u\($0)@copy.example\n" }.joined()
                ]
            case .userRewrite:
                ["/r/main.rules": "domain big.example\n" + (0..<count).map { "user u\($0) rewrite r\($0)\n" }.joined()]
            case .domainSections:
                ["/r/main.rules": (0..<count).map { "domain d\($0).example\n copy %u@copy\($0).example\n" }.joined()]
            case .userList:
                [
                    "/r/main.rules": "domain big.example\n copy %u@copy.example\n only file:users.txt\n",
                    "/r/users.txt": (0..<count).map { "u\($0)\n" }.joined(),
                ]
            }
        }
    }

    /// One load, in nanoseconds.
    func loadTime(_ files: [String: String]) throws -> UInt64 {
        let start = ContinuousClock.now
        let result = RuleParser.parse(file: "/r/main.rules", source: MemoryRuleSource(files: files))
        let elapsed = ContinuousClock.now - start
        _ = try #require(result.ruleSet, "\(result.diagnostics.prefix(3))")
        return UInt64(elapsed.components.seconds) * 1_000_000_000
            + UInt64(elapsed.components.attoseconds / 1_000_000_000)
    }

    /// The fastest of five loads of each size, taken in turn (small, large, small, …): a shared
    /// machine that is busy for a while slows both sizes, not only the one measured then.
    @Test(arguments: Kind.allCases)
    func tenTimesTheLinesTakesAtMost25TimesAsLong(_ kind: Kind) throws {
        let smallFiles = kind.files(2_000)
        let largeFiles = kind.files(20_000)
        var small = UInt64.max
        var large = UInt64.max
        for _ in 0..<5 {
            small = min(small, try loadTime(smallFiles))
            large = min(large, try loadTime(largeFiles))
        }
        #expect(large <= 25 * max(small, 1_000_000), "\(kind): 2,000 lines \(small) ns, 20,000 lines \(large) ns")
    }

    /// A shadow rule is a live rule with its reference marked: `shadow user … copy` lines load about
    /// as fast as `user … copy` lines (the bound leaves room for a busy machine; a second pass over
    /// the users, or a table grown instead of sized, would take twice as long).
    @Test func shadowUserLinesLoadAsFastAsPlainOnes() throws {
        let plainFiles = Kind.userCopy.files(20_000)
        let shadowFiles = Kind.shadowUserCopy.files(20_000)
        var plain = UInt64.max
        var shadow = UInt64.max
        for _ in 0..<5 {
            plain = min(plain, try loadTime(plainFiles))
            shadow = min(shadow, try loadTime(shadowFiles))
        }
        #expect(shadow * 2 <= plain * 3, "20,000 user lines \(plain) ns, as shadow lines \(shadow) ns")
    }
}
