/// What a session counts, for the daemon's metrics: one outcome per planned target or refusal, so
/// the counters add up to what Postfix delivered and refused.
///
/// Invariants:
/// - Called on the message path, from libmilter's threads: an implementation only increments
///   counters it made beforehand (no lock, no allocation, no lookup by a string built per call).
/// - A refusal is counted at RCPT (Postfix refuses it there); copies, rewrites, skips and recipients
///   with no action are counted at end of message, when the edits have been sent: an aborted
///   message counts its refusals and nothing else.
/// - `shadow` is true for what a shadow rule (or `--dry-run`) would have done and did not.

/// How one recipient, or one of its planned targets, ended.
public enum RecipientOutcome: String, Sendable, CaseIterable {
    /// A copy was added (one per copy target sent to Postfix).
    case copy
    /// The recipient was replaced by its rewrite target.
    case rewrite
    /// A recipient that no rule acted on, delivered as Postfix would without the milter.
    case none
    /// A rule matched, but its target could not be used (a bad rendering, the recipient itself).
    case unsafe
    /// A target not sent because it is already a recipient or a copy, or the message was already
    /// copied by this instance.
    case duplicate
    /// Refused by `allow-clients` (550 5.7.1).
    case refusedClient = "refused_client"
    /// Refused by `known` (550 5.1.1).
    case refusedUnknownUser = "refused_unknown_user"
    /// Refused with 451 4.7.1: an `spf:` source of `allow-clients` has no list yet.
    case refusedProviderUnknown = "refused_provider_unknown"
}

public protocol SessionCounters: Sendable {
    /// Every RCPT that reached the rules (with or without a usable address).
    func countRecipient()
    /// Every message whose end of message sent its edits (one refused there is not counted).
    func countMessage()
    /// One outcome. `section` is the `domain` section that decided it, as its position in the rule
    /// set's `domains` (`RecipientDecision.sectionPosition`; nil: no section): copies and rewrites
    /// are also counted per section, in a table made in that order.
    func count(_ outcome: RecipientOutcome, section: Int?, shadow: Bool)
}

/// Counts nothing: `milter-test explain` and the unit tests that do not look at counters.
public struct NoCounters: SessionCounters {
    public init() {}
    public func countRecipient() {}
    public func countMessage() {}
    public func count(_ outcome: RecipientOutcome, section: Int?, shadow: Bool) {}
}
