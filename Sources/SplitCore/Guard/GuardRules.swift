/// RCPT-time guards: which clients may send to a domain, which users exist, and who is trusted.
///
/// Guards answer at RCPT, per recipient: a rejected recipient is refused with its own reply and the
/// rest of the transaction goes on. A guard never changes what copies and rewrites do for the
/// recipients it lets through.

/// One source of allowed client networks as written in the rule file.
public enum NetworkSource: Sendable, Hashable, CustomStringConvertible {
    case networks([IPNetwork])
    /// `spf:DOMAIN`: the networks DOMAIN's SPF record allows, resolved and refreshed by the daemon.
    case spf(String)

    public var description: String {
        switch self {
        case .networks(let list): list.map(\.description).joined(separator: " ")
        case .spf(let domain): "spf:\(domain)"
        }
    }
}

/// An `allow-clients` line (or `trusted-networks`): its sources and where it was written.
public struct ClientAllowList: Sendable, Hashable {
    public let sources: [NetworkSource]
    public let reference: RuleReference

    public var spfDomains: [String] {
        sources.compactMap { if case .spf(let domain) = $0 { domain } else { nil } }
    }

    /// The same list as a shadow rule's.
    var shadowed: ClientAllowList { ClientAllowList(sources: sources, reference: reference.shadowed) }

    public enum Match: Sendable, Hashable {
        case allowed(String)
        case notAllowed
        /// Not matched, and an `spf:` source has no list yet: the answer may change once DNS answers.
        case unresolved([String])
    }

    public func match(_ address: IPAddress, providers: ProviderNetworks) -> Match {
        var unresolved: [String] = []
        for source in sources {
            switch source {
            case .networks(let list):
                if let hit = list.first(where: { $0.contains(address) }) { return .allowed(hit.description) }
            case .spf(let domain):
                guard let list = providers.networks[domain] else {
                    unresolved.append(domain)
                    continue
                }
                if let hit = list.first(where: { $0.contains(address) }) { return .allowed("spf:\(domain) \(hit)") }
            }
        }
        return unresolved.isEmpty ? .notAllowed : .unresolved(unresolved)
    }
}

/// The networks resolved from `spf:` sources, by domain: the daemon's current snapshot.
public struct ProviderNetworks: Sendable, Hashable {
    public let networks: [String: [IPNetwork]]
    public init(_ networks: [String: [IPNetwork]]) { self.networks = networks }
    public static let empty = ProviderNetworks([:])
}

/// Clients that bypass `allow-clients`: listed networks and, optionally, SASL-authenticated ones.
public struct TrustPolicy: Sendable, Hashable {
    public let networks: ClientAllowList?
    public let trustAuthenticated: Bool

    public static let `default` = TrustPolicy(networks: nil, trustAuthenticated: true)
}

/// The guards of one `domain` section.
public struct DomainGuard: Sendable, Hashable {
    /// nil: every user is accepted. Lower-cased local parts.
    public let knownUsers: Set<String>?
    public let knownReference: RuleReference?
    public let allowClients: ClientAllowList?
    /// Users that may receive from any client (`allow-any postmaster abuse`).
    public let anyClientUsers: Set<String>
    /// The text of the 5.7.1 reply; nil for the default.
    public let rejectText: String?

    public static let none = DomainGuard(
        knownUsers: nil, knownReference: nil, allowClients: nil, anyClientUsers: [], rejectText: nil)

    public var isActive: Bool { knownUsers != nil || allowClients != nil }

    /// The same guards as shadow rules.
    var shadowed: DomainGuard {
        DomainGuard(
            knownUsers: knownUsers, knownReference: knownReference?.shadowed, allowClients: allowClients?.shadowed,
            anyClientUsers: anyClientUsers, rejectText: rejectText)
    }
}

/// What the MTA told us about the SMTP client.
public struct ClientContext: Sendable, Hashable {
    public let address: IPAddress?
    /// The client's TCP port; nil when the MTA gave no IP address.
    public let port: UInt16?
    /// The client's host name as the MTA's connect step gave it (`localhost`, `[192.0.2.1]`, …).
    public let hostName: String?
    /// `{auth_authen}`: the SASL login name, when the client authenticated.
    public let authenticatedAs: String?

    public init(address: IPAddress?, port: UInt16? = nil, hostName: String? = nil, authenticatedAs: String?) {
        self.address = address
        self.port = port
        self.hostName = hostName
        self.authenticatedAs = authenticatedAs.flatMap { $0.isEmpty ? nil : $0 }
    }

    public static let unknown = ClientContext(address: nil, authenticatedAs: nil)

    /// Postfix's own session for mail that did not come through smtpd(8): with `non_smtpd_milters`,
    /// cleanup(8) plays SMTP to the milter for mail submitted with sendmail(1) (and for QMQP) and
    /// pretends the client is `localhost`, `127.0.0.1`, port 0 (`cleanup_milter_client_init`). No
    /// TCP client has port 0. Postfix cannot refuse a recipient of such a session: the message
    /// would stay in the maildrop queue, retried forever.
    public static let localSubmission = ClientContext(
        address: .v4(0x7F00_0001), port: 0, hostName: "localhost", authenticatedAs: nil)

    /// Whether this is that emulated session: host name `localhost`, a loopback address, port 0.
    public var isLocalSubmission: Bool {
        guard port == 0, hostName?.caseFolded == "localhost", let address else { return false }
        switch address.unmapped {
        case .v4(let value): return value >> 24 == 127
        case .v6(let high, let low): return high == 0 && low == 1
        }
    }
}

/// An SMTP reply to send with a reject or tempfail.
public struct SMTPReply: Sendable, Hashable, CustomStringConvertible {
    public let code: String
    public let enhanced: String
    public let text: String

    public var description: String { "\(code) \(enhanced) \(text)" }
}

/// The guard that refused a recipient: what the metrics count it as, and what a log line names.
public enum GuardKind: Sendable, Hashable {
    /// `allow-clients`: the client is not in the list (550 5.7.1).
    case client
    /// `known`: the user is not listed (550 5.1.1).
    case unknownUser
    /// `allow-clients` with an `spf:` source that has no list yet (451 4.7.1).
    case providerUnknown

    /// The outcome a refusal by this guard is counted as.
    public var outcome: RecipientOutcome {
        switch self {
        case .client: .refusedClient
        case .unknownUser: .refusedUnknownUser
        case .providerUnknown: .refusedProviderUnknown
        }
    }
}

/// The RCPT answer for one recipient.
public enum Verdict: Sendable, Hashable {
    case accept
    case reject(SMTPReply, because: String, by: GuardKind)
    case tempfail(SMTPReply, because: String, by: GuardKind)
}

/// The cache file of resolved `spf:` sources: one line per domain, `DOMAIN NETWORK…`, `#` comments.
/// It lets the daemon start with the last good lists when DNS is down.
extension ProviderNetworks {
    public var cacheText: String {
        var text = "# splitmilter: networks of spf: sources, last resolved successfully\n"
        for domain in networks.keys.sorted() {
            text += ([domain] + (networks[domain] ?? []).map(\.description)).joined(separator: " ") + "\n"
        }
        return text
    }

    /// Parses `cacheText`; lines that do not parse are skipped (the cache is only a fallback).
    public static func parseCache(_ bytes: [UInt8]) -> ProviderNetworks {
        var result: [String: [IPNetwork]] = [:]
        forEachLine(bytes) { line, _ in
            let lineWords = words(of: line).map(\.text)
            guard let domain = lineWords.first, DomainName.problem(in: Array(domain.utf8)) == nil else { return }
            result[domain.lowercased()] = lineWords.dropFirst().compactMap(IPNetwork.init)
        }
        return ProviderNetworks(result)
    }
}
