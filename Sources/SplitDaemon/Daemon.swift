/// The daemon's life: load the rules, open the socket, register with libmilter, start the metrics
/// listener, give up root, tell systemd it is ready, run until a stop signal, clean up. Everything
/// fatal is printed before libmilter starts, because once `smfi_main` runs, libmilter reports its
/// own failures only to syslog.

import Glibc
import Logging
import MilterProtocol
import SplitCore
import SplitDatabase
import SplitMetrics
import SplitSystem

public struct DaemonOptions: Sendable {
    public var rulesPath: String
    /// Every rule is a shadow rule (`--dry-run`), at start and at each reload: nothing is sent or
    /// refused, what the rules would do is only logged.
    public var dryRun = false
    public var socket: MilterEndpoint
    public var socketMode: UInt32
    /// nil: use group `postfix` when it exists.
    public var socketGroup: String?
    public var instance: String
    public var noReply: NoReplyMode
    /// The DNS server for `spf:` sources; nil for the system's resolvers.
    public var dnsServer: ResolverDNS?
    /// Seconds between refreshes of `spf:` sources; 0 refreshes only on SIGUSR1.
    public var spfRefresh: Int
    public var spfCache: String?
    /// The user to become when started as root (nil: `splitmilter`); see `Privileges`.
    public var user: String?
    /// Seconds libmilter waits for the MTA's next command on a connection (`smfi_settimeout`).
    public var timeout: Int
    /// Where to serve /metrics, /ready and /health; nil: nowhere.
    public var metrics: MetricsAddress?
    /// The `--database` settings file: `pgsql:` lists come from PostgreSQL; nil: no database.
    public var database: String?
    /// What speaks the milter protocol: libmilter, or splitmilter's own engine (`NativeEngine`).
    public var engine = MilterEngine.libmilter

    public init(
        rulesPath: String, socket: MilterEndpoint, socketMode: UInt32, socketGroup: String?, instance: String,
        noReply: NoReplyMode, dnsServer: ResolverDNS?, spfRefresh: Int, spfCache: String?, user: String?,
        timeout: Int, metrics: MetricsAddress?
    ) {
        self.rulesPath = rulesPath
        self.socket = socket
        self.socketMode = socketMode
        self.socketGroup = socketGroup
        self.instance = instance
        self.noReply = noReply
        self.dnsServer = dnsServer
        self.spfRefresh = spfRefresh
        self.spfCache = spfCache
        self.user = user
        self.timeout = timeout
        self.metrics = metrics
    }
}

/// Whether to negotiate no-reply for the steps that always continue.
public enum NoReplyMode: String, Sendable, CaseIterable {
    /// On for unix sockets; off for TCP, where Postfix's unanswered small writes can wait on
    /// Nagle + delayed ACK (docs/postfix-milter.md, "Delayed ACK").
    case auto
    case on
    case off

    func enabled(for socket: MilterEndpoint) -> Bool {
        switch self {
        case .on: true
        case .off: false
        case .auto: if case .unix = socket { true } else { false }
        }
    }
}

/// What serves the milter protocol.
public enum MilterEngine: String, Sendable, CaseIterable {
    case libmilter
    /// splitmilter's own (`NativeEngine`): fewer system calls per message.
    case native
}

public enum Daemon {
    /// Runs the milter on the main thread. Returns the exit status if it cannot start; once it
    /// serves, it ends the process itself when stopped. `DaemonSignals.prepare()` must have run.
    public static func run(_ options: DaemonOptions, logger: Logger) -> Int32 {
        let account: Privileges.Target?
        do {
            account = try Privileges.target(options.user)
        } catch {
            logger.critical("\(error)")
            return 1
        }
        var database: DatabaseStart?
        if let path = options.database {
            guard let opened = DatabaseStart.open(path, metrics: runtime.metrics, logger: logger) else { return 1 }
            database = opened
        }
        // The rules go straight into the runtime: this function keeps only their summary, so a
        // reload's retirement of them finds no copy left here (see `RuleBuilder`).
        guard let (summary, resolvesSPF) = configure(options, database: database, logger: logger) else { return 1 }
        let refresher = ProviderRefresher(
            dns: options.dnsServer ?? ResolverDNS(), interval: options.spfRefresh, cachePath: options.spfCache)
        do {
            try refresher.start(logger: logger)
        } catch {
            logger.critical("\(error)")
            return 1
        }

        let listener: ListeningSocket
        do {
            let group = try resolveGroup(options.socketGroup, for: options.socket, logger: logger)
            listener = try ListeningSocket.open(options.socket, mode: mode_t(options.socketMode), group: group)
        } catch {
            logger.critical("\(error)")
            return 1
        }
        // For the failures before libmilter runs; `serve` below never returns.
        defer {
            close(listener.fd)
            listener.removeFile()
        }
        do {
            if options.engine == .libmilter {
                try Libmilter.setConnection("fd:\(listener.fd)")
                // libmilter's own default is 7,210 s: a stalled peer would hold a thread for two hours.
                try Libmilter.setTimeout(options.timeout)
                try Libmilter.register(Callbacks.description())
                try Libmilter.openSocket()
            }
            // Bound before root is given up, like the milter socket (a port below 1024 needs root).
            // Its thread is the first; it gives up root with the rest of the process (glibc's
            // setuid changes every thread) and reads nothing but memory and its sockets.
            if let address = options.metrics {
                try MetricsListener.start(address, metrics: runtime.metrics, logger: logger)
            }
            // Libmilter's threads, and the reload and refresh threads below, start only after this.
            if let account { try Privileges.become(account) }
        } catch {
            logger.critical("\(error)")
            return 1
        }
        if let database {
            do {
                try database.follow(logger: logger)
            } catch {
                logger.critical("\(error)")
                return 1
            }
        }
        let notifier = ServiceNotifier.fromEnvironment
        DaemonSignals.onReloadSignal {
            notifier.reloading()
            let status = ruleBuilder.reload()
            refresher.refresh()
            notifier.ready(status: status)
        }
        if resolvesSPF { refresher.runSchedule() }
        let engine = options.engine == .native ? "" : "; protocol by libmilter"
        let noReply = options.noReply.enabled(for: options.socket) ? "; no-reply steps on" : ""
        let user = account.map { " as user \($0.name)" } ?? ""
        let dryRun = options.dryRun ? "; dry run: no edits, no refusals" : ""
        let metrics = options.metrics.map { "; metrics on http://\($0)/metrics" } ?? ""
        logger.info(
            "listening on \(options.socket)\(user) with \(summary); SIGUSR1 reloads \(options.rulesPath)\(noReply)\(engine)\(dryRun)\(metrics)"
        )
        // The socket listens: a connection made from now on is queued and served.
        notifier.ready(status: "rules: \(summary)")
        let finish: @Sendable (String?) -> Never = { failure in
            notifier.stopping()
            ruleBuilder.flushCache()
            if let failure { logger.critical("\(failure)") } else { logger.info("stopped") }
            listener.removeFile()  // the stop has closed the socket itself
            exit(failure == nil ? 0 : 1)
        }
        switch options.engine {
        case .libmilter: DaemonSignals.serve(finish: finish)
        case .native: DaemonSignals.serveNative(listening: listener.fd, timeout: options.timeout, finish: finish)
        }
    }

    /// Loads the rule file (with the database's rows) and puts the rules and settings into
    /// `runtime`; nil (logged) on errors. Returns the rules' summary (with their hash) and whether
    /// they name `spf:` sources.
    static func configure(_ options: DaemonOptions, database: DatabaseStart?, logger: Logger) -> (
        summary: String, resolvesSPF: Bool
    )? {
        guard
            let (rules, sha256) = ruleBuilder.start(
                rulesPath: options.rulesPath, dryRun: options.dryRun, rows: database?.rows,
                cachePath: database?.link.settings.cache, series: database?.series, logger: logger)
        else { return nil }
        database?.rulesInForce(logger: logger)
        runtime.configure(
            settings: DaemonSettings(
                rulesPath: options.rulesPath, marker: CopyMarker(instance: options.instance),
                noReply: options.noReply.enabled(for: options.socket)),
            rules: rules, counters: runtime.metrics.rulesLoaded(rules, sha256: sha256, reload: false), logger: logger)
        return (RuleReport.summary(rules, sha256: sha256), !rules.spfDomains.isEmpty)
    }

    static func resolveGroup(_ name: String?, for spec: MilterEndpoint, logger: Logger) throws -> gid_t? {
        guard case .unix = spec else { return nil }
        let wanted = name ?? "postfix"
        if let number = gid_t(wanted) { return number }
        guard let entry = getgrnam(wanted) else {
            if name == nil {
                logger.warning("group 'postfix' does not exist; the socket keeps the daemon's group")
                return nil
            }
            throw SocketError(description: "unknown group '\(wanted)'")
        }
        return entry.pointee.gr_gid
    }
}
