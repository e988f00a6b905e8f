/// The RCPT verdict of a domain's guards for one recipient.
///
/// Order matters: the client check comes first, so a client that may not send to the domain learns
/// nothing about which users exist. A local submission (`ClientContext.isLocalSubmission`) is never
/// refused: Postfix cannot take a refusal there, so the verdict is accept, with a note that says what
/// the guard would have answered.
///
/// Shadow rules: the verdict is the live rules' alone (a shadow guard, or a shadow user rule that
/// would name the user to `known`, changes nothing); when it accepts, the guards are asked again
/// with the shadow rules as if live, and a refusal then is kept as `shadowRefusal`. A section
/// without shadow rules is asked once.

struct GuardCheck {
    let rules: DomainRules
    let trust: TrustPolicy
    let recipient: String
    /// nil when the recipient could not be parsed.
    let keys: UserKeys?
    let userRule: UserRule?
    /// The rewrite target's parts, shadow rules included: a recipient rewritten to a known user
    /// counts as known.
    let rewrite: RecipientParts?
    /// The same for the rewrite sent now (the live rules').
    let sentRewrite: RecipientParts?
    let client: ClientContext
    let providers: ProviderNetworks

    struct Outcome {
        let verdict: Verdict
        let note: String?
        /// A guard refused, and the refusal was not applied because the client is a local submission.
        let waived: Bool
        /// What a shadow guard would answer, when the live ones accept and it would refuse.
        var shadowRefusal: Verdict? = nil

        static let accepted = Outcome(verdict: .accept, note: nil, waived: false)
    }

    func verdict() -> Outcome {
        let live = applied(guardVerdict(shadowRules: false))
        guard rules.hasShadow, live.verdict == .accept else { return live }
        let hypothetical = applied(guardVerdict(shadowRules: true))
        guard hypothetical.verdict != .accept else { return live }
        return Outcome(verdict: .accept, note: live.note, waived: live.waived, shadowRefusal: hypothetical.verdict)
    }

    /// A refusal that Postfix cannot take (a local submission) becomes an accept with a note.
    func applied(_ checked: (verdict: Verdict, note: String?)) -> Outcome {
        guard client.isLocalSubmission else {
            return Outcome(verdict: checked.verdict, note: checked.note, waived: false)
        }
        switch checked.verdict {
        case .accept:
            return Outcome(verdict: checked.verdict, note: checked.note, waived: false)
        case .reject(let reply, let because, _), .tempfail(let reply, let because, _):
            let note =
                "guard not applied: local submission (sendmail), Postfix cannot refuse it here;"
                + " otherwise \(reply.code) \(reply.enhanced) (\(because))"
            return Outcome(verdict: .accept, note: note, waived: true)
        }
    }

    /// The guards' verdict with the live rules only, or (`shadowRules`) with the shadow rules as if live.
    func guardVerdict(shadowRules: Bool) -> (verdict: Verdict, note: String?) {
        func applies(_ reference: RuleReference) -> Bool { shadowRules || !reference.isShadow }
        var note: String? = nil
        let userList = userRule?.allowClients.flatMap { applies($0.reference) ? $0 : nil }
        if let list = userList ?? rules.guards.allowClients.flatMap({ applies($0.reference) ? $0 : nil }) {
            switch clientVerdict(list) {
            case .success(let reason): note = reason
            case .failure(let refusal): return (refusal.verdict, nil)
            }
        }
        if let known = rules.guards.knownUsers, let reference = rules.guards.knownReference, applies(reference) {
            // A user rule names the user; with shadow rules, only a live one names it to the live guard.
            let named = shadowRules || !rules.hasShadow ? userRule != nil : userRule?.hasLiveRule == true
            let listed = keys?.contains(where: known.contains) ?? false
            let rewritten = shadowRules ? rewrite : sentRewrite
            let rewrittenToKnown = rewritten.map { UserKeys($0).contains(where: known.contains) } ?? false
            guard named || listed || rewrittenToKnown else {
                let reply = SMTPReply(
                    code: "550", enhanced: "5.1.1", text: "\(recipient): Recipient address rejected: User unknown")
                return (
                    .reject(reply, because: "not a known user (\(reference.location.fileAndLine))", by: .unknownUser),
                    note
                )
            }
        }
        return (.accept, note)
    }

    struct Refusal: Error {
        let verdict: Verdict
    }

    func clientVerdict(_ list: ClientAllowList) -> Result<String, Refusal> {
        if let keys, keys.contains(where: rules.guards.anyClientUsers.contains) {
            return .success("user may receive from any client")
        }
        if let address = client.address, let trusted = trust.networks,
            case .allowed(let network) = trusted.match(address, providers: providers)
        {
            return .success("trusted network \(network) (\(trusted.reference.location.fileAndLine))")
        }
        if trust.trustAuthenticated, let login = client.authenticatedAs {
            return .success("authenticated as \(login)")
        }
        let rule = list.reference.location.fileAndLine
        guard let address = client.address else {
            return .failure(refuse("client address unknown; not in allow-clients (\(rule))"))
        }
        switch list.match(address, providers: providers) {
        case .allowed(let network):
            return .success("client \(address) allowed by \(network) (\(rule))")
        case .notAllowed:
            return .failure(refuse("client \(address) not in allow-clients (\(rule))"))
        case .unresolved(let domains):
            let reply = SMTPReply(
                code: "451", enhanced: "4.7.1",
                text: "\(recipient): allowed senders for this domain are not known yet; try again later")
            let because =
                "client \(address) not allowed, and spf:\(domains.joined(separator: ",")) has no list yet (\(rule))"
            return .failure(Refusal(verdict: .tempfail(reply, because: because, by: .providerUnknown)))
        }
    }

    func refuse(_ because: String) -> Refusal {
        let text = rules.guards.rejectText ?? "\(recipient): Recipient address rejected: not accepted from this client"
        return Refusal(
            verdict: .reject(SMTPReply(code: "550", enhanced: "5.7.1", text: text), because: because, by: .client))
    }
}
