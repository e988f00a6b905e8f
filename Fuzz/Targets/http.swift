/// Fuzz target `http`: the metrics listener's reading of a request head (`HTTPRequestHead`, the
/// one file of SplitMetrics that reads what a client sends).
///
/// Input: the bytes a client sends, as the listener reads them; they also decide how the bytes
/// arrive (piece sizes of 1 to 8 bytes, from the bytes themselves).
///
/// Properties:
///   1. the head ends just past the first `\n\n` or `\n\r\n`, and nowhere when neither is there;
///      arriving in pieces, with the search resumed 2 bytes before each piece as the listener
///      resumes it, it ends at the same place;
///   2. a request is served (`.path`) exactly when its first line, one trailing CR dropped, is
///      `GET` or `HEAD`, one space, a target of visible ASCII starting with `/`, one space,
///      `HTTP/1.` and a digit; the path is the target up to its first `?`; `.badMethod` only for a
///      line of three single-space-separated parts whose method is neither;
///   3. a served path asked again in a line of its own (`METHOD PATH HTTP/1.1`) parses the same.

import SplitMetrics

let lineFeed = UInt8(ascii: "\n")
let carriageReturn = UInt8(ascii: "\r")

/// The offset past the first occurrence of `pattern`, searched naively.
func pastFirst(_ pattern: [UInt8], in bytes: [UInt8]) -> Int? {
    guard bytes.count >= pattern.count else { return nil }
    for start in 0...(bytes.count - pattern.count) where Array(bytes[start..<start + pattern.count]) == pattern {
        return start + pattern.count
    }
    return nil
}

/// What a served request line is, from the promise (README, man splitmilter METRICS).
func served(_ line: ArraySlice<UInt8>) -> (method: HTTPRequestHead.Method, path: String)? {
    let words = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
    guard words.count == 3 else { return nil }
    let method: HTTPRequestHead.Method
    switch Array(words[0]) {
    case Array("GET".utf8): method = .get
    case Array("HEAD".utf8): method = .head
    default: return nil
    }
    let target = words[1]
    let version = Array(words[2])
    guard target.first == UInt8(ascii: "/"), target.allSatisfy({ (0x21...0x7E).contains($0) }),
        version.count == 8, Array(version.prefix(7)) == Array("HTTP/1.".utf8),
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(version[7])
    else { return nil }
    return (method, String(decoding: target.prefix { $0 != UInt8(ascii: "?") }, as: UTF8.self))
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = input(data, size)

    // 1. The end of the head, whole and in pieces.
    let ends = [
        pastFirst([lineFeed, lineFeed], in: bytes), pastFirst([lineFeed, carriageReturn, lineFeed], in: bytes),
    ]
    let expected = ends.compactMap { $0 }.min()
    let whole = HTTPRequestHead.end(of: bytes)
    require(whole == expected, "end \(String(describing: whole)), expected \(String(describing: expected))")
    var head: [UInt8] = []
    var searched = 0
    var found: Int? = nil
    var offset = 0
    while offset < bytes.count, found == nil {
        let piece = 1 + Int(bytes[offset] % 8)
        head += bytes[offset..<min(bytes.count, offset + piece)]
        offset += piece
        found = HTTPRequestHead.end(of: head, from: searched)
        searched = max(0, head.count - 2)
    }
    require(found == whole, "end in pieces \(String(describing: found)), whole \(String(describing: whole))")

    // 2. The request line.
    var line = bytes.prefix { $0 != lineFeed }
    if line.last == carriageReturn { line = line.dropLast() }
    let parsed = HTTPRequestHead.parse(bytes)
    require(HTTPRequestHead.parse(bytes[..<(whole ?? bytes.count)]) == parsed, "the head's end changed the line")
    switch (parsed, served(line)) {
    case (.path(let path, let method), let promise?):
        require(path == promise.path && method == promise.method, "parsed \(parsed), expected \(promise)")
        // 3. Asked again.
        let again = HTTPRequestHead.parse(Array("\(method.rawValue) \(path) HTTP/1.1\r\n\r\n".utf8))
        require(again == parsed, "\(path.debugDescription) asked again: \(again)")
    case (.path, nil):
        require(false, "served a line that is not GET or HEAD of /…: \(text(line).debugDescription)")
    case (_, let promise?):
        require(false, "did not serve \(promise): \(parsed)")
    case (.badMethod, nil):
        let words = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
        require(
            words.count == 3 && !words[0].isEmpty && !words[0].elementsEqual("GET".utf8)
                && !words[0].elementsEqual("HEAD".utf8),
            "405 for \(text(line).debugDescription)")
    case (.malformed, nil):
        break
    }
    return 0
}
