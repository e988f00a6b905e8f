/// SPF records as a source of allowed client networks (`allow-clients spf:DOMAIN`).
///
/// Only what an allow-list needs: the `ip4`, `ip6`, `a`, `mx`, `include` mechanisms and the
/// `redirect` modifier, collected from pass-qualified terms. The walk is bounded the way RFC 7208
/// bounds evaluation (§4.6.4: at most 10 terms that cause DNS lookups; loops are errors), and any
/// failure fails the whole collection, so the caller keeps its last good list.

/// The DNS questions an SPF walk asks. The daemon answers them with libresolv; tests with a table.
public protocol DNSLookup {
    /// TXT strings of `name`, each record's character-strings joined. Throw on a DNS failure;
    /// return [] when the name has no TXT records (NXDOMAIN included).
    func txt(_ name: String) throws -> [String]
    /// A and AAAA addresses of `name`.
    func addresses(_ name: String) throws -> [IPAddress]
    /// MX exchange names of `name`.
    func mx(_ name: String) throws -> [String]
}

public struct SPFError: Error, Sendable, Hashable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

public enum SPFTerm: Sendable, Hashable {
    case ip(IPNetwork)
    case include(String)
    /// `a[:domain][/v4[//v6]]`; nil domain means the record's own.
    case a(String?, v4: Int, v6: Int)
    case mx(String?, v4: Int, v6: Int)
    case redirect(String)
}

public struct SPFRecord: Sendable, Hashable {
    /// Pass-qualified terms, in order; `redirect` last if present.
    public let terms: [SPFTerm]

    /// Is this TXT string an SPF record at all (`v=spf1` followed by a space or the end)?
    public static func isSPF(_ text: String) -> Bool {
        let lower = text.lowercased()
        return lower == "v=spf1" || lower.hasPrefix("v=spf1 ")
    }

    public static func parse(_ text: String) throws(SPFError) -> SPFRecord {
        guard isSPF(text) else { throw SPFError("not an SPF record: '\(text.prefix(40))'") }
        guard text.utf8.count <= 4096 else { throw SPFError("SPF record longer than 4096 bytes") }
        var terms: [SPFTerm] = []
        var redirect: String? = nil
        var sawAll = false
        for word in text.split(separator: " ").dropFirst() {
            var term = Substring(word)
            var qualifier: Character = "+"
            if let first = term.first, "+-~?".contains(first) {
                qualifier = first
                term = term.dropFirst()
            }
            let lower = term.lowercased()
            let (name, argument) = Self.split(lower)
            switch name {
            case "ip4", "ip6":
                // The family is the text's: an IPv4-mapped ip6 term (`::ffff:192.0.2.0/120`) is
                // valid RFC 4291 text, and IPNetwork keeps it as the IPv4 network it carries.
                guard let argument, (name == "ip6") == argument.contains(":"), let network = IPNetwork(argument)
                else { throw SPFError("bad \(name) term '\(term)'") }
                if qualifier == "+" { terms.append(.ip(network)) }
            case "include":
                guard let argument, Self.isDomain(argument) else { throw SPFError("bad include term '\(term)'") }
                if qualifier == "+" { terms.append(.include(argument)) }
            case "a", "mx":
                let (domain, v4, v6) = try Self.domainAndPrefixes(argument, term: term)
                if qualifier == "+" {
                    terms.append(name == "a" ? .a(domain, v4: v4, v6: v6) : .mx(domain, v4: v4, v6: v6))
                }
            case "all":
                sawAll = true
            case "ptr", "exists":
                continue  // decide nothing about which networks send for the domain
            default:
                if lower.hasPrefix("redirect=") {
                    let target = String(lower.dropFirst("redirect=".count))
                    guard Self.isDomain(target), redirect == nil else { throw SPFError("bad redirect '\(term)'") }
                    redirect = target
                } else if lower.contains("=") {
                    continue  // unknown modifiers are ignored (RFC 7208 §6)
                } else {
                    throw SPFError("unknown mechanism '\(term)'")
                }
            }
        }
        // RFC 7208 §6.1: redirect applies only when the record has no `all`.
        if let redirect, !sawAll {
            terms.append(.redirect(redirect))
        }
        return SPFRecord(terms: terms)
    }

    static func split(_ term: String) -> (String, String?) {
        if let colon = term.firstIndex(of: ":") {
            return (String(term[..<colon]), String(term[term.index(after: colon)...]))
        }
        if let slash = term.firstIndex(of: "/") { return (String(term[..<slash]), String(term[slash...])) }
        return (term, nil)
    }

    static func isDomain(_ text: String) -> Bool {
        DomainName.problem(in: Array(text.utf8)) == nil
    }

    /// `example.com/24//64`, `/24`, `example.com` or nothing.
    static func domainAndPrefixes(_ argument: String?, term: Substring) throws(SPFError) -> (String?, Int, Int) {
        guard let argument else { return (nil, 32, 128) }
        var domainPart = Substring(argument)
        var v4 = 32
        var v6 = 128
        if let slash = argument.firstIndex(of: "/") {
            domainPart = argument[..<slash]
            let cidr = argument[argument.index(after: slash)...]
            let pieces = cidr.split(separator: "/", omittingEmptySubsequences: false)
            // "/24", "/24//64" or "//64"
            if let first = pieces.first, !first.isEmpty {
                guard let value = Int(first), (0...32).contains(value) else {
                    throw SPFError("bad prefix in '\(term)'")
                }
                v4 = value
            }
            if pieces.count == 3 {
                guard pieces[1].isEmpty, let value = Int(pieces[2]), (0...128).contains(value) else {
                    throw SPFError("bad prefix in '\(term)'")
                }
                v6 = value
            } else if pieces.count != 1 {
                throw SPFError("bad prefix in '\(term)'")
            }
        }
        if domainPart.isEmpty { return (nil, v4, v6) }
        guard isDomain(String(domainPart)) else { throw SPFError("bad domain in '\(term)'") }
        return (String(domainPart), v4, v6)
    }
}

extension IPAddress {
    var isV4: Bool { if case .v4 = self { true } else { false } }
}

/// Walks a domain's SPF record and its includes, collecting the networks they allow.
public struct SPFCollector {
    /// RFC 7208 §4.6.4: at most 10 terms that cause DNS lookups (include, a, mx, redirect).
    public static let maximumLookups = 10
    /// RFC 7208 §4.6.4: at most 10 MX names per `mx` term.
    public static let maximumMXNames = 10

    let dns: DNSLookup

    public init(dns: DNSLookup) { self.dns = dns }

    /// The networks `domain`'s SPF record allows, deduplicated, in order of appearance.
    public func networks(for domain: String) throws(SPFError) -> [IPNetwork] {
        var walk = Walk(dns: dns)
        try walk.visit(domain.lowercased(), path: [])
        return walk.networks
    }

    struct Walk {
        let dns: DNSLookup
        var networks: [IPNetwork] = []
        var seen = Set<IPNetwork>()
        var lookups = 0

        mutating func add(_ network: IPNetwork) {
            if seen.insert(network).inserted { networks.append(network) }
        }

        mutating func countLookup(_ what: String) throws(SPFError) {
            lookups += 1
            if lookups > SPFCollector.maximumLookups {
                throw SPFError("more than \(SPFCollector.maximumLookups) DNS-querying terms (at \(what))")
            }
        }

        func ask<T>(_ body: () throws -> T, _ what: String) throws(SPFError) -> T {
            do {
                return try body()
            } catch {
                throw SPFError("DNS lookup for \(what) failed: \(error)")
            }
        }

        mutating func visit(_ domain: String, path: [String]) throws(SPFError) {
            if path.contains(domain) {
                throw SPFError("include loop: \((path + [domain]).joined(separator: " -> "))")
            }
            let texts = try ask({ try dns.txt(domain) }, "TXT \(domain)")
            let records = texts.filter(SPFRecord.isSPF)
            guard records.count == 1, let text = records.first else {
                throw SPFError(
                    records.isEmpty ? "\(domain) has no SPF record" : "\(domain) has \(records.count) SPF records")
            }
            let record: SPFRecord
            do {
                record = try SPFRecord.parse(text)
            } catch {
                throw SPFError("\(domain): \(error)")
            }
            for term in record.terms {
                switch term {
                case .ip(let network):
                    add(network)
                case .include(let target), .redirect(let target):
                    try countLookup(target)
                    try visit(target, path: path + [domain])
                case .a(let target, let v4, let v6):
                    try countLookup("a:\(target ?? domain)")
                    let name = target ?? domain
                    for address in try ask({ try dns.addresses(name) }, "A/AAAA \(name)") {
                        add(IPNetwork(address: address, prefixLength: address.isV4 ? v4 : v6))
                    }
                case .mx(let target, let v4, let v6):
                    try countLookup("mx:\(target ?? domain)")
                    let name = target ?? domain
                    let exchanges = try ask({ try dns.mx(name) }, "MX \(name)")
                    for exchange in exchanges.prefix(SPFCollector.maximumMXNames) {
                        for address in try ask({ try dns.addresses(exchange) }, "A/AAAA \(exchange)") {
                            add(IPNetwork(address: address, prefixLength: address.isV4 ? v4 : v6))
                        }
                    }
                }
            }
        }
    }
}
