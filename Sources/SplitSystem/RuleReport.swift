/// The one-line summary of a rule set, shared by `--check`, `milter-test check` and the daemon's
/// start and reload lines.

import SplitCore

public enum RuleReport {
    /// `N domains, N users, N rules in N files`.
    public static func summary(_ ruleSet: SplitCore.RuleSet) -> String {
        let domains = ruleSet.domains.reduce(0) { $0 + $1.names.count }
        return
            "\(domains) domain\(domains == 1 ? "" : "s"), \(ruleSet.userCount) listed user\(ruleSet.userCount == 1 ? "" : "s"), "
            + "\(ruleSet.ruleCount) rule\(ruleSet.ruleCount == 1 ? "" : "s"), \(ruleSet.files.count) file\(ruleSet.files.count == 1 ? "" : "s")"
    }
}
