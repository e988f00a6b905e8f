/// Warnings about a whole rule set: rules that parse but can never do what they seem to say.
///
/// They need every section at hand (a copy into a domain another file rewrites), so they run
/// after parsing, on a `RuleSet` that has no errors.
///
/// A section whose users came from a patched database list (`DatabaseListParses`) has only the
/// users of the rows read in the patch checked (`checkingOnly`): the others were checked when their
/// rows were read, against the same sections (a database change keeps the rule files as last
/// read), and their warnings were given then.

enum RuleLint {
    static func warnings(_ set: RuleSet, checkingOnly: [ObjectIdentifier: [String]] = [:]) -> [Diagnostic] {
        var found: [Diagnostic] = []
        // Targets of a million user lines name a handful of domains: each is looked up once.
        var sections: [String: DomainRules?] = [:]
        // Nearly always the same domain as the target before: compared, not hashed.
        var last: (domain: String, section: DomainRules?)?
        func check(_ template: AddressTemplate, _ reference: RuleReference, user: String?, in section: DomainRules) {
            if isRecipientItself(template, section: section, user: user) {
                found.append(
                    .warning(
                        "target '\(template)' is the recipient itself; this rule never changes anything",
                        at: reference.location))
                return
            }
            guard !template.domain.isEmpty else { return }
            let other: DomainRules?
            if let last, last.domain == template.domain {
                other = last.section
            } else if let known = sections[template.domain] {
                other = known
            } else {
                other = set.section(for: template.domain)
                sections[template.domain] = .some(other)
            }
            last = (template.domain, other)
            if let other {
                found.append(
                    .warning(
                        "'\(template.domain)' has rules of its own (\(other.location)), but added recipients are not looked up again: they get none of them",
                        at: reference.location))
            }
        }
        for section in set.domains {
            if let copy = section.copy {
                for template in copy.targets { check(template, copy.reference, user: nil, in: section) }
            }
            if let rewrite = section.rewrite { check(rewrite.target, rewrite.reference, user: nil, in: section) }
            func checkUser(_ name: String, _ rule: UserRule) {
                if let copy = rule.copy {
                    for template in copy.targets { check(template, copy.reference, user: name, in: section) }
                }
                if let rewrite = rule.rewrite { check(rewrite.target, rewrite.reference, user: name, in: section) }
            }
            if let names = checkingOnly[section.identity] {
                let users = section.users
                for name in Set(names) { if let rule = users[name] { checkUser(name, rule) } }
            } else {
                for (name, rule) in section.users { checkUser(name, rule) }
            }
        }
        // Users come in hash order: the warnings are put in file order.
        return found.sorted { $0.location < $1.location }
    }

    /// `%u@D` in D's own section, or `user x … x@D`.
    static func isRecipientItself(_ template: AddressTemplate, section: DomainRules, user: String?) -> Bool {
        guard section.names.contains(template.domain) else { return false }
        // Matched in place: array literals here would allocate once per user rule.
        guard template.localPieces.count == 1 else { return false }
        switch template.localPieces[0] {
        case .localPart: return true
        case .literal(let text): return text == user
        default: return false
        }
    }
}
