/// What a milter session counts into (`SessionCounters`): the message counters every rule set
/// shares, and the section table of the rules the session started with.
///
/// Invariants:
/// - Called from libmilter's threads: only increments of counters made beforehand (atomics) and
///   array indexes (a section is found by its position in the rule set's `domains`). No lock, no lookup, no
///   allocation, no label string.
/// - The section table is built when the rules are loaded (at start and at each reload), one entry
///   for each of the rule set's `domains` in their order, kept with that rule set in the daemon's
///   snapshot, and never changed: a session sees one table, that of the rules it decides with.
/// - `splitmilter_section_actions_total` has series for at most `SectionBook.limit` sections over
///   the process's life (the first ones in rule order); any other section counts under
///   `section="other",domain="other"`. A series made for earlier rules stays: counters never go
///   backwards, and the cap is never given back.

import Prometheus
import SplitCore

public final class RuleCounters: SessionCounters {
    let messages: Counter
    let recipients: Counter
    /// Indexed by `outcomeIndex`.
    let outcomes: [Counter]
    /// Indexed by the section's position in the rule set's `domains`; nil for one that counts as
    /// `other`.
    let sections: [SectionSeries?]
    let other: SectionSeries

    init(
        messages: Counter, recipients: Counter, outcomes: [Counter], sections: [SectionSeries?], other: SectionSeries
    ) {
        self.messages = messages
        self.recipients = recipients
        self.outcomes = outcomes
        self.sections = sections
        self.other = other
    }

    public func countRecipient() { recipients.increment() }

    public func countMessage() { messages.increment() }

    public func count(_ outcome: RecipientOutcome, section: Int?, shadow: Bool) {
        outcomes[Self.outcomeIndex(outcome, shadow: shadow)].increment()
        guard let section, outcome == .copy || outcome == .rewrite else { return }
        let series = section >= 0 && section < sections.count ? sections[section] ?? other : other
        series.count(rewrite: outcome == .rewrite, shadow: shadow)
    }

    static let modes = ["live", "shadow"]

    /// The position of an outcome's counter: `RecipientOutcome.allCases` order, live then shadow.
    static func outcomeIndex(_ outcome: RecipientOutcome, shadow: Bool) -> Int {
        let position =
            switch outcome {
            case .copy: 0
            case .rewrite: 1
            case .none: 2
            case .unsafe: 3
            case .duplicate: 4
            case .refusedClient: 5
            case .refusedUnknownUser: 6
            case .refusedProviderUnknown: 7
            }
        return position * 2 + (shadow ? 1 : 0)
    }
}

/// The four series of one section: copy and rewrite, live and shadow.
final class SectionSeries: Sendable {
    static let actions = ["copy", "rewrite"]

    /// Indexed action * 2 + mode, as `actions` and `RuleCounters.modes`.
    let counters: [Counter]

    init(registry: PrometheusCollectorRegistry, section: String, domain: String) {
        counters = Self.actions.flatMap { action in
            RuleCounters.modes.map { mode in
                registry.makeCounter(
                    descriptor: MetricNames.sectionActions.descriptor,
                    labels: [("section", section), ("domain", domain), ("action", action), ("mode", mode)])
            }
        }
    }

    func count(rewrite: Bool, shadow: Bool) { counters[(rewrite ? 2 : 0) + (shadow ? 1 : 0)].increment() }
}

/// Every section series made so far, and how many more may be made. Used on the loading threads
/// only, under `DaemonMetrics`'s lock.
struct SectionBook {
    static let limit = 1_000

    struct Label: Hashable {
        let section: String
        let domain: String
    }

    let registry: PrometheusCollectorRegistry
    let other: SectionSeries
    private(set) var made: [Label: SectionSeries] = [:]

    init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
        other = SectionSeries(registry: registry, section: "other", domain: "other")
    }

    /// The table for sections given in rule order, each as its location and first domain name, in
    /// the same order: the series already made for the same `FILE:LINE` and name, else a new one
    /// while fewer than `limit` were ever made; the rest are nil and count as `other`.
    mutating func table(for sections: [(location: SourceLocation, domain: String)]) -> [SectionSeries?] {
        sections.map { section in
            let label = Label(section: section.location.fileAndLine, domain: section.domain)
            if let series = made[label] { return series }
            guard made.count < Self.limit else { return nil }
            let series = SectionSeries(registry: registry, section: label.section, domain: label.domain)
            made[label] = series
            return series
        }
    }
}
