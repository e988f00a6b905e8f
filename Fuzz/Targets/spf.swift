/// Fuzz target `spf`: SPF records (`SPFRecord.parse`) and the walk over them and their includes
/// (`SPFCollector`), answered by a DNS made of the input; the networks' cache file round trip.
///
/// Input: one DNS record a line, `NAME TYPE DATA`: `TXT` (the rest of the line is the string),
/// `A`/`AAAA` (an address), `MX` (an exchange name), `FAIL` (that name's lookups fail). The walk
/// starts at `example.com`. Every TXT string is also parsed on its own.
///
/// Properties:
///   1. `parse` never traps; a record that parses is an SPF record (`v=spf1`), its domains are
///      host names, its prefix lengths within the family's bounds, at most one `redirect`, last;
///      every `ip4`/`ip6` network prints as text that parses back to itself; a record is never
///      refused for an `ip4` term that is a dotted IPv4 network or an `ip6` term that is an IPv6
///      network (an IPv4-mapped one included: RFC 4291 text is valid in `ip6`);
///   2. the walk ends, asks at most 1 + 10 TXT questions, 10 MX questions and 10 + 10 × 10
///      address questions (RFC 7208 §4.6.4), and returns distinct networks, each an `ip` term of a
///      record served or made from an address served;
///   3. the networks survive the cache file: `parseCache(cacheText)` gives them back.

import SplitCore

final class TableDNS: DNSLookup {
    var txtRecords: [String: [String]] = [:]
    var addressRecords: [String: [IPAddress]] = [:]
    var mxRecords: [String: [String]] = [:]
    var failing = Set<String>()
    var questions = (txt: 0, addresses: 0, mx: 0)

    struct Failure: Error {}

    func txt(_ name: String) throws -> [String] {
        questions.txt += 1
        if failing.contains(name) { throw Failure() }
        return txtRecords[name] ?? []
    }

    func addresses(_ name: String) throws -> [IPAddress] {
        questions.addresses += 1
        if failing.contains(name) { throw Failure() }
        return addressRecords[name] ?? []
    }

    func mx(_ name: String) throws -> [String] {
        questions.mx += 1
        if failing.contains(name) { throw Failure() }
        return mxRecords[name] ?? []
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let dns = TableDNS()
    var texts: [String] = []
    for line in pieces(input(data, size), by: UInt8(ascii: "\n")) {
        let words = line.split(separator: UInt8(ascii: " "), maxSplits: 2, omittingEmptySubsequences: false)
        guard words.count >= 2 else { continue }
        let name = text(words[0]).lowercased()
        let value = words.count > 2 ? text(words[2]) : ""
        switch text(words[1]).uppercased() {
        case "TXT":
            dns.txtRecords[name, default: []].append(value)
            texts.append(value)
        case "A", "AAAA":
            if let address = IPAddress(value) { dns.addressRecords[name, default: []].append(address) }
        case "MX": dns.mxRecords[name, default: []].append(value.lowercased())
        case "FAIL": dns.failing.insert(name)
        default: continue
        }
    }

    var allowed = Set<IPNetwork>()
    for text in texts {
        let record: SPFRecord
        do {
            record = try SPFRecord.parse(text)
        } catch {
            checkRefusal(error, text)
            continue
        }
        require(SPFRecord.isSPF(text), "\(text.debugDescription) parsed but is not an SPF record")
        checkTerms(record.terms, text)
        for case .ip(let network) in record.terms { allowed.insert(network) }
    }

    let networks: [IPNetwork]
    do {
        networks = try SPFCollector(dns: dns).networks(for: "example.com")
    } catch {
        networks = []
    }
    let lookups = SPFCollector.maximumLookups
    require(dns.questions.txt <= 1 + lookups, "\(dns.questions.txt) TXT questions")
    require(dns.questions.mx <= lookups, "\(dns.questions.mx) MX questions")
    require(
        dns.questions.addresses <= lookups + lookups * SPFCollector.maximumMXNames,
        "\(dns.questions.addresses) address questions")
    require(Set(networks).count == networks.count, "networks repeat: \(networks)")
    let served = dns.addressRecords.values.joined()
    for network in networks where !allowed.contains(network) {
        // An IPv4-mapped address served as AAAA comes back as the IPv4 network it carries (/32 of /128).
        let lengths = [network.prefixLength, network.prefixLength + 96]
        require(
            served.contains { address in lengths.contains { IPNetwork(address: address, prefixLength: $0) == network }
            },
            "\(network) is neither an ip term nor made from an address served")
    }
    if !networks.isEmpty {
        let cached = ProviderNetworks(["example.com": networks])
        let back = ProviderNetworks.parseCache(Array(cached.cacheText.utf8))
        require(back == cached, "cache round trip: \(cached.networks) came back as \(back.networks)")
    }
    return 0
}

func checkTerms(_ terms: [SPFTerm], _ text: String) {
    for (index, term) in terms.enumerated() {
        switch term {
        case .ip(let network):
            require(IPNetwork(network.description) == network, "\(network) does not parse back from its text")
        case .include(let domain):
            require(isLowerCaseHostName(domain), "include of \(domain.debugDescription) in \(text.debugDescription)")
        case .redirect(let domain):
            require(isLowerCaseHostName(domain), "redirect to \(domain.debugDescription) in \(text.debugDescription)")
            require(index == terms.count - 1, "redirect is not the last term of \(text.debugDescription)")
        case .a(let domain, let v4, let v6), .mx(let domain, let v4, let v6):
            require(domain.map(isLowerCaseHostName) ?? true, "a/mx of \(domain ?? "") in \(text.debugDescription)")
            require(
                (0...32).contains(v4) && (0...128).contains(v6), "prefixes /\(v4)//\(v6) in \(text.debugDescription)")
        }
    }
}

/// A refusal that names an `ip4`/`ip6` term must name one that is not a network of its family.
func checkRefusal(_ error: SPFError, _ text: String) {
    guard error.description.hasPrefix("bad ip"), let open = error.description.firstIndex(of: "'") else { return }
    let term = error.description[error.description.index(after: open)...].dropLast().lowercased()
    guard let colon = term.firstIndex(of: ":") else { return }
    let name = term[..<colon]
    let argument = String(term[term.index(after: colon)...])
    let ofItsFamily = (name == "ip6") == argument.contains(":")
    require(
        !(ofItsFamily && IPNetwork(argument) != nil),
        "\(text.debugDescription) refused for its valid term \(term): \(error)")
}
