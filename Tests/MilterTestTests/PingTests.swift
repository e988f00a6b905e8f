/// `milter-test ping` as monit, Nagios or a systemd check runs it: against the real splitmilter
/// (running, then stopped), opendkim, a peer that never answers and peers that answer wrongly.
///
/// What must hold: a valid answer exits 0 with exactly one `SOCKET: ok: …` line on standard
/// output (none with --quiet); no answer exits 2 and a wrong answer 1, each with one line on
/// standard error and nothing on standard output; and a ping never outlasts its --timeout by
/// much. The time bounds are bounds on hanging, generous for a loaded machine, not speed tests.

import Foundation
import MilterProtocol
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite(.enabled(if: Paths.binaries != nil, "milter-test and splitmilter are not built next to the test bundle"))
struct PingTests {
    /// `milter-test ping SOCKET OPTIONS…`, and the seconds it took.
    static func ping(_ socket: String, _ options: [String] = []) async throws -> (Finished, Double) {
        let started = ContinuousClock.now
        let finished = try await Processes.run(
            try Paths.binary("milter-test"), ["ping", socket] + options, deadline: 30)
        return (finished, (ContinuousClock.now - started) / .seconds(1))
    }

    /// One `SOCKET: ok: milter protocol 6, …` line and nothing else.
    static func expectOK(_ ping: Finished, _ socket: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(ping.status == 0, "ping exited \(ping.status): \(ping.errors)", sourceLocation: sourceLocation)
        let lines = ping.output.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == 2 && lines.last == "", "\(ping.output)", sourceLocation: sourceLocation)
        #expect(
            lines.first?.hasPrefix("\(socket): ok: milter protocol 6, actions 0x") == true, "\(ping.output)",
            sourceLocation: sourceLocation)
        #expect(lines.first?.hasSuffix(" ms") == true, "\(ping.output)", sourceLocation: sourceLocation)
        #expect(ping.errors.isEmpty, "\(ping.errors)", sourceLocation: sourceLocation)
    }

    /// Exit `status`, one line on standard error that starts with the socket, nothing on standard
    /// output; the line.
    @discardableResult
    static func expectFailure(
        _ ping: Finished, _ socket: String, status: Int32, sourceLocation: SourceLocation = #_sourceLocation
    ) -> String {
        #expect(ping.status == status, "ping exited \(ping.status): \(ping.errors)", sourceLocation: sourceLocation)
        #expect(ping.output.isEmpty, "\(ping.output)", sourceLocation: sourceLocation)
        #expect(ping.errors.hasPrefix("\(socket): "), "\(ping.errors)", sourceLocation: sourceLocation)
        #expect(
            ping.errors.filter { $0 == "\n" }.count == 1 && ping.errors.hasSuffix("\n"), "\(ping.errors)",
            sourceLocation: sourceLocation)
        return ping.errors
    }

    @Test func theDaemonAnswersAndOnceStoppedQuicklyDoesNot() async throws {
        let daemon = try await RunningMilter.splitmilter(
            rules: "examples/splitmilter.rules", in: Paths.repository, instance: "ping.example",
            extra: ["--log-level", "warning"])
        let (up, quiet) = try await daemon.run { daemon in
            (try await PingTests.ping(daemon.socket).0, try await PingTests.ping(daemon.socket, ["--quiet"]).0)
        }
        PingTests.expectOK(up, daemon.socket)
        #expect(quiet.status == 0 && quiet.output.isEmpty && quiet.errors.isEmpty, "\(quiet)")
        // The daemon's log says nothing of a session that only negotiated and quit.
        #expect(daemon.log.isEmpty, "\(daemon.log)")

        // A timeout above the run's deadline (30 s, then killed and failed): the refusal is seen at
        // once and said, not waited out. No clock here: the tests share one process's threads.
        let (down, _) = try await PingTests.ping(daemon.socket, ["--timeout", "60"])
        let line = PingTests.expectFailure(down, daemon.socket, status: 2)
        #expect(!line.contains("no answer within"), "\(line)")
    }

    /// A peer that accepts and says nothing, and one that drips a valid answer a byte every 0.3 s
    /// (no single read waits a second, the whole answer takes 5 s): --timeout bounds the whole ping.
    @Test(arguments: [FakePeer.Behaviour.silent, .drip(try PingTests.negotiation(version: 6, actions: []), every: 0.3)])
    func aPeerThatDoesNotAnswerInTimeTimesOut(_ behaviour: FakePeer.Behaviour) async throws {
        let peer = try FakePeer(behaviour)
        defer { peer.stop() }
        let (ping, seconds) = try await PingTests.ping(peer.socket, ["--timeout", "1"])
        let line = PingTests.expectFailure(ping, peer.socket, status: 2)
        #expect(line == "\(peer.socket): no answer within 1 s\n")
        // The drip would have answered after 5 s: "no answer" says the timeout ended the ping, and
        // the run's deadline (30 s) catches a hang.
        #expect(seconds >= 0.9, "a ping with --timeout 1 took \(seconds) s")
    }

    /// Bytes came back, but not a negotiation Postfix would take.
    @Test(arguments: [
        ("an HTTP reply", Array("HTTP/1.0 400 Bad Request\r\n\r\n".utf8)),
        ("a negotiation cut short", [0, 0, 0, 13, UInt8(ascii: "O"), 0, 0, 0]),
        ("SMFIR_CONTINUE", try Response.reply(.continue).frame().encoded()),
        ("protocol 7", try PingTests.negotiation(version: 7, actions: [])),
        ("an action not offered", try PingTests.negotiation(version: 6, actions: Actions(rawValue: 0x200))),
    ])
    func aWrongAnswerExitsOne(_ name: String, _ answer: [UInt8]) async throws {
        let peer = try FakePeer(.answer(answer))
        defer { peer.stop() }
        // A timeout above the run's deadline (30 s): a wrong answer ends the ping, not the timeout.
        let (ping, _) = try await PingTests.ping(peer.socket, ["--timeout", "60"])
        let line = PingTests.expectFailure(ping, peer.socket, status: 1)
        #expect(line.hasPrefix("\(peer.socket): wrong answer: "), "\(name): \(line)")
    }

    @Test(.enabled(if: OpenDKIM.installed, "opendkim is not installed: apt-get install opendkim opendkim-tools"))
    func opendkimAnswers() async throws {
        let milter = try await OpenDKIM.start()
        let ping = try await milter.run { try await PingTests.ping($0.socket).0 }
        PingTests.expectOK(ping, milter.socket)
    }

    static func negotiation(version: UInt32, actions: Actions) throws -> [UInt8] {
        try Response.negotiate(Negotiation(version: version, actions: actions, steps: [])).frame().encoded()
    }
}

/// A unix socket that takes one connection and behaves as told with it. It gives up waiting for
/// the connection after 30 s; `stop` ends whatever it is doing.
final class FakePeer {
    enum Behaviour: Sendable {
        /// Say nothing and hold the connection until `stop`.
        case silent
        /// Once the client has spoken, write these bytes and hang up. (Writes never raise SIGPIPE,
        /// which would end the whole test process when the client is gone first.)
        case answer([UInt8])
        /// Once the client has spoken, write these bytes one at a time, `every` seconds apart.
        case drip([UInt8], every: Double)
    }

    let folder: TemporaryFolder
    let socket: String
    private let stopped = DispatchSemaphore(value: 0)

    init(_ behaviour: Behaviour) throws {
        folder = try TemporaryFolder()
        let path = folder.url.appendingPathComponent("peer.sock").path
        socket = "unix:" + path
        let listener = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        try #require(listener >= 0, "socket: errno \(errno)")
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        _ = withUnsafeMutablePointer(to: &address.sun_path) { sunPath in
            path.withCString { strncpy(UnsafeMutableRawPointer(sunPath).assumingMemoryBound(to: CChar.self), $0, 107) }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bound == 0, listen(listener, 1) == 0 else {
            close(listener)
            throw MilterStartFailure(description: "bind or listen on \(path): errno \(errno)")
        }
        let stopped = self.stopped
        Thread {
            defer { close(listener) }
            var waiting = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            guard poll(&waiting, 1, 30_000) == 1 else { return }
            let connection = accept(listener, nil, nil)
            guard connection >= 0 else { return }
            defer { close(connection) }
            var request = [UInt8](repeating: 0, count: 4096)
            switch behaviour {
            case .silent:
                _ = stopped.wait(timeout: .now() + 30)
            case .answer(let bytes):
                guard read(connection, &request, request.count) > 0 else { return }
                _ = send(connection, bytes, bytes.count, Int32(MSG_NOSIGNAL))
            case .drip(let bytes, let every):
                guard read(connection, &request, request.count) > 0 else { return }
                for byte in bytes {
                    guard send(connection, [byte], 1, Int32(MSG_NOSIGNAL)) == 1,
                        stopped.wait(timeout: .now() + every) == .timedOut
                    else { return }
                }
            }
        }.start()
    }

    func stop() { stopped.signal() }
}
