/// Fuzz target `template`: copy and rewrite templates (`AddressTemplate.parse`) filled in
/// (`render`) with fuzzed recipients.
///
/// Input, line by line: a template; recipient_delimiter characters; a RCPT argument (parsed as the
/// daemon parses it, then split at the delimiters); then four raw parts, %u %b %e %d, handed to
/// `render` as they are, unchecked, as a stand-in for any future caller that forgets to check.
///
/// Properties:
///   1. a template that parses has, as its domain, exactly the text after its `@`, lower-cased (or
///      none, for a bare local part where allowed), and that is a host name; no `%` token is there;
///   2. a parse error's offset lies within the template;
///   3. whatever the recipient, a rendered address has the template's literal domain and a safe
///      dot-atom local part; a fixed template (no token) renders to the same address for everyone.

import SplitCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let lines = pieces(input(data, size), by: UInt8(ascii: "\n"))
    func line(_ index: Int) -> String { index < lines.count ? text(lines[index]) : "" }
    let source = line(0)
    let delimiters = line(1)
    var partsList: [RecipientParts] = [
        RecipientParts(localPart: line(3), base: line(4), extension: line(5), domain: line(6))
    ]
    if case .success(let address) = EnvelopeAddressParser.parse(line(2)) {
        partsList.append(RecipientParts(address: address, delimiters: delimiters))
        partsList.append(RecipientParts(address: address, delimiters: "+-=_."))
    }
    for bare in [false, true] {
        switch AddressTemplate.parse(source, allowBareLocalPart: bare) {
        case .failure(.invalid(let message, let offset)):
            require(
                (0...source.count).contains(offset),
                "error '\(message)' at offset \(offset) outside \(source.debugDescription)")
        case .success(let template):
            let written = source.split(separator: "@", omittingEmptySubsequences: false)
            require(written.count <= 2, "template \(source.debugDescription) with more than one '@' parsed")
            if written.count == 2 {
                require(
                    template.domain == written[1].lowercased() && isLowerCaseHostName(template.domain),
                    "template \(source.debugDescription) parsed with domain \(template.domain.debugDescription)")
            } else {
                require(bare && template.domain.isEmpty, "template \(source.debugDescription) without '@' parsed")
            }
            require(template.source == source, "template keeps \(template.source.debugDescription)")
            var fixed: EnvelopeAddress? = nil
            for parts in partsList {
                guard case .success(let address) = template.render(parts) else { continue }
                require(
                    address.domain == template.domain,
                    "\(source.debugDescription) rendered \(address) for \(parts): domain is not the template's")
                require(
                    isSafeDotAtom(address.localPart),
                    "\(source.debugDescription) rendered \(address) for \(parts): local part is not a safe dot-atom")
                if template.isFixed {
                    require(fixed == nil || fixed == address, "fixed template \(source.debugDescription) varies")
                    fixed = address
                }
            }
        }
    }
    return 0
}
