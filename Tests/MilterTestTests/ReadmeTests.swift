/// The README's "milter-test" section runs as written. Every fenced block in that section whose
/// first line starts with `$ milter-test` is a list of commands, each followed by its output
/// (standard output and error, as a terminal shows them); each command runs from the repository
/// root with the built `milter-test` first on the PATH, and must print exactly that.
///
/// The line before a block may say how to run it:
/// - `<!-- checked against a running splitmilter: ARGS -->`: splitmilter is started with ARGS on a
///   temporary socket, which replaces the command's `unix:`/`inet:` argument;
/// - `<!-- checked against a running splitmilter, timings masked: ARGS -->`: the same, comparing
///   with every decimal number (`0.515`, `3880.5`) masked, because durations and rates vary;
/// - `<!-- not checked: REASON -->`: the block is skipped.

import Foundation
import Testing

struct ReadmeExample: CustomTestStringConvertible, Sendable {
    enum Mode: Sendable, Equatable {
        case run
        case againstSplitmilter([String], maskTimings: Bool)
        case notChecked
    }

    /// Without the `$ `.
    let command: String
    let output: String
    let mode: Mode
    /// 1-based, for messages.
    let line: Int

    var testDescription: String { "README.md:\(line): \(command.prefix(60))" }

    static let readme = Paths.repository.appendingPathComponent("README.md")

    /// Every example of the section, checked or not.
    static var all: [ReadmeExample] {
        guard let text = try? String(contentsOf: readme, encoding: .utf8) else { return [] }
        return parse(text)
    }

    static func parse(_ text: String) -> [ReadmeExample] {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard let start = lines.firstIndex(of: "## milter-test") else { return [] }
        let end = lines[(start + 1)...].firstIndex { $0.hasPrefix("## ") } ?? lines.count
        var examples: [ReadmeExample] = []
        var index = start + 1
        var previous = ""
        while index < end {
            let line = lines[index]
            guard line.hasPrefix("```") else {
                if !line.trimmingCharacters(in: .whitespaces).isEmpty { previous = line }
                index += 1
                continue
            }
            let close = lines[(index + 1)..<end].firstIndex { $0.hasPrefix("```") } ?? end
            let block = Array(lines[(index + 1)..<close])
            if block.first?.hasPrefix("$ milter-test") == true {
                examples += commands(block, firstLine: index + 2, mode: mode(previous))
            }
            previous = ""
            index = close + 1
        }
        return examples
    }

    static func mode(_ line: String) -> Mode {
        let trimmed = line.trimmingCharacters(in: .whitespaces)
        guard trimmed.hasPrefix("<!--"), trimmed.hasSuffix("-->") else { return .run }
        let comment = trimmed.dropFirst(4).dropLast(3).trimmingCharacters(in: .whitespaces)
        let masked = "checked against a running splitmilter, timings masked:"
        if comment.hasPrefix(masked) {
            let arguments = comment.dropFirst(masked.count).split(separator: " ").map(String.init)
            return .againstSplitmilter(arguments, maskTimings: true)
        }
        let splitmilter = "checked against a running splitmilter:"
        if comment.hasPrefix(splitmilter) {
            let arguments = comment.dropFirst(splitmilter.count).split(separator: " ").map(String.init)
            return .againstSplitmilter(arguments, maskTimings: false)
        }
        return comment.hasPrefix("not checked") ? .notChecked : .run
    }

    /// Splits a block at its `$ ` lines; trailing blank lines of an output are dropped.
    static func commands(_ block: [String], firstLine: Int, mode: Mode) -> [ReadmeExample] {
        var examples: [ReadmeExample] = []
        var index = 0
        while index < block.count {
            guard block[index].hasPrefix("$ ") else {
                index += 1
                continue
            }
            var output = block[(index + 1)...].prefix { !$0.hasPrefix("$ ") }
            let next = index + 1 + output.count
            while output.last?.isEmpty == true { output = output.dropLast() }
            examples.append(
                ReadmeExample(
                    command: String(block[index].dropFirst(2)),
                    output: output.map { $0 + "\n" }.joined(),
                    mode: mode,
                    line: firstLine + index))
            index = next
        }
        return examples
    }

    /// The command's socket argument as the README writes it.
    var socketWord: String? {
        command.split(separator: " ").first { $0.hasPrefix("unix:") || $0.hasPrefix("inet:") }.map(String.init)
    }

    /// The command with its socket argument (the first `unix:` or `inet:` word) replaced.
    func command(socket: String) -> String {
        command.split(separator: " ", omittingEmptySubsequences: false).map { word in
            word.hasPrefix("unix:") || word.hasPrefix("inet:") ? socket : String(word)
        }.joined(separator: " ")
    }
}

@Suite(.enabled(if: Paths.binaries != nil, "milter-test and splitmilter are not built next to the test bundle"))
struct ReadmeTests {
    @Test func everySubcommandHasAnExample() {
        let shown = Set(
            ReadmeExample.all.compactMap { $0.command.split(separator: " ").dropFirst().first.map(String.init) })
        #expect(shown.isSuperset(of: ["check", "explain", "send", "bench"]), "README milter-test examples: \(shown)")
        #expect(ReadmeExample.all.filter { $0.mode != .notChecked }.count >= 3)
    }

    @Test(arguments: ReadmeExample.all.filter { $0.mode != .notChecked })
    func examplePrintsWhatTheReadmeShows(_ example: ReadmeExample) async throws {
        var printed: String
        var expected = example.output
        switch example.mode {
        case .run, .notChecked:
            printed = try await ReadmeTests.shell(example.command)
        case .againstSplitmilter(let arguments, let maskTimings):
            let daemon = try await RunningMilter.start(try Paths.binary("splitmilter"), in: Paths.repository) { path in
                arguments + ["--socket", "unix:" + path, "--socket-group", Processes.groupName] + Processes.daemonUser
            }
            printed = try await daemon.run { daemon in
                // The output may name the socket: show it as the README does.
                try await ReadmeTests.shell(example.command(socket: daemon.socket))
                    .replacingOccurrences(of: daemon.socket, with: example.socketWord ?? daemon.socket)
            }
            if maskTimings {
                printed = ReadmeTests.maskDecimals(printed)
                expected = ReadmeTests.maskDecimals(expected)
            }
        }
        #expect(
            printed == expected,
            "\(example.testDescription) prints otherwise:\n\(Golden.diff(expected, printed))")
    }

    /// Replaces every decimal number (digits, a dot, digits) by `#`.
    static func maskDecimals(_ text: String) -> String {
        text.replacingOccurrences(of: "[0-9]+\\.[0-9]+", with: "#", options: .regularExpression)
    }

    /// Runs one README command line through sh, as a reader would type it.
    static func shell(_ command: String) async throws -> String {
        var environment = ProcessInfo.processInfo.environment
        let folder = try #require(Paths.binaries)
        environment["PATH"] = folder.path + ":" + (environment["PATH"] ?? "/usr/bin:/bin")
        return try await Processes.run("/bin/sh", ["-c", command], environment: environment, mergeErrors: true).output
    }

    @Test func parsingFollowsTheMarkers() {
        let text = """
            ## milter-test
            ```
            $ milter-test check a.rules
            a.rules: ok

            $ milter-test explain a.rules --rcpt x@y
            rcpt <x@y>: no domain section
            ```
            <!-- not checked: needs a running milter -->
            ```
            $ milter-test bench unix:/x.sock
            figures
            ```
            <!-- checked against a running splitmilter: --rules r --instance i -->
            ```
            $ milter-test send unix:/x.sock --rcpt 'a@b NOTIFY=NEVER'
            verdict accept
            ```
            ```
            not a command
            ```
            ## next
            ```
            $ milter-test check elsewhere
            ```
            """
        let examples = ReadmeExample.parse(text)
        #expect(
            examples.map(\.command) == [
                "milter-test check a.rules", "milter-test explain a.rules --rcpt x@y", "milter-test bench unix:/x.sock",
                "milter-test send unix:/x.sock --rcpt 'a@b NOTIFY=NEVER'",
            ])
        #expect(
            examples.map(\.output) == [
                "a.rules: ok\n", "rcpt <x@y>: no domain section\n", "figures\n", "verdict accept\n",
            ])
        #expect(
            examples.map(\.mode) == [
                .run, .run, .notChecked, .againstSplitmilter(["--rules", "r", "--instance", "i"], maskTimings: false),
            ])
        #expect(examples[3].command(socket: "unix:/tmp/s") == "milter-test send unix:/tmp/s --rcpt 'a@b NOTIFY=NEVER'")
        #expect(examples.map(\.line) == [3, 6, 11, 16])
    }
}
