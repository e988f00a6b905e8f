/// The RCPT verdict of a domain's guards for one recipient.
///
/// Order matters: the client check comes first, so a client that may not send to the domain learns
/// nothing about which users exist. A local submission (`ClientContext.isLocalSubmission`) is never
/// refused: Postfix cannot take a refusal there, so the verdict is accept, with a note that says what
/// the guard would have answered.

struct GuardCheck {
    let rules: DomainRules
    let trust: TrustPolicy
    let recipient: String
    /// nil when the recipient could not be parsed.
    let keys: UserKeys?
    let userRule: UserRule?
    /// The rewrite target's parts: a recipient rewritten to a known user counts as known.
    let rewrite: RecipientParts?
    let client: ClientContext
    let providers: ProviderNetworks

    /// `waived`: a guard refused, and the refusal was not applied because the client is a local submission.
    func verdict() -> (verdict: Verdict, note: String?, waived: Bool) {
        let checked = guardVerdict()
        guard client.isLocalSubmission else { return (checked.verdict, checked.note, false) }
        switch checked.verdict {
        case .accept:
            return (checked.verdict, checked.note, false)
        case .reject(let reply, let because, _), .tempfail(let reply, let because, _):
            let note =
                "guard not applied: local submission (sendmail), Postfix cannot refuse it here;"
                + " otherwise \(reply.code) \(reply.enhanced) (\(because))"
            return (.accept, note, true)
        }
    }

    func guardVerdict() -> (verdict: Verdict, note: String?) {
        var note: String? = nil
        if let list = userRule?.allowClients ?? rules.guards.allowClients {
            switch clientVerdict(list) {
            case .success(let reason): note = reason
            case .failure(let refusal): return (refusal.verdict, nil)
            }
        }
        if let known = rules.guards.knownUsers, let reference = rules.guards.knownReference {
            let named = userRule != nil
            let listed = keys?.contains(where: known.contains) ?? false
            let rewrittenToKnown = rewrite.map { UserKeys($0).contains(where: known.contains) } ?? false
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
