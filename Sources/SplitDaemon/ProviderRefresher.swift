/// Keeps the networks of `spf:` sources current: resolves them at start, refreshes them on a
/// schedule and on SIGUSR1, keeps the last good list of a domain whose lookup fails, logs what
/// changed, counts every lookup (`DaemonMetrics.spfRefreshed`), and writes every good result to a
/// cache file.
///
/// Start-up with DNS down is an explicit choice: a domain that cannot be resolved is taken from
/// the cache file; a domain in neither makes the daemon refuse to start (`start` throws), because
/// running without it would refuse the provider's mail with 4xx for as long as DNS stays down.

import Glibc
import Logging
import SplitCore
import SplitLock
import SplitSystem

final class ProviderRefresher: Sendable {
    let dns: ResolverDNS
    let interval: Int
    let cachePath: String?
    /// Serialises refreshes: the schedule thread and a SIGUSR1 reload may ask at the same time.
    private let refreshing = Locked(())

    init(dns: ResolverDNS, interval: Int, cachePath: String?) {
        self.dns = dns
        self.interval = interval
        self.cachePath = cachePath
    }

    struct StartError: Error, CustomStringConvertible {
        let description: String
    }

    /// Resolves every domain the rules name; falls back to the cache; throws if a domain has neither.
    func start(logger: Logger) throws {
        let domains = runtime.currentRules.spfDomains
        guard !domains.isEmpty else { return }
        let cached = readCache(logger: logger)
        let resolution = ProviderResolution.resolve(domains, dns: dns)
        var networks = resolution.networks.networks
        var missing: [String] = []
        for (domain, problem) in resolution.failures.sorted(by: { $0.key < $1.key }) {
            if let fallback = cached.networks[domain] {
                logger.warning("spf:\(domain): \(problem); using the cached list (\(fallback.count) networks)")
                networks[domain] = fallback
            } else {
                logger.error("spf:\(domain): \(problem); no cached list in \(cachePath ?? "(no cache file)")")
                missing.append(domain)
            }
            runtime.metrics.spfRefreshed(domain, succeeded: false, networks: networks[domain]?.count)
        }
        guard missing.isEmpty else {
            throw StartError(
                description: "cannot start: no allowed-client list for spf:\(missing.joined(separator: ", spf:"))")
        }
        for domain in resolution.networks.networks.keys.sorted() {
            logger.info("spf:\(domain): \(networks[domain]?.count ?? 0) networks")
            runtime.metrics.spfRefreshed(domain, succeeded: true, networks: networks[domain]?.count)
        }
        runtime.replaceProviders(ProviderNetworks(networks))
        writeCache(logger: logger)
    }

    /// Starts the refresh thread (call after the signals are blocked).
    func runSchedule() {
        guard interval > 0 else { return }
        let rc = DetachedThread.start { [self] in
            while true {
                var request = timespec(tv_sec: interval, tv_nsec: 0)
                var remaining = timespec()
                while nanosleep(&request, &remaining) != 0, errno == EINTR { request = remaining }
                refresh()
            }
        }
        if rc != 0 { runtime.logger.error("cannot start the spf refresh thread: error \(rc)") }
    }

    /// Resolves every `spf:` domain of the current rules once, keeping the last good list on failure.
    func refresh() {
        refreshing.withLock { _ in
            let logger = runtime.logger
            let domains = runtime.currentRules.spfDomains
            // No spf: sources, nothing to resolve or cache (an old cache file is left as it is).
            guard !domains.isEmpty else {
                runtime.replaceProviders(.empty)
                return
            }
            let old = runtime.providers.networks
            let resolution = ProviderResolution.resolve(domains, dns: dns)
            var networks: [String: [IPNetwork]] = [:]
            // What changed is logged once the new lists are in force and in the cache file: a
            // reader of the log (e2e l4) then finds both.
            var changes: [String] = []
            for domain in domains {
                runtime.metrics.spfRefreshed(
                    domain, succeeded: resolution.networks.networks[domain] != nil,
                    networks: (resolution.networks.networks[domain] ?? old[domain])?.count)
                if let fresh = resolution.networks.networks[domain] {
                    networks[domain] = fresh
                    if let change = Self.change(domain, from: old[domain], to: fresh) { changes.append(change) }
                } else if let kept = old[domain] {
                    networks[domain] = kept
                    logger.warning(
                        "spf:\(domain): \(resolution.failures[domain] ?? "failed"); keeping the last good list (\(kept.count) networks)"
                    )
                } else {
                    logger.error("spf:\(domain): \(resolution.failures[domain] ?? "failed"); no list yet")
                }
            }
            runtime.replaceProviders(ProviderNetworks(networks))
            writeCache(logger: logger)
            for change in changes { logger.info("\(change)") }
        }
    }

    /// The log line for a domain's new list: its size the first time, what was added and removed
    /// after; nil when nothing changed.
    static func change(_ domain: String, from old: [IPNetwork]?, to new: [IPNetwork]) -> String? {
        guard let old else { return "spf:\(domain): \(new.count) networks" }
        let added = new.filter { !old.contains($0) }
        let removed = old.filter { !new.contains($0) }
        guard !added.isEmpty || !removed.isEmpty else { return nil }
        return
            "spf:\(domain): changed: added \(added.map(\.description).joined(separator: " ")) removed \(removed.map(\.description).joined(separator: " "))"
    }

    func readCache(logger: Logger) -> ProviderNetworks {
        guard let cachePath else { return .empty }
        do {
            return ProviderNetworks.parseCache(try DiskRuleSource().contents(of: cachePath))
        } catch {
            logger.info("spf cache \(cachePath): \(error)")
            return .empty
        }
    }

    func writeCache(logger: Logger) {
        guard let cachePath else { return }
        do {
            try AtomicFile.write(runtime.providers.cacheText, to: cachePath)
        } catch {
            logger.warning("cannot write spf cache \(cachePath): \(error)")
        }
    }
}
