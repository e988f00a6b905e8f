/// glibc's tunables as the process was started with them (`GLIBC_TUNABLES=name=value:name=value`).
///
/// The daemon changes one malloc setting for a moment (`RuleRetirement`) and must put back the
/// value in force, which glibc has no call to read: an administrator's tunable, else glibc's
/// default. glibc reads numbers in C's notation (decimal, `0x` hexadecimal, a leading `0` octal);
/// a value it would not read is not one in force, and nil here.

public enum GlibcTunables {
    /// The number `name` is set to in `setting` (the variable's text), nil when it is not set there;
    /// the last setting of a name wins, as with glibc.
    public static func value(of name: String, in setting: String?) -> Int? {
        guard let setting else { return nil }
        var found: Int?
        for entry in setting.split(separator: ":") {
            let parts = entry.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, parts[0] == name else { continue }
            found = number(parts[1])
        }
        return found
    }

    static func number(_ text: Substring) -> Int? {
        if text.hasPrefix("0x") || text.hasPrefix("0X") { return Int(text.dropFirst(2), radix: 16) }
        if text.count > 1, text.hasPrefix("0") { return Int(text.dropFirst(), radix: 8) }
        return Int(text, radix: 10)
    }
}
