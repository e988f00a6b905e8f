/// What the MilterTestTests share: where the built binaries and fixtures are, running a binary
/// with a deadline, a milter process on a temporary socket (our daemon or a third-party one),
/// and golden-text comparison with a readable diff.
///
/// The binaries are the ones `swift build` put next to this test bundle (`/proc/self/exe`), so
/// the tests run what an administrator would run; `MILTER_TEST_BIN_DIR` overrides the folder.

import Foundation
import MilterClient
import MilterProtocol
import Testing

#if canImport(Glibc)
    import Glibc
#endif

enum Paths {
    /// The package root: this file is Tests/MilterTestTests/Support.swift.
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    static let goldenCases = repository.appendingPathComponent("Tests/Golden/cases")

    /// The folder holding `milter-test` and `splitmilter`, or nil when they are not built.
    static let binaries: URL? = {
        var candidates: [URL] = []
        if let given = ProcessInfo.processInfo.environment["MILTER_TEST_BIN_DIR"] {
            candidates.append(URL(fileURLWithPath: given))
        }
        if let executable = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            // .build/debug/splitmilterPackageTests.xctest (a file on Linux)
            candidates.append(URL(fileURLWithPath: executable).deletingLastPathComponent())
        }
        return candidates.first { folder in
            ["milter-test", "splitmilter"].allSatisfy {
                FileManager.default.isExecutableFile(atPath: folder.appendingPathComponent($0).path)
            }
        }
    }()

    static func binary(_ name: String) throws -> String {
        let folder = try #require(
            Paths.binaries, "\(name) is not built next to the test bundle; set MILTER_TEST_BIN_DIR")
        return folder.appendingPathComponent(name).path
    }
}

/// A finished process.
struct Finished {
    let status: Int32
    let output: String
    let errors: String
}

/// Runs `body`, which blocks (a socket read with a timeout of seconds), on a thread of its own and
/// waits for it without holding one of Swift concurrency's few threads: the tests run in parallel,
/// and a test that blocked the pool for seconds would starve the others' waits and their clocks.
func offThePool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}

enum Processes {
    /// Runs `executable` to completion (killed after `deadline` seconds). With `mergeErrors`,
    /// standard error goes into `output` too, interleaved as a terminal would show it.
    static func run(
        _ executable: String, _ arguments: [String], in directory: URL = Paths.repository,
        environment: [String: String]? = nil, mergeErrors: Bool = false, deadline: Double = 120
    ) async throws -> Finished {
        let scratch = try TemporaryFolder()
        let outputFile = scratch.url.appendingPathComponent("out")
        let errorFile = scratch.url.appendingPathComponent("err")
        _ = FileManager.default.createFile(atPath: outputFile.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errorFile.path, contents: nil)
        let output = try FileHandle(forWritingTo: outputFile)
        let errors = try FileHandle(forWritingTo: errorFile)
        defer {
            try? output.close()
            try? errors.close()
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.currentDirectoryURL = directory
        if let environment { process.environment = environment }
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = output
        process.standardError = mergeErrors ? output : errors
        try process.run()
        let started = Date()
        while process.isRunning {
            if Date().timeIntervalSince(started) > deadline {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
                Issue.record("\(executable) \(arguments.joined(separator: " ")) ran longer than \(deadline) s; killed")
                break
            }
            // Sleeping, not blocking: the tests share a cooperative pool as wide as the machine.
            try await Task.sleep(for: .milliseconds(5))
        }
        process.waitUntilExit()
        return Finished(
            status: process.terminationStatus,
            output: String(decoding: try Data(contentsOf: outputFile), as: UTF8.self),
            errors: String(decoding: try Data(contentsOf: errorFile), as: UTF8.self)
        )
    }

    static func exists(_ path: String) -> Bool { FileManager.default.isExecutableFile(atPath: path) }

    /// Run as root (CI), the daemon must be given an unprivileged user to become, as an
    /// administrator would: it refuses to handle mail as root.
    static var daemonUser: [String] { geteuid() == 0 ? ["--user", "nobody"] : [] }

    /// The name of this process's group, for `--socket-group`, so no test needs root for that.
    static var groupName: String {
        guard let entry = getgrgid(getgid()), let name = entry.pointee.gr_name else { return "root" }
        return String(cString: name)
    }
}

/// A folder under /tmp removed when the value goes away. Short paths: unix socket paths are
/// limited to 107 bytes.
final class TemporaryFolder {
    let url: URL

    init() throws {
        var template = Array("/tmp/mtt.XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer in
            buffer.baseAddress.flatMap { mkdtemp($0) }.map { String(cString: $0) }
        }
        url = URL(fileURLWithPath: try #require(made, "mkdtemp failed: errno \(errno)"))
    }

    deinit { try? FileManager.default.removeItem(at: url) }

    func write(_ text: String, to name: String) throws -> URL {
        let file = url.appendingPathComponent(name)
        try Data(text.utf8).write(to: file)
        return file
    }
}

/// A milter running in the foreground on a unix socket in a temporary folder: started, waited
/// for until it accepts connections, stopped with SIGTERM (SIGKILL after 6 s). Use it inside
/// `run(_:)`, which stops it however the body ends; waits sleep rather than block, because
/// splitmilter (libmilter) takes a few seconds to stop and the tests run in parallel.
final class RunningMilter: @unchecked Sendable {
    let socket: String
    let folder: TemporaryFolder
    private let process = Process()
    private let logFile: URL

    /// - Parameters:
    ///   - arguments: given the socket path, the command-line arguments.
    private init(
        _ executable: String, in directory: URL?, folder: TemporaryFolder?, arguments: (String) -> [String]
    ) throws {
        self.folder = try folder ?? TemporaryFolder()
        let path = self.folder.url.appendingPathComponent("milter.sock").path
        socket = "unix:" + path
        logFile = self.folder.url.appendingPathComponent("milter.log")
        _ = FileManager.default.createFile(atPath: logFile.path, contents: nil)
        let log = try FileHandle(forWritingTo: logFile)
        defer { try? log.close() }
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments(path)
        if let directory { process.currentDirectoryURL = directory }
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = log
        process.standardError = log
        try process.run()
    }

    /// Starts `executable` and waits until its socket accepts connections.
    static func start(
        _ executable: String, in directory: URL? = nil, folder: TemporaryFolder? = nil,
        arguments: (String) -> [String]
    ) async throws -> RunningMilter {
        let milter = try RunningMilter(executable, in: directory, folder: folder, arguments: arguments)
        try await milter.waitUntilListening()
        return milter
    }

    /// Runs `body` with the milter, then stops it, also when `body` throws.
    func run<Result>(_ body: (RunningMilter) async throws -> Result) async throws -> Result {
        do {
            let result = try await body(self)
            await stop()
            return result
        } catch {
            await stop()
            throw error
        }
    }

    /// Starts splitmilter with `rules` (relative to `directory`) and `instance`.
    static func splitmilter(rules: String, in directory: URL, instance: String, extra: [String] = []) async throws
        -> RunningMilter
    {
        try await RunningMilter.start(try Paths.binary("splitmilter"), in: directory) { path in
            [
                "--rules", rules, "--socket", "unix:" + path, "--socket-group", Processes.groupName, "--instance",
                instance,
            ]
                + Processes.daemonUser + extra
        }
    }

    var log: String { (try? String(contentsOf: logFile, encoding: .utf8)) ?? "" }

    /// Sends `signal` to the milter (SIGUSR1: splitmilter reloads its rules).
    func send(signal: Int32) { kill(process.processIdentifier, signal) }

    /// Connects once, as Postfix would, until the socket answers (for 10 s and at least 200
    /// tries). The probe sends nothing: libmilter just sees a client that hung up. The tries count
    /// too because the clock alone is not this wait's: the suites share one process and its few
    /// threads, and a suite busy for seconds (the loading tests) would let 10 s pass untried.
    private func waitUntilListening() async throws {
        let endpoint = try MilterEndpoint(parsing: socket)
        let started = Date()
        var tries = 0
        while Date().timeIntervalSince(started) < 10 || tries < 200 {
            guard process.isRunning else {
                throw MilterStartFailure(
                    description: "exited with \(process.terminationStatus) before listening:\n\(log)")
            }
            if (try? SocketChannel(connectingTo: endpoint, timeout: 1)) != nil { return }
            tries += 1
            try await Task.sleep(for: .milliseconds(20))
        }
        await stop()
        throw MilterStartFailure(description: "not listening on \(socket) after 10 s and \(tries) tries:\n\(log)")
    }

    func stop() async {
        guard process.isRunning else { return }
        process.terminate()
        let started = Date()
        while process.isRunning && Date().timeIntervalSince(started) < 6 {
            try? await Task.sleep(for: .milliseconds(20))
        }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// Only for a milter that was never `run`: no waiting here.
    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}

struct MilterStartFailure: Error, CustomStringConvertible {
    let description: String
}

enum Golden {
    /// Compares `actual` with the file's text; on a difference, records an issue with a line
    /// diff (`-` expected, `+` actual). With GOLDEN_RECORD=1 it writes `actual` instead.
    static func check(_ actual: String, against file: URL, sourceLocation: SourceLocation = #_sourceLocation) throws {
        if ProcessInfo.processInfo.environment["GOLDEN_RECORD"] == "1" {
            try Data(actual.utf8).write(to: file)
            return
        }
        let expected = try String(contentsOf: file, encoding: .utf8)
        guard expected != actual else { return }
        Issue.record(
            "\(file.path) differs (re-record with GOLDEN_RECORD=1):\n\(diff(expected, actual))",
            sourceLocation: sourceLocation)
    }

    /// A line diff from the longest common subsequence; unchanged lines get two spaces.
    static func diff(_ old: String, _ new: String) -> String {
        let a = old.split(separator: "\n", omittingEmptySubsequences: false)
        let b = new.split(separator: "\n", omittingEmptySubsequences: false)
        var common = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in stride(from: a.count - 1, through: 0, by: -1) {
            for j in stride(from: b.count - 1, through: 0, by: -1) {
                common[i][j] = a[i] == b[j] ? common[i + 1][j + 1] + 1 : max(common[i + 1][j], common[i][j + 1])
            }
        }
        var lines: [String] = []
        var (i, j) = (0, 0)
        while i < a.count || j < b.count {
            if i < a.count, j < b.count, a[i] == b[j] {
                lines.append("  \(a[i])")
                i += 1
                j += 1
            } else if i < a.count, j == b.count || common[i + 1][j] >= common[i][j + 1] {
                lines.append("- \(a[i])")
                i += 1
            } else {
                lines.append("+ \(b[j])")
                j += 1
            }
        }
        return lines.joined(separator: "\n")
    }
}

/// The parts of `milter-test send --json` (or `bench --json`) output the tests read.
enum SendJSON {
    static func object(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "not a JSON object")
    }

    /// Each rcpt step's answer: `continue` (also when the milter asked for no reply) or the
    /// text of an SMTP reply (`550 5.7.1 text`); a bare reject or tempfail by its name.
    static func recipientAnswers(_ transcript: [String: Any]) -> [String] {
        let steps = transcript["steps"] as? [[String: Any]] ?? []
        return steps.filter { $0["step"] as? String == "rcpt" }.map { step in
            guard let reply = step["reply"] as? [String: Any] else { return "continue" }
            return reply["text"] as? String ?? reply["action"] as? String ?? "?"
        }
    }

    /// Every modification in `explain`'s form: `del-rcpt <a@b>` (the recipient exactly as received),
    /// `add-rcpt a@b ARGS` (the address exactly as sent), `add-header Name: value`.
    static func modificationsInExplainForm(_ transcript: [String: Any]) -> [String] {
        let steps = transcript["steps"] as? [[String: Any]] ?? []
        return steps.flatMap { step in
            (step["modifications"] as? [[String: Any]] ?? []).map { modification in
                let action = modification["action"] as? String ?? "?"
                let address = modification["address"] as? String ?? ""
                let arguments = modification["arguments"] as? [String] ?? []
                switch action {
                case "del-rcpt": return "del-rcpt \(address)"
                case "add-rcpt": return (["add-rcpt \(address)"] + arguments).joined(separator: " ")
                case "add-header":
                    return
                        "add-header \(modification["name"] as? String ?? ""): \(modification["value"] as? String ?? "")"
                default: return modification["text"] as? String ?? action
                }
            }
        }
    }
}

/// A test's own unix-socket client, for bytes no protocol client would send: the connected
/// descriptor (the caller closes it), or the test fails.
enum UnixClient {
    static func connected(to path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        try #require(fd >= 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in path.utf8.prefix(buffer.count - 1).enumerated() { buffer[index] = byte }
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if connected != 0 { close(fd) }
        try #require(connected == 0, "connect: errno \(errno)")
        return fd
    }
}
