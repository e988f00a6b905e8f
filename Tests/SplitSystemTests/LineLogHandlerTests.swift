/// Log lines: control characters escaped so no value can forge a line, priorities and prefixes
/// as syslog, the journal and Postfix's own lines have them.

import Logging
import SplitSystem
import Testing

@Suite struct LineLogHandlerTests {
    @Test func plainTextIsUnchanged() {
        #expect(
            LogText.escaped("4XyZ: rcpt=<alice@example.org> copy=alice@gapps.example.org")
                == "4XyZ: rcpt=<alice@example.org> copy=alice@gapps.example.org")
        #expect(LogText.escaped("Zoë <ü@example.org>") == "Zoë <ü@example.org>")
    }

    @Test func controlCharactersCannotStartALine() {
        let forged = "<a@example.org>\r\nsplitmilter: info: 4XyZ: rcpt=<x> copy=evil@example.net"
        let escaped = LogText.escaped(forged)
        #expect(escaped == "<a@example.org>\\x0D\\x0Asplitmilter: info: 4XyZ: rcpt=<x> copy=evil@example.net")
        #expect(!escaped.unicodeScalars.contains { $0.value < 0x20 })
        #expect(LogText.escaped("a\u{0}b\u{7F}c\u{85}d\u{9B}e\tf") == "a\\x00b\\x7Fc\\x85d\\x9Be\\x09f")
    }

    @Test func prioritiesFollowSyslog() {
        #expect(LogText.priority(.debug) == 7)
        #expect(LogText.priority(.info) == 6)
        #expect(LogText.priority(.warning) == 4)
        #expect(LogText.priority(.error) == 3)
        #expect(LogText.priority(.critical) == 2)
    }

    @Test func prefixesFollowPostfix() {
        #expect(LogText.postfixPrefix(.info) == "")
        #expect(LogText.postfixPrefix(.warning) == "warning: ")
        #expect(LogText.postfixPrefix(.error) == "error: ")
        #expect(LogText.postfixPrefix(.critical) == "fatal: ")
    }
}
