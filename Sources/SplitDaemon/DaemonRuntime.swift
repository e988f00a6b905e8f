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

    public init(rulesPath: String, marker: CopyMarker) {
        self.rulesPath = rulesPath
        self.marker = marker
    }
}

final class DaemonRuntime: Sendable {
    private let rules: Mutex<RuleSet>
    private let state: Mutex<(settings: DaemonSettings, logger: Logger)?>

    init() {
        rules = Mutex(RuleSet.empty)
        state = Mutex(nil)
    }

    func configure(settings: DaemonSettings, rules newRules: RuleSet, logger: Logger) {
        state.withLock { $0 = (settings, logger) }
        rules.withLock { $0 = newRules }
    }

    var currentRules: RuleSet { rules.withLock { $0 } }

    func replaceRules(_ newRules: RuleSet) { rules.withLock { $0 = newRules } }

    var settings: DaemonSettings {
        state.withLock { $0?.settings } ?? DaemonSettings(rulesPath: "", marker: CopyMarker(instance: "splitmilter"))
    }

    var logger: Logger { state.withLock { $0?.logger } ?? Logger(label: "splitmilter") }
}

let runtime = DaemonRuntime()
