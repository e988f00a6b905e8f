/// `milter-test check RULES…`: every error and warning of each rule file, and a summary line.

import ArgumentParser
import SplitSystem

extension MilterTest {
    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check rule files: print every error as file:line:col and a summary.",
            discussion: "Exit status: 0 no errors, 1 errors (or no rows from --database), 2 usage."
        )

        @Argument(help: "Rule files to check.")
        var rules: [String]

        @Option(help: DatabaseOption.help)
        var database: String?

        func run() throws {
            var standardError = StandardError()
            let inputs = try DatabaseOption.inputs(database)
            var failed = false
            for path in rules {
                let loaded = RuleLoader.load(path, inputs: inputs).result
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
