/// Resolving every `spf:` source of a rule set once: the networks that resolved, and why the others
/// did not. The daemon's refresher and `milter-test explain` share it.

import SplitCore

public struct ProviderResolution: Sendable {
    public let networks: ProviderNetworks
    /// Domains whose SPF walk failed, with the reason.
    public let failures: [String: String]

    public static func resolve(_ domains: [String], dns: DNSLookup) -> ProviderResolution {
        var resolved: [String: [IPNetwork]] = [:]
        var failures: [String: String] = [:]
        let collector = SPFCollector(dns: dns)
        for domain in domains {
            do {
                resolved[domain] = try collector.networks(for: domain)
            } catch {
                failures[domain] = error.description
            }
        }
        return ProviderResolution(networks: ProviderNetworks(resolved), failures: failures)
    }
}
