/// The daemon's command line: options, validation, then `Daemon.run`.

import ArgumentParser
import Glibc
import Logging
import MilterProtocol
import SplitDaemon
import SplitDatabase
import SplitMetrics
import SplitSystem

struct SplitmilterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "splitmilter",
        abstract: "A Postfix milter that copies and routes mail per recipient.",
        discussion: """
            Postfix reaches it through smtpd_milters. At RCPT it looks each recipient up in the rule \
            file; at end-of-message it adds copy recipients and replaces rewritten ones, so Postfix's \
            own queue, transports and retries do the delivery. SIGTERM stops it; SIGUSR1 reloads \
            the rules (a rule file with errors keeps the old rules).
            """,
        version: SplitmilterVersion.string
    )

    @Option(name: .long, help: "The rule file.")
    var rules = "/etc/splitmilter/splitmilter.rules"

    @Option(
        name: .long,
        help: "Where to listen: unix:/path, inet:PORT@HOST or inet:HOST:PORT (no host: 127.0.0.1, not every interface)."
    )
    var socket = "unix:/var/spool/postfix/splitmilter/splitmilter.sock"

    @Option(name: .long, help: "Mode of a unix socket, octal.")
    var socketMode = "0660"

    @Option(name: .long, help: "Group of a unix socket (default: postfix, when it exists).")
    var socketGroup: String?

    @Option(
        name: .long,
        help: "Started as root: the user to become after opening the socket, before any mail (default: splitmilter)."
    )
    var user: String?

    @Option(
        name: .long,
        help:
            "Where to log: auto (standard error; with priorities when it is systemd's journal), stderr or syslog (facility mail)."
    )
    var log = "auto"

    @Option(name: .long, help: "This instance's name in the X-Splitmilter-Copied header (default: host name).")
    var instance: String?

    @Option(name: .long, help: "Log level: debug, info, warning or error.")
    var logLevel = "info"

    @Option(name: .long, help: "Negotiate no-reply steps: auto (unix sockets only), on or off.")
    var noReply = "auto"

    @Option(name: .long, help: "What speaks the milter protocol: libmilter or native (splitmilter's own).")
    var engine = "native"

    @Option(name: .long, help: "DNS server for spf: sources, IPv4[:PORT] (default: /etc/resolv.conf's).")
    var dnsServer: String?

    @Option(name: .long, help: "Seconds between refreshes of spf: sources (0: only on SIGUSR1).")
    var spfRefresh = 3600

    @Option(name: .long, help: "Cache of the last good spf: lists, used when DNS is down at start.")
    var spfCache = "/var/lib/splitmilter/spf.cache"

    @Option(
        name: .long,
        help:
            "Seconds to wait for Postfix's next milter command before dropping the connection (Postfix waits up to its smtpd_timeout, 300 s, on the client)."
    )
    var timeout = 600

    @Option(
        name: .long,
        help:
            "Serve Prometheus metrics (/metrics), readiness (/ready) and liveness (/health) over HTTP on PORT (127.0.0.1 only), HOST:PORT or [IPv6]:PORT (default: off)."
    )
    var metrics: String?

    @Option(
        name: .long,
        help:
            "PostgreSQL settings (key = value) for the rule file's pgsql: lists; the daemon follows the database's changes live. With --check, the rows are read from it, or from its cache when it cannot be reached."
    )
    var database: String?

    @Flag(name: .long, help: "Check the rule file, print every error and exit (non-zero on errors).")
    var check = false

    @Flag(
        name: .long,
        help:
            "Every rule is a shadow rule, also after a reload: no copy, rewrite or refusal is made, each is only logged as 'shadow'."
    )
    var dryRun = false

    func validate() throws {
        _ = try parsedSocket()
        guard UInt32(socketMode, radix: 8).map({ $0 <= 0o777 }) == true else {
            throw ValidationError("--socket-mode must be an octal mode such as 0660")
        }
        guard MilterEngine(rawValue: engine) != nil else {
            throw ValidationError("--engine must be libmilter or native")
        }
        guard NoReplyMode(rawValue: noReply) != nil else {
            throw ValidationError("--no-reply must be one of auto, on, off")
        }
        if let dnsServer, ResolverDNS(serverSpec: dnsServer) == nil {
            throw ValidationError("--dns-server must be an IPv4 address with an optional :PORT")
        }
        guard spfRefresh >= 0 else { throw ValidationError("--spf-refresh must be 0 or more seconds") }
        guard (1...86_400).contains(timeout) else { throw ValidationError("--timeout must be 1 to 86400 seconds") }
        guard destination != nil else { throw ValidationError("--log must be one of auto, stderr, syslog") }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of debug, info, warning, error")
        }
        _ = try parsedMetrics()
    }

    var destination: LogDestination? {
        switch log {
        case "auto": .automatic
        case "stderr": .standardError
        case "syslog": .syslog
        default: nil
        }
    }

    func parsedSocket() throws -> MilterEndpoint {
        do {
            return try MilterEndpoint(parsing: socket)
        } catch {
            throw ValidationError("\(error)")
        }
    }

    func parsedMetrics() throws -> MetricsAddress? {
        do {
            return try metrics.map(MetricsAddress.init(parsing:))
        } catch {
            throw ValidationError("\(error)")
        }
    }

    func run() throws {
        if check {
            var standardError = StandardError()
            guard let inputs = RuleInputs.checking(database: database, logger: Logger(label: "splitmilter")) else {
                throw ExitCode.failure
            }
            let loaded = RuleLoader.load(rules, inputs: inputs).result
            for diagnostic in loaded.diagnostics { print(diagnostic, to: &standardError) }
            guard let ruleSet = loaded.ruleSet else {
                print("\(rules): \(loaded.errors.count) error(s)", to: &standardError)
                throw ExitCode.failure
            }
            print("\(rules): ok: \(RuleReport.summary(ruleSet))")
            // Exit here, with the rules still loaded: freeing a million rules one by one takes longer
            // than the process's exit, which hands the memory back at once.
            fflush(nil)
            Glibc.exit(0)
        }
        let level = Logger.Level(rawValue: logLevel) ?? .info
        let destination = destination ?? .standardError
        if destination == .syslog { LineLogHandler.openSyslog() }
        LoggingSystem.bootstrap { label in
            var handler = LineLogHandler(label: label, destination: destination)
            handler.logLevel = level
            return handler
        }
        var options = DaemonOptions(
            rulesPath: rules,
            socket: try parsedSocket(),
            socketMode: UInt32(socketMode, radix: 8) ?? 0o660,
            socketGroup: socketGroup,
            instance: instance ?? HostName.current,
            noReply: NoReplyMode(rawValue: noReply) ?? .auto,
            dnsServer: dnsServer.flatMap(ResolverDNS.init(serverSpec:)),
            spfRefresh: spfRefresh,
            spfCache: spfCache.isEmpty ? nil : spfCache,
            user: user,
            timeout: timeout,
            metrics: try parsedMetrics()
        )
        options.dryRun = dryRun
        options.database = database
        options.engine = MilterEngine(rawValue: engine) ?? .libmilter
        let status = Daemon.run(options, logger: Logger(label: "splitmilter"))
        if status != 0 { throw ExitCode(status) }
    }
}
