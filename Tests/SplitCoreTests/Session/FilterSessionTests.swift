/// The per-connection message logic against a fake MTA context that, like libmilter (and pymilter's
/// TestCtx), refuses every envelope edit outside end of message.

import Testing

@testable import SplitCore

/// The MTA side of a session: macros to answer, and a record of replies and edits. An edit made
/// outside `.eom` is refused (thrown) and recorded as a violation.
final class FakeMilter: MilterActions {
    struct Refused: Error {}

    var step = SessionStep.connect
    var macros: [String: String] = ["i": "4XyZ1234"]
    /// The edit, counted from 0, that fails as libmilter's does when the MTA has gone away.
    var failingEdit: Int?
    private(set) var replies: [String] = []
    private(set) var edits: [String] = []
    private(set) var violations: [String] = []

    func macro(_ name: String) -> String? { macros[name] }

    func setReply(code: String, enhanced: String, text: String) throws {
        replies.append("\(code) \(enhanced) \(text)")
    }

    func addRecipient(_ address: String, parameters: AddedParameters) throws {
        try edit("add-rcpt <\(address)> \(parameters)")
    }

    func deleteRecipient(_ recipient: String) throws { try edit("del-rcpt \(recipient)") }

    func addHeader(name: String, value: String) throws { try edit("add-header \(name): \(value)") }

    private func edit(_ text: String) throws {
        guard step == .eom else {
            violations.append("\(step.rawValue): \(text)")
            throw Refused()
        }
        if failingEdit == edits.count { throw Refused() }
        edits.append(text)
    }
}

/// Log lines kept for the checks; `level` is the lowest written, and `built` counts the lines that
/// were made at all.
final class FakeLog: SessionLog, @unchecked Sendable {
    let level: SessionLogLevel
    private(set) var lines: [String] = []

    init(level: SessionLogLevel) { self.level = level }

    func isEnabled(_ level: SessionLogLevel) -> Bool { level >= self.level }
    func write(_ level: SessionLogLevel, _ line: String) { lines.append(line) }
}

/// Every count a session makes, as `OUTCOME@LINE` (`-` for no section), with `shadow ` before
/// what a shadow rule would have done; a section's line is read from the rules' `domains` at the
/// position counted.
final class FakeCounters: SessionCounters, @unchecked Sendable {
    let domains: [DomainRules]
    private(set) var recipients = 0
    private(set) var messages = 0
    private(set) var outcomes: [String] = []

    func countRecipient() { recipients += 1 }
    func countMessage() { messages += 1 }
    init(_ rules: RuleSet) { domains = rules.domains }

    func count(_ outcome: RecipientOutcome, section: Int?, shadow: Bool) {
        let line = section.map { "\(domains[$0].location.line)" } ?? "-"
        outcomes.append("\(shadow ? "shadow " : "")\(outcome.rawValue)@\(line)")
    }
}

extension FilterSession {
    /// RCPT with argv[0] given as a string.
    func recipient(_ raw: String, parameters: [String], actions: some MilterActions) throws -> StepAnswer {
        var raw = raw
        return try raw.withUTF8 { try recipient($0, parameters: parameters, actions: actions) }
    }
}

@Suite struct FilterSessionTests {
    let set: RuleSet
    let marker = CopyMarker(instance: "mx1.test")

    init() throws {
        set = try rules(
            """
            domain example.org
                copy %u@copy.example.org
                except carol
                user carol rewrite carol@mailbox.example.net
            domain users.example
                known alice
            domain shadow.example
                shadow
                copy %u@gw.example
                known alice
            domain mixed.example
                copy %u@copy.example.org
                shadow user dave rewrite dave@new.example
            """)
    }

    func session(log: FakeLog = FakeLog(level: .info), counters: FakeCounters? = nil) -> FilterSession {
        let session = FilterSession(
            rules: set, providers: .empty, marker: marker, log: log, counters: counters ?? FakeCounters(set))
        session.connect(hostName: "client.example", address: IPAddress("192.0.2.1"), port: 40000)
        return session
    }

    /// One message: MAIL, the recipients, the headers, end of message; the fake's step follows.
    func send(
        _ session: FilterSession, _ milter: FakeMilter, to recipients: [String], headers: [(String, String)] = []
    ) throws -> (rcpt: [StepAnswer], eom: StepAnswer) {
        milter.step = .mail
        session.mail(authenticatedAs: nil)
        milter.step = .rcpt
        let answers = try recipients.map { try session.recipient($0, parameters: [], actions: milter) }
        milter.step = .header
        for (name, value) in headers {
            var name = name
            name.withUTF8 { session.header(name: UnsafeRawBufferPointer($0), value: { value }) }
        }
        milter.step = .eom
        return (answers, try session.endOfMessage(actions: milter))
    }

    @Test func editsOnlyAtEndOfMessageInOrder() throws {
        let milter = FakeMilter()
        let answers = try send(
            session(), milter, to: ["<alice@example.org>", "<carol@example.org>", "<bob@else.example>"])
        #expect(answers.rcpt == [.proceed, .proceed, .proceed])
        #expect(answers.eom == .proceed)
        #expect(milter.violations.isEmpty)
        #expect(
            milter.edits == [
                "del-rcpt <carol@example.org>",
                "add-rcpt <carol@mailbox.example.net> ORCPT=rfc822;carol@example.org",
                "add-rcpt <alice@copy.example.org> NOTIFY=NEVER ORCPT=rfc822;alice@example.org",
                "add-header X-Splitmilter-Copied: mx1.test",
            ])
    }

    @Test func aRefusedRecipientGetsItsReplyAndNoEdit() throws {
        let milter = FakeMilter()
        let log = FakeLog(level: .info)
        let answers = try send(session(log: log), milter, to: ["<mallory@users.example>", "<alice@users.example>"])
        #expect(answers.rcpt == [.reject, .proceed])
        #expect(milter.replies == ["550 5.1.1 <mallory@users.example>: Recipient address rejected: User unknown"])
        #expect(milter.edits.isEmpty)
        #expect(log.lines.count == 1)
        #expect(log.lines.first?.hasPrefix("4XyZ1234: reject: rcpt=<mallory@users.example> 550 5.1.1") == true)
    }

    /// The README's promise: the recipient past the limit gets 452 4.5.3 (the client sends it again
    /// in another transaction), and the message with the others goes on with its edits.
    @Test func theRecipientPastTheLimitGets452AndTheMessageGoesOn() throws {
        let milter = FakeMilter()
        let recipients = (0...MessagePlan.maximumRecipients).map { "<user\($0)@example.org>" }
        let answers = try send(session(), milter, to: recipients)
        #expect(answers.rcpt.last == .tempfail)
        #expect(answers.rcpt.dropLast().allSatisfy { $0 == .proceed })
        #expect(milter.replies == ["452 4.5.3 Too many recipients for splitmilter"])
        #expect(answers.eom == .proceed)
        #expect(milter.edits.count == MessagePlan.maximumRecipients + 1)  // the copies and the marker
        #expect(
            !milter.edits.contains(
                "add-rcpt <user10000@copy.example.org> NOTIFY=NEVER ORCPT=rfc822;user10000@example.org"))
    }

    /// A step negotiated as no-reply cannot refuse: its failure is kept and the message refused at
    /// end of message, with no edit; the next message on the connection starts clean.
    @Test func anUnansweredFailureRefusesTheMessageAtEndOfMessage() throws {
        struct Broken: Error, CustomStringConvertible { var description: String { "broken" } }
        let milter = FakeMilter()
        let log = FakeLog(level: .info)
        let session = session(log: log)
        milter.step = .mail
        session.mail(authenticatedAs: nil)
        milter.step = .rcpt
        #expect(try session.recipient("<alice@example.org>", parameters: [], actions: milter) == .proceed)
        milter.step = .header
        #expect(session.failed(.header, Broken(), canAnswer: false, actions: milter) == .proceed)
        #expect(milter.replies.isEmpty)
        milter.step = .eom
        #expect(try session.endOfMessage(actions: milter) == .tempfail)
        #expect(milter.replies == ["451 4.3.0 splitmilter: header: broken"])
        #expect(milter.edits.isEmpty)
        #expect(log.lines.contains("4XyZ1234: refusing the message: header: broken"))

        let next = try send(session, milter, to: ["<alice@example.org>"])
        #expect(next.eom == .proceed)
        #expect(milter.edits.first == "add-rcpt <alice@copy.example.org> NOTIFY=NEVER ORCPT=rfc822;alice@example.org")
    }

    @Test func anAnsweredFailureIsATemporaryRefusalAtOnce() {
        struct Broken: Error {}
        let milter = FakeMilter()
        milter.step = .rcpt
        #expect(session().failed(.rcpt, Broken(), canAnswer: true, actions: milter) == .tempfail)
        #expect(milter.replies == ["451 4.3.0 splitmilter: temporary failure at rcpt"])
    }

    @Test func theMarkerHeaderStopsCopiesButNotRewrites() throws {
        let milter = FakeMilter()
        _ = try send(
            session(), milter, to: ["<alice@example.org>", "<carol@example.org>"],
            headers: [("Subject", "hi"), ("x-splitmilter-copied", " mx1.test")])
        #expect(
            milter.edits == [
                "del-rcpt <carol@example.org>", "add-rcpt <carol@mailbox.example.net> ORCPT=rfc822;carol@example.org",
            ])
        let other = FakeMilter()
        _ = try send(session(), other, to: ["<alice@example.org>"], headers: [("X-Splitmilter-Copied", "mx2.test")])
        #expect(other.edits.count == 2)  // another instance's marker: copied
    }

    @Test func anAbortedMessageLeavesNothingForTheNext() throws {
        let milter = FakeMilter()
        let session = session()
        milter.step = .mail
        session.mail(authenticatedAs: nil)
        milter.step = .rcpt
        _ = try session.recipient("<alice@example.org>", parameters: [], actions: milter)
        session.abort()
        let next = try send(session, milter, to: ["<bob@else.example>"])
        #expect(next.eom == .proceed)
        #expect(milter.edits.isEmpty)
    }

    /// Each copy is logged at info with its rule; at warning nothing is even built.
    @Test func logsEachEditAtInfoAndBuildsNothingAtWarning() throws {
        let info = FakeLog(level: .info)
        _ = try send(session(log: info), FakeMilter(), to: ["<alice@example.org>"])
        #expect(
            info.lines == [
                "4XyZ1234: rcpt=<alice@example.org> copy=alice@copy.example.org rule=/etc/sm/main.rules:2"
            ])
        let quiet = FakeLog(level: .warning)
        let milter = FakeMilter()
        milter.macros = [:]
        _ = try send(session(log: quiet), milter, to: ["<alice@example.org>"])
        #expect(quiet.lines.isEmpty)
        #expect(milter.edits.count == 2)
    }

    /// The counts add up to what Postfix did: refusals when answered, then per target at end of
    /// message: carol's rewrite, bob's copy, its duplicate (bob and Bob map to one copy), none for
    /// alice of users.example (a guard, no copy rule) and for zed of a domain without rules.
    @Test func countsWhatEachRecipientCameTo() throws {
        let counters = FakeCounters(set)
        let recipients = [
            "<mallory@users.example>", "<alice@users.example>", "<bob@example.org>", "<Bob@example.org>",
            "<carol@example.org>", "<zed@else.example>",
        ]
        _ = try send(session(counters: counters), FakeMilter(), to: recipients)
        #expect(counters.recipients == 6)
        #expect(counters.messages == 1)
        #expect(
            counters.outcomes == [
                "refused_unknown_user@5",
                "rewrite@1", "copy@1", "duplicate@1",
                "none@5", "none@-",
            ])
    }

    /// A message refused at end of message, or aborted, counts its refusals and nothing else.
    @Test func aRefusedOrAbortedMessageCountsNoCopies() throws {
        struct Broken: Error {}
        let counters = FakeCounters(set)
        let milter = FakeMilter()
        let session = session(counters: counters)
        milter.step = .mail
        session.mail(authenticatedAs: nil)
        milter.step = .rcpt
        _ = try session.recipient("<alice@example.org>", parameters: [], actions: milter)
        _ = try session.recipient("<mallory@users.example>", parameters: [], actions: milter)
        session.abort()
        _ = try session.recipient("<alice@example.org>", parameters: [], actions: milter)
        _ = session.failed(.header, Broken(), canAnswer: false, actions: milter)
        milter.step = .eom
        #expect(try session.endOfMessage(actions: milter) == .tempfail)
        #expect(counters.recipients == 3)
        #expect(counters.messages == 0)
        #expect(counters.outcomes == ["refused_unknown_user@5"])
    }

    /// An edit that fails at end of message (the MTA went away) stops the rest, and the message,
    /// refused by the shell, counts no copy and no rewrite, not even those already sent.
    @Test func aFailedEditStopsTheRestAndCountsNothing() throws {
        let counters = FakeCounters(set)
        let milter = FakeMilter()
        milter.failingEdit = 2
        #expect(throws: FakeMilter.Refused.self) {
            try send(
                session(counters: counters), milter,
                to: ["<carol@example.org>", "<alice@example.org>", "<bob@example.org>"])
        }
        #expect(
            milter.edits == [
                "del-rcpt <carol@example.org>",
                "add-rcpt <carol@mailbox.example.net> ORCPT=rfc822;carol@example.org",
            ])
        #expect(counters.messages == 0)
        #expect(counters.outcomes.isEmpty)
    }

    /// A message whose every rule is a shadow rule gets no edit and no refusal; what the rules
    /// would do is logged and counted as shadow (mallory's copy is not: she would be refused).
    @Test func anAllShadowMessageIsNotTouched() throws {
        let milter = FakeMilter()
        let log = FakeLog(level: .info)
        let counters = FakeCounters(set)
        let answers = try send(
            session(log: log, counters: counters), milter, to: ["<alice@shadow.example>", "<mallory@shadow.example>"])
        #expect(answers.rcpt == [.proceed, .proceed])
        #expect(answers.eom == .proceed)
        #expect(milter.replies.isEmpty)
        #expect(milter.edits.isEmpty)
        #expect(milter.violations.isEmpty)
        #expect(
            log.lines == [
                "4XyZ1234: shadow reject: rcpt=<mallory@shadow.example> 550 5.1.1 <mallory@shadow.example>: Recipient address rejected: User unknown (not a known user (/etc/sm/main.rules:10))",
                "4XyZ1234: rcpt=<alice@shadow.example> shadow copy=alice@gw.example rule=/etc/sm/main.rules:9",
            ])
        #expect(counters.outcomes == ["shadow refused_unknown_user@7", "shadow copy@7", "none@7", "none@7"])
    }

    /// The live copy goes; the shadow rewrite deletes nothing and is logged and counted as shadow.
    @Test func aShadowRewriteBesideALiveCopy() throws {
        let milter = FakeMilter()
        let log = FakeLog(level: .info)
        let counters = FakeCounters(set)
        _ = try send(session(log: log, counters: counters), milter, to: ["<dave@mixed.example>"])
        #expect(
            milter.edits == [
                "add-rcpt <dave@copy.example.org> NOTIFY=NEVER ORCPT=rfc822;dave@mixed.example",
                "add-header X-Splitmilter-Copied: mx1.test",
            ])
        #expect(
            log.lines == [
                "4XyZ1234: rcpt=<dave@mixed.example> copy=dave@copy.example.org rule=/etc/sm/main.rules:12",
                "4XyZ1234: rcpt=<dave@mixed.example> shadow rewrite=dave@new.example rule=/etc/sm/main.rules:13",
            ])
        #expect(counters.outcomes == ["copy@11", "shadow rewrite@11"])
    }
}
