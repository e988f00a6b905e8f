/// The daemon's process-wide state, shared by libmilter's worker threads.
///
/// libmilter callbacks are C function pointers and cannot capture anything, so they reach the rules
/// and settings through this one global. Invariants:
/// - Everything a message needs is in a `Snapshot`, taken once per milter connection (one short
///   lock when Postfix connects) and kept by the connection's `Session`: no callback of an SMTP
///   session takes a process-wide lock, so connections never wait on each other.
/// - The rules and the `spf:` networks are immutable values, replaced whole (a reload, a refresh):
///   a connection keeps the snapshot it started with, and a message never mixes two rule versions.
/// - The rules' counters (their section table) are replaced with the rules, in the same lock: a
///   session counts by the table of the rules it decides by.
/// - The metrics object is made once, before any thread, and never replaced: libmilter's threads
///   reach it without a lock.

import Logging
import SplitCore
import SplitLock
import SplitMetrics

public struct DaemonSettings: Sendable {
    public var rulesPath: String
    public var marker: CopyMarker
    /// Negotiate no-reply for the steps that always continue (see `Negotiation`).
    public var noReply: Bool

    public init(rulesPath: String, marker: CopyMarker, noReply: Bool) {
        self.rulesPath = rulesPath
        self.marker = marker
        self.noReply = noReply
    }
}

/// What one milter connection works with, from its first callback to its last.
struct Snapshot: Sendable {
    var rules: RuleSet
    /// What this connection's sessions count into, with the section table of `rules`.
    var counters: any SessionCounters
    var providers: ProviderNetworks
    var settings: DaemonSettings
    var logger: Logger
}

final class DaemonRuntime: Sendable {
    private let state = Locked(
        Snapshot(
            rules: .empty, counters: NoCounters(), providers: .empty,
            settings: DaemonSettings(rulesPath: "", marker: CopyMarker(instance: "splitmilter"), noReply: false),
            logger: Logger(label: "splitmilter")))

    /// Counted whether or not `--metrics` serves them: a few atomic increments per message.
    let metrics = DaemonMetrics()

    /// Called once, before libmilter starts a thread.
    func configure(settings: DaemonSettings, rules: RuleSet, counters: any SessionCounters, logger: Logger) {
        state.withLock {
            $0.settings = settings
            $0.rules = rules
            $0.counters = counters
            $0.logger = logger
        }
    }

    /// The current rules, networks and settings, for a new connection.
    var snapshot: Snapshot { state.withLock { $0 } }

    var currentRules: RuleSet { state.withLock { $0.rules } }
    var providers: ProviderNetworks { state.withLock { $0.providers } }
    var settings: DaemonSettings { state.withLock { $0.settings } }
    var logger: Logger { state.withLock { $0.logger } }

    /// Puts `rules` (and their `counters`) in force for new connections and returns the rules they
    /// replace, unreleased: the caller retires them (`RuleRetirement`), so a million rules are never
    /// freed inside this lock, where every new connection would wait for it.
    func replaceRules(_ rules: RuleSet, counters: any SessionCounters) -> RuleSet {
        var rules = rules
        state.withLock {
            swap(&$0.rules, &rules)
            $0.counters = counters
        }
        return rules
    }

    /// The networks of `spf:` sources as last resolved; replaced whole by the refresher.
    func replaceProviders(_ networks: ProviderNetworks) { state.withLock { $0.providers = networks } }
}

let runtime = DaemonRuntime()
