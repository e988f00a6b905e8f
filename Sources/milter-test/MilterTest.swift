/// milter-test: check rule files, explain what they do to an envelope, talk to and load any milter.

import ArgumentParser
import SplitSystem

@main
struct MilterTest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "milter-test",
        abstract: "Check splitmilter rules, explain them, and talk to any milter.",
        version: SplitmilterVersion.string,
        subcommands: [Check.self, Explain.self, Send.self, Bench.self]
    )

    /// Like ArgumentParser's `main()`, except that usage errors exit with 2 (as `check` and `send`
    /// document, like most Unix tools) instead of EX_USAGE (64).
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            let code = exitCode(for: error)
            if code == .validationFailure {
                var standardError = StandardError()
                print(fullMessage(for: error), to: &standardError)
                exit(withError: ExitCode(2))
            }
            exit(withError: error)
        }
    }
}
