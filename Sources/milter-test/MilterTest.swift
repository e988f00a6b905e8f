/// milter-test: check rule files, explain them, talk to and load any milter.

import ArgumentParser
import SplitSystem

@main
struct MilterTest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "milter-test",
        abstract: "Check splitmilter rules, explain them, and talk to any milter.",
        version: SplitmilterVersion.string,
        subcommands: [Check.self, Explain.self, Send.self, Bench.self, Ping.self]
    )

    /// Like ArgumentParser's `main()`, except that usage errors exit with 2 (as `check` and `send`
    /// document, like most Unix tools) instead of EX_USAGE (64), and that `--rcpt` values are
    /// lifted out of the command line first (`LiftedRecipients`).
    static func main() {
        do {
            let lifted = LiftedRecipients(Array(CommandLine.arguments.dropFirst()))
            var command = try parseAsRoot(lifted.arguments)
            if !lifted.recipients.isEmpty, var taking = command as? any TakesRecipients {
                taking.recipients += lifted.recipients
                command = taking
            }
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

/// A subcommand with a repeatable `--rcpt` option.
protocol TakesRecipients: ParsableCommand {
    var recipients: [String] { get set }
}

extension MilterTest.Send: TakesRecipients {}
extension MilterTest.Explain: TakesRecipients {}

/// swift-argument-parser (1.8) copies an array option's values, and the set of their positions,
/// each time the option occurs, so n `--rcpt` options cost O(n²): 8,000 recipients took seconds
/// before `send` sent a frame. `send` and `explain` therefore leave the parser the first `--rcpt`
/// (so its validation sees a recipient) and take every later `--rcpt VALUE` and `--rcpt=VALUE` out
/// of the command line in one pass, to be appended afterwards in order. Only after the
/// subcommand's name and before `--`; a `--rcpt` followed by something that looks like an option
/// stays, so the parser reports it as it always did. Help, errors and every other option are the
/// parser's.
struct LiftedRecipients {
    static let option = "--rcpt"
    static let subcommands: Set<String> = ["send", "explain"]

    /// The command line without the lifted options.
    private(set) var arguments: [String] = []
    /// The lifted values, in order: they come after the first `--rcpt`'s.
    private(set) var recipients: [String] = []

    init(_ commandLine: [String]) {
        guard let name = commandLine.first, LiftedRecipients.subcommands.contains(name) else {
            arguments = commandLine
            return
        }
        arguments.reserveCapacity(commandLine.count)
        var first = true
        var index = 0
        while index < commandLine.count {
            let argument = commandLine[index]
            if argument == "--" {
                arguments += commandLine[index...]
                break
            }
            let separate = argument == LiftedRecipients.option
            let joined = argument.hasPrefix(LiftedRecipients.option + "=")
            if separate || joined, first {
                first = false
            } else if separate, index + 1 < commandLine.count, !commandLine[index + 1].hasPrefix("-") {
                recipients.append(commandLine[index + 1])
                index += 2
                continue
            } else if joined {
                recipients.append(String(argument.dropFirst(LiftedRecipients.option.count + 1)))
                index += 1
                continue
            }
            arguments.append(argument)
            index += 1
        }
    }
}
