/// milter-test: check rule files, explain what they do to an envelope, talk to and load any milter.

import ArgumentParser

@main
struct MilterTest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "milter-test",
        abstract: "Check splitmilter rules, explain them, and talk to any milter.",
        subcommands: [Check.self, Explain.self, Send.self]
    )
}
