/// `splitmilter --metrics` as an administrator and Prometheus use it: the page over plain HTTP,
/// the rules' hash as `sha256sum` prints it, a message counted, a reload and a broken reload, the
/// readiness and liveness paths, 404 elsewhere, `promtool check metrics` on the page, and a port
/// already in use refused before the daemon starts. The listener's bounds as a hostile or broken
/// client meets them: a head over 8 KiB, a POST, half a request line, 20 idle connections.

import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite(.enabled(if: Paths.binaries != nil, "milter-test and splitmilter are not built next to the test bundle"))
struct MetricsTests {
    static let rules = "domain example.org\n    copy %u@copy.example.org\n"

    /// The daemon on `rules` in a folder of its own, with `--metrics` on a free port of 127.0.0.1.
    func startDaemon() async throws -> (daemon: RunningMilter, port: UInt16, file: URL, folder: TemporaryFolder) {
        let folder = try TemporaryFolder()
        let file = try folder.write(MetricsTests.rules, to: "m.rules")
        // Run as root, the daemon reloads as --user nobody: the folder (mkdtemp's 0700) must let it read.
        chmod(folder.url.path, 0o755)
        let port = try HTTPProbe.freePort()
        let daemon = try await RunningMilter.splitmilter(
            rules: file.path, in: folder.url, instance: "metrics.example",
            extra: ["--metrics", "127.0.0.1:\(port)"])
        return (daemon, port, file, folder)
    }

    @Test func thePageFollowsTheRulesAndTheMail() async throws {
        let (daemon, port, file, folder) = try await startDaemon()
        try await daemon.run { daemon in
            let first = try await HTTPProbe.get(port: port, "/metrics", until: { $0.status == 200 })
            #expect(first.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8")
            #expect(first.value(#"splitmilter_rules_info{sha256="\#(try await sha256sum(file))"}"#) == "1.0")
            #expect(first.value("splitmilter_rules_domains") == "1.0")
            try await promtoolAccepts(first.body, in: folder)

            #expect(try await HTTPProbe.get(port: port, "/ready").text == "200 ready\n")
            #expect(try await HTTPProbe.get(port: port, "/health").text == "200 ok\n")
            #expect(try await HTTPProbe.get(port: port, "/nope").status == 404)

            let send = try await Processes.run(
                try Paths.binary("milter-test"), ["send", daemon.socket, "--rcpt", "ann@example.org"])
            #expect(send.status == 0, "\(send.output)\(send.errors)")
            // milter-test exits on its QUIT; the daemon's close callback may run a moment later
            // (CI saw connections_open 1.0 once): wait for it, 10 s at most, then check everything.
            let counted = try await HTTPProbe.get(port: port, "/metrics") {
                $0.value("splitmilter_connections_open") == "0.0"
            }
            #expect(counted.value("splitmilter_messages_total") == "1")
            #expect(counted.value("splitmilter_recipients_total") == "1")
            #expect(counted.value(#"splitmilter_recipient_outcomes_total{outcome="copy",mode="live"}"#) == "1")
            #expect(
                counted.value(
                    #"splitmilter_section_actions_total{section="\#(file.path):1",domain="example.org",action="copy",mode="live"}"#
                ) == "1")
            #expect(counted.value("splitmilter_eom_duration_seconds_count") == "1")

            // A good reload: counted, and the page names the new file's hash.
            try Data("domain example.org\n    rewrite %u@new.example.org\n".utf8).write(to: file)
            daemon.send(signal: SIGUSR1)
            let reloaded = try await HTTPProbe.get(port: port, "/metrics") {
                $0.value(#"splitmilter_reloads_total{result="ok"}"#) == "1"
            }
            let newHash = try await sha256sum(file)
            #expect(reloaded.value(#"splitmilter_rules_info{sha256="\#(newHash)"}"#) == "1.0")
            #expect(reloaded.lines(starting: "splitmilter_rules_info{").count == 1)
            // The reload line is written just after the counter counts: wait for it (200 tries).
            for _ in 0..<200 where !daemon.log.contains("sha256=\(newHash.prefix(12))") {
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(daemon.log.contains("sha256=\(newHash.prefix(12))"), "\(daemon.log)")

            // A broken one: counted as failed, the hash of the rules in force stays.
            try Data("domain example.org\n    bogus\n".utf8).write(to: file)
            daemon.send(signal: SIGUSR1)
            let failed = try await HTTPProbe.get(port: port, "/metrics") {
                $0.value(#"splitmilter_reloads_total{result="failed"}"#) == "1"
            }
            #expect(failed.value(#"splitmilter_reloads_total{result="ok"}"#) == "1")
            #expect(failed.value(#"splitmilter_rules_info{sha256="\#(newHash)"}"#) == "1.0")
            try await promtoolAccepts(failed.body, in: folder)

            // A client that connects and says nothing is dropped after the listener's 5 s.
            let idle = try await offThePool { try HTTPProbe.secondsUntilClosed(port: port, limit: 30) }
            #expect((4..<15).contains(idle ?? -1), "closed after \(idle ?? -1) s")
        }
    }

    /// The listener's limits (man splitmilter, METRICS): 8 KiB of request head, 5 s for a whole
    /// request, 16 connections; a method other than GET or HEAD gets 405. None of it stops the
    /// daemon from serving the next scrape.
    @Test func theListenerIsBounded() async throws {
        let (daemon, port, _, folder) = try await startDaemon()
        defer { withExtendedLifetime(folder) {} }
        try await daemon.run { _ in
            #expect(try await HTTPProbe.get(port: port, "/health", until: { $0.status == 200 }).text == "200 ok\n")

            // Half a request line, then silence: closed without an answer once its 5 s are up.
            let silent = try await offThePool { try HTTPProbe.exchange(port: port, "GET /metr", timeout: 30) }
            #expect(silent.closed && silent.received.isEmpty, "\(silent)")
            #expect((4..<15).contains(silent.seconds), "closed after \(silent.seconds) s")

            // A head over 8 KiB: no 200 (closed, maybe reset, unanswered), and the next scrape is served.
            let padding = String(repeating: "a", count: 9_000)
            let long = try await offThePool {
                try HTTPProbe.exchange(
                    port: port, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: \(padding)\r\n\r\n",
                    timeout: 30)
            }
            #expect(long.closed && !long.received.hasPrefix("HTTP/1.1 200"), "\(long)")
            #expect(try await HTTPProbe.get(port: port, "/metrics").status == 200)

            let post = try await offThePool {
                try HTTPProbe.exchange(
                    port: port, "POST /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n", timeout: 30)
            }
            #expect(post.received.hasPrefix("HTTP/1.1 405 "), "\(post)")
            #expect(post.received.contains("\r\nAllow: GET, HEAD\r\n"), "\(post)")

            // 20 connections that say nothing: 16 open, 4 left in the kernel's backlog. A scrape
            // behind them is answered once the first 16 time out, and every idle one is closed.
            let (scrape, waited, reads) = try await offThePool {
                let idle = try (0..<20).map { _ in try HTTPProbe.connection(port: port, timeout: 30) }
                defer { for fd in idle { close(fd) } }
                let started = ContinuousClock.now
                let scrape = try HTTPProbe.getOnce(port: port, "/metrics", timeout: 30)
                let waited = ContinuousClock.now - started
                let reads = idle.map { fd in
                    var byte: UInt8 = 0
                    let count = read(fd, &byte, 1)
                    return (count: count, error: count < 0 ? errno : 0)
                }
                return (scrape, waited, reads.map { "\($0.count) \($0.error)" })
            }
            #expect(scrape.status == 200)
            #expect(waited < .seconds(15), "scrape behind 20 idle connections took \(waited)")
            for read in reads {
                #expect(read == "0 0" || read == "-1 \(ECONNRESET)", "idle connection: read and errno \(read)")
            }
            #expect(try await HTTPProbe.get(port: port, "/health").text == "200 ok\n")
        }
    }

    /// Like the milter socket's, a metrics port in use stops the daemon before libmilter starts,
    /// with the reason on standard error, and the milter socket is removed again.
    @Test func aPortInUseIsAStartError() async throws {
        let folder = try TemporaryFolder()
        let file = try folder.write(MetricsTests.rules, to: "m.rules")
        let taken = try HTTPProbe.listeningSocket()
        defer { close(taken.fd) }
        let socket = folder.url.appendingPathComponent("milter.sock").path
        let run = try await Processes.run(
            try Paths.binary("splitmilter"),
            [
                "--rules", file.path, "--socket", "unix:" + socket, "--socket-group", Processes.groupName,
                "--metrics", "\(taken.port)",
            ] + Processes.daemonUser, deadline: 30)
        #expect(run.status == 1)
        #expect(run.errors.contains("cannot serve metrics on 127.0.0.1:\(taken.port)"), "\(run.errors)")
        #expect(run.errors.contains("Address already in use"), "\(run.errors)")
        #expect(!FileManager.default.fileExists(atPath: socket))
        let usage = try await Processes.run(try Paths.binary("splitmilter"), ["--metrics", "localhost:9100"])
        #expect(usage.status == 64 && usage.errors.contains("is not an IPv4 address"), "\(usage.errors)")
    }

    func sha256sum(_ file: URL) async throws -> String {
        let run = try await Processes.run("/usr/bin/sha256sum", [file.path])
        return String(run.output.prefix(64))
    }

    /// `promtool check metrics` (Debian's prometheus package) must find nothing to say.
    func promtoolAccepts(_ page: String, in folder: TemporaryFolder) async throws {
        guard Processes.exists("/usr/bin/promtool") else {
            Issue.record("promtool is not installed (Debian package prometheus; scripts/install-deps): not checked")
            return
        }
        let file = try folder.write(page, to: "page.prom")
        let check = try await Processes.run("/bin/sh", ["-c", "/usr/bin/promtool check metrics < '\(file.path)'"])
        #expect(check.status == 0, "promtool check metrics: \(check.output)\(check.errors)")
    }
}

/// A plain HTTP/1.1 GET over a TCP socket to 127.0.0.1, as a scraper sends it.
enum HTTPProbe {
    struct Response: Sendable {
        let status: Int
        let head: String
        let body: String

        /// `STATUS BODY`, for the short answers.
        var text: String { "\(status) \(body)" }

        func header(_ name: String) -> String? {
            head.split(separator: "\r\n").first { $0.lowercased().hasPrefix(name.lowercased() + ":") }
                .map { $0.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces) }
        }

        func lines(starting prefix: String) -> [Substring] {
            body.split(separator: "\n").filter { $0.hasPrefix(prefix) }
        }

        /// The value of the one sample named `series` (name and labels as the page writes them).
        func value(_ series: String) -> String? {
            let values = lines(starting: series + " ").map { String($0.dropFirst(series.count + 1)) }
            return values.count == 1 ? values[0] : nil
        }
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// GETs `path`, again every 50 ms while `until` is false or the connection fails (10 s at most).
    static func get(port: UInt16, _ path: String, until: (Response) -> Bool = { _ in true }) async throws -> Response {
        let started = Date()
        var last: Result<Response, any Error> = .failure(Failure(description: "never asked"))
        while Date().timeIntervalSince(started) < 10 {
            last = Result { try getOnce(port: port, path) }
            if case .success(let response) = last, until(response) { return response }
            try await Task.sleep(for: .milliseconds(50))
        }
        let response = try last.get()
        throw Failure(description: "GET \(path): not as expected after 10 s:\n\(response.head)\n\(response.body)")
    }

    /// A TCP connection to 127.0.0.1:`port` whose reads give up after `timeout` seconds.
    static func connection(port: UInt16, timeout seconds: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket: errno \(errno)") }
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = loopback(port)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            close(fd)
            throw Failure(description: "connect: errno \(errno)")
        }
        return fd
    }

    /// Seconds until the server closes a connection on which nothing is sent; nil if it is still
    /// open after `limit` seconds.
    static func secondsUntilClosed(port: UInt16, limit: Int) throws -> Double? {
        let fd = try connection(port: port, timeout: limit)
        defer { close(fd) }
        let started = ContinuousClock.now
        var byte: UInt8 = 0
        guard read(fd, &byte, 1) == 0 else { return nil }
        let (seconds, attoseconds) = (ContinuousClock.now - started).components
        return Double(seconds) + Double(attoseconds) / 1e18
    }

    /// What a raw exchange came to: the bytes received (as text), whether the server closed the
    /// connection (or reset it) before `timeout`, and when.
    struct Exchange: Sendable, CustomStringConvertible {
        let received: String
        let closed: Bool
        let seconds: Double

        var description: String {
            "after \(seconds) s, \(closed ? "closed" : "still open"), received \(received.debugDescription)"
        }
    }

    /// Sends `request` as it is (a send the server refuses is not an error), then reads until the
    /// server closes the connection or `timeout` seconds pass.
    static func exchange(port: UInt16, _ request: String, timeout: Int) throws -> Exchange {
        let fd = try connection(port: port, timeout: timeout)
        defer { close(fd) }
        let started = ContinuousClock.now
        let bytes = Array(request.utf8)
        _ = send(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL))
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        var closed = false
        while true {
            let count = read(fd, &buffer, buffer.count)
            guard count > 0 else {
                closed = count == 0 || errno == ECONNRESET
                break
            }
            received += buffer[0..<count]
        }
        let (seconds, attoseconds) = (ContinuousClock.now - started).components
        return Exchange(
            received: String(decoding: received, as: UTF8.self), closed: closed,
            seconds: Double(seconds) + Double(attoseconds) / 1e18)
    }

    static func getOnce(port: UInt16, _ path: String, timeout: Int = 5) throws -> Response {
        let fd = try connection(port: port, timeout: timeout)
        defer { close(fd) }
        let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
        guard write(fd, request, request.count) == request.count else {
            throw Failure(description: "write: errno \(errno)")
        }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = read(fd, &buffer, buffer.count)
            guard count > 0 else {
                guard count == 0 else { throw Failure(description: "read: errno \(errno)") }
                break
            }
            received += buffer[0..<count]
        }
        let text = String(decoding: received, as: UTF8.self)
        guard let end = text.range(of: "\r\n\r\n") else { throw Failure(description: "no HTTP head in \(text)") }
        let head = String(text[..<end.lowerBound])
        let status = head.split(separator: " ").dropFirst().first.flatMap { Int($0) }
        guard let status else { throw Failure(description: "no status in \(head)") }
        return Response(status: status, head: head, body: String(text[end.upperBound...]))
    }

    static func loopback(_ port: UInt16) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        return address
    }

    /// A socket listening on a port of 127.0.0.1 the system chose.
    static func listeningSocket() throws -> (fd: Int32, port: UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket: errno \(errno)") }
        var address = loopback(0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && listen(fd, 1) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard bound else {
            close(fd)
            throw Failure(description: "bind: errno \(errno)")
        }
        return (fd, UInt16(bigEndian: address.sin_port))
    }

    /// A port that was free a moment ago (the system's choice, released).
    static func freePort() throws -> UInt16 {
        let (fd, port) = try listeningSocket()
        close(fd)
        return port
    }
}
