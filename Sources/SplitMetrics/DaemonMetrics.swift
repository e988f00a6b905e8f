/// The daemon's Prometheus metrics: every series is made once and kept, at start or when rules or
/// `spf:` sources appear, never on the message path. `man splitmilter` lists them.
///
/// Invariants:
/// - libmilter's threads only increment objects made beforehand (atomics): no lock, no
///   allocation, no label string. What is made later (a section's series for new rules, an `spf:`
///   source's) is made on the reload or refresh thread, under `state`'s lock, which neither the
///   message path nor the metrics page takes.
/// - The page reads the registry (whose own lock only the loading threads share, to add or replace
///   a series) and the lock-free histogram: a scrape never waits for a message, nor a message for a
///   scrape.
/// - Counters never go backwards: series made for earlier rules or sources stay on the page. Only
///   gauges that describe what is no longer in force go: the old `rules_info` hash, a dropped
///   `spf:` source's networks, last success and up.

import Glibc
import Prometheus
import SplitCore
import SplitLock
import SplitSystem

public final class DaemonMetrics: Sendable {
    let registry: PrometheusCollectorRegistry

    // The message path's.
    let messages: Counter
    let recipients: Counter
    let outcomes: [Counter]
    /// Time inside the end-of-message callback.
    public let endOfMessage: LatencyHistogram
    /// Indexed by `stageIndex`.
    let callbackErrors: [Counter]
    let tempfails: [Counter]
    let connectionsOpen: Gauge

    // The loading threads'.
    let reloadsOK: Counter
    let reloadsFailed: Counter
    let rulesLoadedAt: Gauge
    let ruleDomains: Gauge
    let ruleUsers: Gauge
    let ruleRules: Gauge
    let ruleFiles: Gauge

    struct SPFSeries {
        let networks: Gauge
        let lastSuccess: Gauge
        let up: Gauge
        let refreshedOK: Counter
        let refreshFailed: Counter
    }

    struct State {
        var book: SectionBook
        /// The `rules_info` series of the rules in force; nil before the first load.
        var info: Gauge?
        /// The `spf:` sources of the rules in force, and the series of each.
        var sources: [String: SPFSeries] = [:]
        /// The sources in force that have a list (resolved, or kept from before, or cached).
        var listed: Set<String> = []
    }

    private let state: Locked<State>

    public init() {
        let registry = PrometheusCollectorRegistry()
        self.registry = registry
        messages = registry.makeCounter(descriptor: MetricNames.messages.descriptor)
        recipients = registry.makeCounter(descriptor: MetricNames.recipients.descriptor)
        outcomes = RecipientOutcome.allCases.flatMap { outcome in
            RuleCounters.modes.map { mode in
                registry.makeCounter(
                    descriptor: MetricNames.recipientOutcomes.descriptor,
                    labels: [("outcome", outcome.rawValue), ("mode", mode)])
            }
        }
        endOfMessage = LatencyHistogram(
            name: MetricNames.endOfMessage.name, help: MetricNames.endOfMessage.help,
            bounds: [
                ("0.00005", 50_000), ("0.0001", 100_000), ("0.00025", 250_000), ("0.0005", 500_000),
                ("0.001", 1_000_000), ("0.0025", 2_500_000), ("0.005", 5_000_000), ("0.01", 10_000_000),
                ("0.025", 25_000_000), ("0.05", 50_000_000), ("0.1", 100_000_000), ("0.25", 250_000_000),
                ("0.5", 500_000_000), ("1", 1_000_000_000),
            ])
        callbackErrors = Self.stages.map {
            registry.makeCounter(descriptor: MetricNames.callbackErrors.descriptor, labels: [("stage", $0.rawValue)])
        }
        tempfails = Self.stages.map {
            registry.makeCounter(descriptor: MetricNames.tempfails.descriptor, labels: [("stage", $0.rawValue)])
        }
        connectionsOpen = registry.makeGauge(descriptor: MetricNames.connectionsOpen.descriptor)
        reloadsOK = registry.makeCounter(descriptor: MetricNames.reloads.descriptor, labels: [("result", "ok")])
        reloadsFailed = registry.makeCounter(descriptor: MetricNames.reloads.descriptor, labels: [("result", "failed")])
        rulesLoadedAt = registry.makeGauge(descriptor: MetricNames.rulesLoadedAt.descriptor)
        ruleDomains = registry.makeGauge(descriptor: MetricNames.ruleDomains.descriptor)
        ruleUsers = registry.makeGauge(descriptor: MetricNames.ruleUsers.descriptor)
        ruleRules = registry.makeGauge(descriptor: MetricNames.ruleRules.descriptor)
        ruleFiles = registry.makeGauge(descriptor: MetricNames.ruleFiles.descriptor)
        registry.makeGauge(
            descriptor: MetricNames.buildInfo.descriptor, labels: [("version", SplitmilterVersion.string)]
        )
        .set(to: 1)
        state = Locked(State(book: SectionBook(registry: registry)))
    }

    // MARK: The message path

    /// A callback body threw (`Callbacks.guarded`).
    public func callbackFailed(_ step: SessionStep) { callbackErrors[Self.stageIndex(step)].increment() }

    /// A callback answered TEMPFAIL, whatever the cause.
    public func answeredTempfail(_ step: SessionStep) { tempfails[Self.stageIndex(step)].increment() }

    public func connectionOpened() { connectionsOpen.increment() }
    public func connectionClosed() { connectionsOpen.decrement() }

    /// Every protocol step, in the order of `stageIndex`.
    static let stages: [SessionStep] = [.negotiate, .connect, .mail, .rcpt, .data, .header, .eom, .abort]

    static func stageIndex(_ step: SessionStep) -> Int {
        switch step {
        case .negotiate: 0
        case .connect: 1
        case .mail: 2
        case .rcpt: 3
        case .data: 4
        case .header: 5
        case .eom: 6
        case .abort: 7
        }
    }

    // MARK: Loading (the main thread at start, then the reload and refresh threads)

    /// New rules are in force (at start, `reload` false, or after a reload): their gauges, hash and
    /// `spf:` sources; returns what their sessions count into, with the rules' section table.
    public func rulesLoaded(_ rules: RuleSet, sha256: String?, reload: Bool) -> RuleCounters {
        let sections = rules.domains.map { (location: $0.location, domain: $0.names.first ?? "") }
        let (table, other) = state.withLock { state in
            if let old = state.info { registry.unregisterGauge(old) }
            let info = registry.makeGauge(
                descriptor: MetricNames.rulesInfo.descriptor, labels: [("sha256", sha256 ?? "unknown")])
            info.set(to: 1)
            state.info = info
            let wanted = Set(rules.spfDomains)
            for (domain, series) in state.sources where !wanted.contains(domain) {
                registry.unregisterGauge(series.networks)
                registry.unregisterGauge(series.lastSuccess)
                registry.unregisterGauge(series.up)
                state.sources[domain] = nil
                state.listed.remove(domain)
            }
            for domain in rules.spfDomains where state.sources[domain] == nil {
                state.sources[domain] = makeSeries(source: domain)
            }
            return (state.book.table(for: sections), state.book.other)
        }
        ruleDomains.set(to: Double(RuleReport.domainCount(rules)))
        ruleUsers.set(to: Double(rules.userCount))
        ruleRules.set(to: Double(rules.ruleCount))
        ruleFiles.set(to: Double(rules.files.count))
        rulesLoadedAt.set(to: UnixTime.now())
        if reload { reloadsOK.increment() }
        return RuleCounters(
            messages: messages, recipients: recipients, outcomes: outcomes, sections: table, other: other)
    }

    /// A reload failed: the previous rules stay in force.
    public func reloadFailed() { reloadsFailed.increment() }

    /// One lookup of an `spf:` source: `succeeded` when DNS answered, `networks` the size of the
    /// list in force after it (fresh, kept from before or cached; nil when there is none). Sources
    /// no longer in the rules in force are not counted.
    public func spfRefreshed(_ domain: String, succeeded: Bool, networks: Int?) {
        state.withLock { state in
            guard let series = state.sources[domain] else { return }
            if succeeded {
                series.refreshedOK.increment()
                series.lastSuccess.set(to: UnixTime.now())
            } else {
                series.refreshFailed.increment()
            }
            series.up.set(to: succeeded ? 1 : 0)
            if let networks {
                series.networks.set(to: Double(networks))
                state.listed.insert(domain)
            }
        }
    }

    func makeSeries(source: String) -> SPFSeries {
        SPFSeries(
            networks: registry.makeGauge(descriptor: MetricNames.spfNetworks.descriptor, labels: [("source", source)]),
            lastSuccess: registry.makeGauge(
                descriptor: MetricNames.spfLastSuccess.descriptor, labels: [("source", source)]),
            up: registry.makeGauge(descriptor: MetricNames.spfUp.descriptor, labels: [("source", source)]),
            refreshedOK: registry.makeCounter(
                descriptor: MetricNames.spfRefreshes.descriptor, labels: [("source", source), ("result", "ok")]),
            refreshFailed: registry.makeCounter(
                descriptor: MetricNames.spfRefreshes.descriptor, labels: [("source", source), ("result", "failed")]))
    }

    // MARK: The HTTP listener's

    /// nil when ready: rules loaded and a list for every `spf:` source of the rules in force; else
    /// one line saying what is missing.
    public var unready: String? {
        state.withLock { state in
            guard state.info != nil else { return "no rules loaded" }
            let missing = state.sources.keys.filter { !state.listed.contains($0) }.sorted()
            guard !missing.isEmpty else { return nil }
            return "no list yet for spf:\(missing.joined(separator: ", spf:"))"
        }
    }

    /// The metrics page, in Prometheus's text format 0.0.4.
    public func page() -> [UInt8] {
        var buffer: [UInt8] = []
        buffer.reserveCapacity(16_384)
        registry.emit(into: &buffer)
        endOfMessage.emit(into: &buffer)
        return buffer
    }
}

/// Every metric's name and help, in one place: the registry refuses a name made twice with two
/// different helps.
enum MetricNames {
    struct Name: Sendable {
        let name: String
        let help: String

        init(_ suffix: String, _ help: String) {
            name = "splitmilter_" + suffix
            self.help = help
        }

        var descriptor: MetricNameDescriptor { MetricNameDescriptor(metricName: name, unitName: "", helpText: help) }
    }

    static let messages = Name("messages_total", "Messages whose end of message sent their edits.")
    static let recipients = Name("recipients_total", "RCPT commands that reached the rules.")
    static let recipientOutcomes = Name(
        "recipient_outcomes_total", "What each recipient or planned target came to, live or as a shadow rule's.")
    static let sectionActions = Name(
        "section_actions_total",
        "Copies and rewrites per domain section (FILE:LINE and first name); section=\"other\" past the first 1000.")
    static let endOfMessage = Name("eom_duration_seconds", "Time inside the end-of-message callback.")
    static let callbackErrors = Name(
        "callback_errors_total", "Errors thrown inside a libmilter callback, by protocol stage.")
    static let tempfails = Name("tempfails_total", "TEMPFAIL answers to the MTA, by protocol stage.")
    static let connectionsOpen = Name("connections_open", "Milter connections open now.")
    static let reloads = Name("reloads_total", "Rule reloads (SIGUSR1), by result.")
    static let rulesLoadedAt = Name(
        "rules_loaded_timestamp_seconds", "Unix time of the last good load of the rules.")
    static let rulesInfo = Name("rules_info", "The rules in force: SHA-256 of the rule files as read.")
    static let ruleDomains = Name("rules_domains", "Domain names of the rules in force.")
    static let ruleUsers = Name("rules_users", "Users listed by the rules in force.")
    static let ruleRules = Name("rules_rules", "Copy, rewrite, known and allow-clients rules in force.")
    static let ruleFiles = Name("rules_files", "Files read for the rules in force.")
    static let spfNetworks = Name("spf_networks", "Networks in the list in force for an spf: source.")
    static let spfLastSuccess = Name(
        "spf_last_success_timestamp_seconds", "Unix time of the last successful lookup of an spf: source.")
    static let spfRefreshes = Name("spf_refreshes_total", "Lookups of an spf: source, by result.")
    static let spfUp = Name("spf_up", "1 when the last lookup of an spf: source succeeded, else 0.")
    static let buildInfo = Name("build_info", "The running splitmilter's version.")
    static let databaseUp = Name(
        "database_up", "1 when the last exchange with the database (--database) succeeded, else 0.")
    static let databaseSynced = Name(
        "database_synced_timestamp_seconds",
        "Unix time the rows in force were last known to be the database's (at start from the cache: when they were cached)."
    )
    static let databaseChange = Name(
        "database_change", "The id of the last change (splitmilter.changes) that the rows in force include.")
    static let databaseUpdates = Name(
        "database_updates_total", "New rows from the database, by whether they made good rules (ok) or not (failed).")
}

/// The series of `--database`, made when the daemon starts with one.
public struct DatabaseSeries: Sendable {
    let up: Gauge
    let synced: Gauge
    let change: Gauge
    let updatesOK: Counter
    let updatesFailed: Counter

    /// The database answered (or not) at `time`.
    public func reachability(up isUp: Bool, at time: Double) {
        up.set(to: isUp ? 1 : 0)
        if isUp { synced.set(to: time) }
    }

    /// Rows from the database (or the cache, `synced` its time) are in force, up to `change`.
    public func rowsInForce(change id: Int64, synced time: Double?) {
        change.set(to: Double(id))
        if let time { synced.set(to: time) }
    }

    /// New rows made good rules (`ok`) or rules with errors.
    public func updated(ok: Bool) { ok ? updatesOK.increment() : updatesFailed.increment() }
}

extension DaemonMetrics {
    public func makeDatabaseSeries() -> DatabaseSeries {
        DatabaseSeries(
            up: registry.makeGauge(descriptor: MetricNames.databaseUp.descriptor),
            synced: registry.makeGauge(descriptor: MetricNames.databaseSynced.descriptor),
            change: registry.makeGauge(descriptor: MetricNames.databaseChange.descriptor),
            updatesOK: registry.makeCounter(
                descriptor: MetricNames.databaseUpdates.descriptor, labels: [("result", "ok")]),
            updatesFailed: registry.makeCounter(
                descriptor: MetricNames.databaseUpdates.descriptor, labels: [("result", "failed")]))
    }
}
