/// The daemon's process-wide state, shared by libmilter's worker threads.
///
/// libmilter callbacks are C function pointers and cannot capture anything, so they reach the rules
/// and settings through this one global. The rule set is an immutable snapshot behind a mutex: a
/// reload swaps it whole, and each milter connection keeps the snapshot it negotiated with.

import Logging
import SplitCore
import Synchronization

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

final class DaemonRuntime: Sendable {
    private let rules: Mutex<RuleSet>
    private let state: Mutex<(settings: DaemonSettings, logger: Logger)?>
    private let providerNetworks: Mutex<ProviderNetworks>

    init() {
        rules = Mutex(RuleSet.empty)
        state = Mutex(nil)
        providerNetworks = Mutex(.empty)
    }

    /// The networks of `spf:` sources as last resolved; replaced whole by the refresher.
    var providers: ProviderNetworks { providerNetworks.withLock { $0 } }

    func replaceProviders(_ networks: ProviderNetworks) { providerNetworks.withLock { $0 = networks } }

    func configure(settings: DaemonSettings, rules newRules: RuleSet, logger: Logger) {
        state.withLock { $0 = (settings, logger) }
        rules.withLock { $0 = newRules }
    }

    var currentRules: RuleSet { rules.withLock { $0 } }

    func replaceRules(_ newRules: RuleSet) { rules.withLock { $0 = newRules } }

    var settings: DaemonSettings {
        state.withLock { $0?.settings }
            ?? DaemonSettings(rulesPath: "", marker: CopyMarker(instance: "splitmilter"), noReply: false)
    }

    var logger: Logger { state.withLock { $0?.logger } ?? Logger(label: "splitmilter") }
}

let runtime = DaemonRuntime()
