/// What every fuzz target shares: the libFuzzer entry point's plumbing and the way a broken
/// property stops the run.
///
/// A property that does not hold prints what was expected and aborts: libFuzzer then saves the
/// input as `crash-…`, exactly as for a trap, and running the target binary on that file prints
/// the same message again (see Fuzz/README.md).

#if canImport(Glibc)
    import Glibc
#endif

/// Stops the run when `condition` is false, naming the property and the value that broke it.
func require(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) {
    if condition() { return }
    fputs("fuzz property failed: \(message())\n", stderr)
    abort()
}

/// The input as text, invalid UTF-8 replaced (what a String made from these bytes would hold).
func text(_ bytes: ArraySlice<UInt8>) -> String { String(decoding: bytes, as: UTF8.self) }

/// `bytes` cut at every `separator`, empty pieces kept.
func pieces(_ bytes: [UInt8], by separator: UInt8) -> [ArraySlice<UInt8>] {
    bytes.split(separator: separator, omittingEmptySubsequences: false)
}

/// The bytes of one libFuzzer call.
func input(_ data: UnsafePointer<UInt8>?, _ size: Int) -> [UInt8] {
    guard let data, size > 0 else { return [] }
    return Array(UnsafeBufferPointer(start: data, count: size))
}

/// RFC 5321's dot-atom, narrowed to the characters splitmilter promises in an added local part
/// (README, "Decisions and limits"): letters, digits, `. _ - + =`, 1 to 64 octets, no leading,
/// trailing or doubled dot. Written here from the promise, not taken from the code under test.
func isSafeDotAtom(_ local: String) -> Bool {
    let bytes = Array(local.utf8)
    guard (1...64).contains(bytes.count), bytes.first != UInt8(ascii: "."), bytes.last != UInt8(ascii: ".") else {
        return false
    }
    var previous: UInt8 = 0
    for byte in bytes {
        let allowed =
            (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
            || Array("._-+=".utf8).contains(byte)
        if !allowed || (byte == UInt8(ascii: ".") && previous == byte) { return false }
        previous = byte
    }
    return true
}

/// A host name of LDH labels (underscore allowed, as rule files allow it), lower-case, 1 to 255
/// octets, labels of 1 to 63 that neither start nor end with `-`. Again from the promise.
func isLowerCaseHostName(_ name: String) -> Bool {
    let bytes = Array(name.utf8)
    guard (1...255).contains(bytes.count) else { return false }
    for label in bytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false) {
        guard (1...63).contains(label.count), label.first != UInt8(ascii: "-"), label.last != UInt8(ascii: "-")
        else { return false }
        let ok = label.allSatisfy {
            (0x30...0x39).contains($0) || (0x61...0x7A).contains($0) || $0 == UInt8(ascii: "-")
                || $0 == UInt8(ascii: "_")
        }
        if !ok { return false }
    }
    return true
}
