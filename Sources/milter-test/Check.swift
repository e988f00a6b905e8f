/// `milter-test check RULES…`: every error and warning of each rule file, and a summary line.

import ArgumentParser
import SplitSystem

extension MilterTest {
    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check rule files: print every error as file:line:col and a summary.",
            discussion: "Exit status: 0 no errors, 1 errors, 2 usage."
        )

        @Argument(help: "Rule files to check.")
        var rules: [String]

        func run() throws {
            var standardError = StandardError()
            var failed = false
            for path in rules {
                let loaded = RuleLoader.load(path)
                for diagnostic in loaded.diagnostics { print(diagnostic, to: &standardError) }
                if let set = loaded.ruleSet {
                    print("\(path): ok: \(RuleReport.summary(set))\(warnings(loaded.warnings.count))")
                } else {
                    print("\(path): \(loaded.errors.count) error(s)\(warnings(loaded.warnings.count))")
                    failed = true
                }
            }
            if failed { throw ExitCode.failure }
        }

        func warnings(_ count: Int) -> String {
            count == 0 ? "" : ", \(count) warning\(count == 1 ? "" : "s")"
        }
    }
}
