/// A private PostgreSQL cluster for the database tests (scripts/lib/pgcluster.sh), started once
/// for the whole test process on first use and stopped when the process exits, and the libpq
/// connections the tests use, with every blocking call on a thread of its own.
///
/// Invariants:
/// - Never skipped: without PostgreSQL's server binaries (or any other reason it cannot start),
///   every test that asks for the cluster fails with pgcluster.sh's own words.
/// - Never left running: an `atexit` handler stops it and removes its folder when the process
///   exits; a watchdog started with it (a detached shell polling the test process's pid) does the
///   same if the process is killed instead.
/// - Nothing here blocks Swift concurrency's pool: the suites share one process's few threads.

import Foundation
import SplitCore
import Testing

@testable import SplitDatabase

#if canImport(Glibc)
    import Glibc
#endif

/// Runs `body`, which blocks (libpq, a child process), on a thread of its own and waits for it
/// without holding one of Swift concurrency's threads.
func offThePool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}

/// A new folder `PREFIX.XXXXXX` (mode 0700; mkdtemp(3)), or nil.
func makeTemporaryFolder(_ prefix: String) -> String? {
    var template = Array("\(prefix).XXXXXX".utf8CString)
    return template.withUnsafeMutableBufferPointer { buffer in
        buffer.baseAddress.flatMap { mkdtemp($0) }.map { String(cString: $0) }
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on (bound by the kernel's choice, then closed): a
/// connection there is refused, as it is to a database server that is stopped.
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    try #require(fd >= 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
        }
    }
    try #require(bound)
    return Int(UInt16(bigEndian: address.sin_port))
}

struct ClusterFailure: Error, CustomStringConvertible {
    let description: String
}

final class PrivateCluster: Sendable {
    /// The folder made for the cluster (mode 0755, so the postgres user gets through as root).
    let folder: String
    /// pgcluster.sh's DIR: data, run (the unix socket), postgresql.log.
    let directory: String
    let port: Int

    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path
    static let library = repository + "/scripts/lib/pgcluster.sh"

    /// The process's cluster, started by the first test that asks (off the pool: initdb takes
    /// seconds, and a second asker waits on the first's start).
    static let shared: Result<PrivateCluster, ClusterFailure> = start()

    /// The cluster, starting it if no test has yet.
    static func get() async throws -> PrivateCluster {
        try await offThePool { try shared.get() }
    }

    private init(folder: String, port: Int) {
        self.folder = folder
        directory = folder + "/c"
        self.port = port
    }

    private static func start() -> Result<PrivateCluster, ClusterFailure> {
        guard let folder = makeTemporaryFolder("/tmp/sdbc"), chmod(folder, 0o755) == 0 else {
            return .failure(ClusterFailure(description: "mkdtemp or chmod under /tmp failed: errno \(errno)"))
        }
        // Start it, and a watchdog that stops it and removes the folder once this process is gone.
        let script = """
            set -u
            # Nothing of the test process's open files goes on to the server or the watchdog.
            for fd in /proc/$$/fd/*; do
                fd=${fd##*/}
                ((fd > 2)) && eval "exec $fd>&-"
            done
            source "$1" || exit 1
            # Another cluster may take the free port first: try again elsewhere.
            for attempt in 1 2 3 4 5; do
                port=$(pg_free_port $((26432 + RANDOM % 80)) 26531) || exit 1
                pg_cluster_start "$2/c" "$port" && break
                pg_cluster_stop "$2/c"
                rm -rf -- "$2/c"
                ((attempt < 5)) || exit 1
            done
            printf '%s\\n' "$port" >"$2/port" || exit 1
            setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done
                source "$2" && pg_cluster_stop "$3/c"; rm -rf -- "$3"' \\
                watchdog "$3" "$1" "$2" </dev/null >/dev/null 2>&1 &
            """
        // posix_spawn and waitpid, not Foundation's Process: Process waits for every holder of a
        // socket it gives the child to close it, and the server and the watchdog outlive the shell.
        let logPath = folder + "/start.log"
        let status = run(["/bin/bash", "-c", script, "pgcluster", library, folder, String(getpid())], log: logPath)
        let said = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        guard status == "exit 0",
            let text = try? String(contentsOfFile: folder + "/port", encoding: .utf8),
            let port = Int(text.trimmingCharacters(in: .whitespacesAndNewlines))
        else {
            try? FileManager.default.removeItem(atPath: folder)
            return .failure(
                ClusterFailure(description: "the private PostgreSQL cluster did not start (\(status)): \(said)"))
        }
        atexit { PrivateCluster.stopAtExit() }
        return .success(PrivateCluster(folder: folder, port: port))
    }

    /// Runs `arguments` with standard input from /dev/null and its output in `log`; its exit
    /// status (a description of what went wrong otherwise).
    private static func run(_ arguments: [String], log: String) -> String {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let argv = arguments.map { strdup($0) } + [nil]
        defer { for argument in argv { free(argument) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, arguments[0], &actions, nil, argv, environ)
        guard rc == 0 else { return "posix_spawn \(arguments[0]): \(String(cString: strerror(rc)))" }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { return "waitpid: \(String(cString: strerror(errno)))" }
        }
        // WIFEXITED and WEXITSTATUS, which Swift does not import.
        return status & 0x7F == 0 ? "exit \((status >> 8) & 0xFF)" : "signal \(status & 0x7F)"
    }

    /// Stops the cluster and removes its folder (the atexit handler: `shared` has a value by then).
    private static func stopAtExit() {
        guard case .success(let cluster) = shared else { return }
        let command =
            "bash -c 'source \"$0\" && pg_cluster_stop \"$1\"' '\(library)' '\(cluster.directory)' >/dev/null 2>&1;"
            + " rm -rf -- '\(cluster.folder)'"
        _ = system(command)
    }

    /// The settings splitmilter would have: the reader role over TCP, no TLS.
    var readerSettings: DatabaseSettings {
        var settings = DatabaseSettings()
        settings.host = "127.0.0.1"
        settings.port = port
        settings.dbname = "mail"
        settings.user = "splitmilter_reader"
        settings.sslmode = "disable"
        settings.connectTimeout = 5
        return settings
    }

    func readerLink(password: String = "reader-secret") -> DatabaseLink {
        DatabaseLink(settings: readerSettings, password: password)
    }

    /// A connection as splitmilter makes it (read-only, the reader role).
    func reader() async throws -> Connection {
        let link = readerLink()
        return try await offThePool { Connection(try link.connect()) }
    }

    /// A connection as splitmilter_admin, who owns the tables (the unix socket; trusted there).
    func admin(database: String = "mail") async throws -> Connection {
        try await socketConnection(user: "splitmilter_admin", database: database)
    }

    /// A connection over the unix socket, where the superuser and splitmilter_admin are trusted.
    private func socketConnection(user: String, database: String) async throws -> Connection {
        let parameters = [
            ("host", directory + "/run"), ("port", String(port)), ("dbname", database), ("user", user),
            ("connect_timeout", "5"),
        ]
        return try await offThePool { Connection(try PostgresLink(parameters: parameters)) }
    }

    /// A new database `name` of the cluster, owned by splitmilter_admin, with the schema
    /// (docs/postgresql/schema.sql) and the reader's grants, as pgcluster.sh makes `mail`: for a
    /// suite whose rows the others must not see or truncate. Its admin's connection.
    func makeDatabase(_ name: String) async throws -> Connection {
        let superuser = try await socketConnection(user: "postgres", database: "postgres")
        try await superuser.query("CREATE DATABASE \(name) OWNER splitmilter_admin")
        let admin = try await admin(database: name)
        try await admin.query(
            try String(contentsOfFile: PrivateCluster.repository + "/docs/postgresql/schema.sql", encoding: .utf8))
        try await admin.query(
            "GRANT USAGE ON SCHEMA splitmilter TO splitmilter_reader;"
                + " GRANT SELECT ON ALL TABLES IN SCHEMA splitmilter TO splitmilter_reader")
        return admin
    }
}

/// One libpq connection, used by one test: each call runs on a thread of its own, one at a time
/// (the test awaits each), so the connection is never used by two threads at once.
final class Connection: @unchecked Sendable {
    let link: PostgresLink

    init(_ link: PostgresLink) { self.link = link }

    @discardableResult
    func query(_ sql: String) async throws -> [[String?]] {
        try await offThePool { try self.link.query(sql) }
    }

    /// Runs each statement (each its own query, so its own transaction unless it says BEGIN);
    /// after one that fails, rolls back whatever transaction it left open. The number that ran.
    func run(_ statements: [String]) async throws -> Int {
        try await offThePool {
            var succeeded = 0
            for sql in statements {
                do {
                    try self.link.query(sql)
                    succeeded += 1
                } catch {
                    _ = try? self.link.query("ROLLBACK")
                }
            }
            return succeeded
        }
    }

    /// `splitmilter.change_counter`'s last id.
    func lastChange() async throws -> Int64 {
        let rows = try await query("SELECT last FROM splitmilter.change_counter")
        return try #require(rows.first?.first.flatMap { $0 }.flatMap { Int64($0) })
    }

    func readAll() async throws -> DatabaseRows {
        try await offThePool { try DatabaseFollower.readAll(self.link) }
    }

    /// The follower's `sync` of `rows` over this connection.
    func sync(_ follower: DatabaseFollower, _ rows: DatabaseRows) async throws -> DatabaseRows {
        try await offThePool {
            var rows = rows
            try follower.sync(self.link, &rows)
            return rows
        }
    }

    func waitForNotification(timeout: Double) async throws -> Bool {
        try await offThePool { try self.link.waitForNotification(timeout: timeout) }
    }
}
