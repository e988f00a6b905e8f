/// Warnings about a whole rule set: rules that parse but can never do what they seem to say.
///
/// They need every section at hand (a copy into a domain another file rewrites), so they run
/// after parsing, on a `RuleSet` that has no errors.

enum RuleLint {
    static func warnings(_ set: RuleSet) -> [Diagnostic] {
        var found: [Diagnostic] = []
        for section in set.domains {
            var targets: [(AddressTemplate, RuleReference, user: String?)] = []
            for template in section.copy?.targets ?? [] {
                if let reference = section.copy?.reference { targets.append((template, reference, nil)) }
            }
            if let rewrite = section.rewrite { targets.append((rewrite.target, rewrite.reference, nil)) }
            for (name, rule) in section.users.sorted(by: { $0.key < $1.key }) {
                for template in rule.copy?.targets ?? [] {
                    if let reference = rule.copy?.reference { targets.append((template, reference, name)) }
                }
                if let rewrite = rule.rewrite { targets.append((rewrite.target, rewrite.reference, name)) }
            }
            for (template, reference, user) in targets {
                if isRecipientItself(template, section: section, user: user) {
                    found.append(
                        .warning(
                            "target '\(template)' is the recipient itself; this rule never changes anything",
                            at: reference.location))
                } else if !template.domain.isEmpty, let other = set.section(for: template.domain) {
                    found.append(
                        .warning(
                            "'\(template.domain)' has rules of its own (\(other.location)), but added recipients are not looked up again: they get none of them",
                            at: reference.location))
                }
            }
        }
        return found
    }

    /// `%u@D` in D's own section, or `user x … x@D`.
    static func isRecipientItself(_ template: AddressTemplate, section: DomainRules, user: String?) -> Bool {
        guard section.names.contains(template.domain) else { return false }
        if template.localPieces == [.localPart] { return true }
        if let user, template.localPieces == [.literal(user)] { return true }
        return false
    }
}
