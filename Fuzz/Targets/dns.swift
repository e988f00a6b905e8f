/// Fuzz target `dns`: SplitSystem's reading of DNS answers (`ResolverDNS`: TXT, A, AAAA and MX
/// record data, through CResolvShim's libresolv calls) and the SPF walk on top of it
/// (`ProviderResolution`), with the network replaced by the input: the binary is linked with
/// `ld --wrap` so that res_nquery answers from Fuzz/Support/dns-answers.c. Built with
/// AddressSanitizer, as this is the code that reads C buffers.
///
/// Input: the DNS messages of successive queries (format in dns-answers.h).
///
/// Properties:
///   1. no trap and no memory error on any answer, however malformed or truncated;
///   2. addresses come only from records of the right size (4 bytes A, 16 AAAA): never more than
///      the answer's bytes can hold; MX names come back lower-case;
///   3. a walk that fails reports a reason; one that succeeds returns networks.

import FuzzDNSAnswers
import SplitCore
import SplitSystem

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let dns = ResolverDNS()
    fuzz_dns_answers(data, size)
    _ = try? dns.txt("example.com")
    if let addresses = try? dns.addresses("example.com") {
        require(addresses.count * 4 <= size, "\(addresses.count) addresses from \(size) bytes")
    }
    if let names = try? dns.mx("example.com") {
        for name in names { require(name == name.lowercased(), "MX name \(name.debugDescription) not lower-case") }
    }
    fuzz_dns_answers(data, size)
    let resolution = ProviderResolution.resolve(["example.com"], dns: dns)
    require(
        (resolution.networks.networks["example.com"] == nil) == (resolution.failures["example.com"] != nil),
        "example.com both resolved and failed, or neither")
    require(fuzz_dns_queries() <= 1 + 11 + 10 * 11 * 2, "\(fuzz_dns_queries()) queries for one walk")
    return 0
}
