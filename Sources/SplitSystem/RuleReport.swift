/// The one-line summary of a rule set, shared by `--check`, `milter-test check` and the daemon's
/// start and reload lines.

import SplitCore

public enum RuleReport {
    /// `N domains, N users, N rules in N files`.
    public static func summary(_ ruleSet: SplitCore.RuleSet) -> String {
        let domains = domainCount(ruleSet)
        return
            "\(domains) domain\(domains == 1 ? "" : "s"), \(ruleSet.userCount) listed user\(ruleSet.userCount == 1 ? "" : "s"), "
            + "\(ruleSet.ruleCount) rule\(ruleSet.ruleCount == 1 ? "" : "s"), \(ruleSet.files.count) file\(ruleSet.files.count == 1 ? "" : "s")"
    }

    /// The daemon's form: `summary`, then the first 12 hex digits of the files' SHA-256.
    public static func summary(_ ruleSet: SplitCore.RuleSet, sha256: String?) -> String {
        "\(summary(ruleSet)), sha256=\(sha256.map { String($0.prefix(12)) } ?? "unknown")"
    }

    /// The domain names of every section (a section may name several).
    public static func domainCount(_ ruleSet: SplitCore.RuleSet) -> Int {
        ruleSet.domains.reduce(0) { $0 + $1.names.count }
    }
}
