/// One session carrying several messages (`Conversation.run(messages:…)`), against the scripted
/// `FakeMilter` of ConversationTests: the order Postfix keeps (SMFIC_ABORT between messages), one
/// transcript per message handed out as soon as it is done, a connection-level answer for every
/// message, and a failure that spoils the rest.

import Testing

@testable import MilterProtocol

@Suite struct SeveralMessagesTests {
    static let three = ["a@x", "b@x", "c@x"].map { Transaction.sample(recipients: [$0]) }

    @Test func negotiatesOnceAndAbortsBetweenMessages() {
        let milter = FakeMilter()
        var finished: [Int] = []
        let transcripts = Conversation.run(messages: SeveralMessagesTests.three, over: milter) { index, _ in
            finished.append(index)
        }
        #expect(milter.codes == "OCHMRTLLNBEA" + "MRTLLNBEA" + "MRTLLNBEQ")
        #expect(finished == [0, 1, 2])
        #expect(transcripts.count == 3)
        #expect(transcripts.map { $0.steps.first?.event.name } == ["connect", "mail", "mail"])
        #expect(transcripts.map { $0.steps.last?.event.name } == ["abort", "abort", "quit"])
        #expect(transcripts.allSatisfy { $0.verdict == .accept && $0.failure == nil && $0.negotiated != nil })
        #expect(
            transcripts.map { $0.steps.compactMap { if case .recipient(let a) = $0.event { a.address } else { nil } } }
                == [["a@x"], ["b@x"], ["c@x"]])
    }

    @Test func oneMessageIsTheSingleMessageSession() {
        let alone = FakeMilter()
        let single = Conversation.run(.sample(), over: alone)
        let listed = FakeMilter()
        let several = Conversation.run(messages: [.sample()], over: listed)
        #expect(several == [single])
        #expect(listed.codes == alone.codes)
        #expect(Conversation.run(messages: [], over: FakeMilter()).isEmpty)
    }

    @Test func eachMessageKeepsItsOwnVerdictAndModifications() {
        let milter = FakeMilter()
        milter.answer = { command in
            switch command {
            case .mail("<refused@example.org>", _): [.reply(.reject)]
            case .endOfMessage: [.modification(.addHeader(name: "X-Seen", value: "yes")), .reply(.continue)]
            default: [.reply(.continue)]
            }
        }
        var refused = Transaction.sample()
        refused.sender = .init("refused@example.org")
        let transcripts = Conversation.run(messages: [.sample(), refused, .sample()], over: milter)
        #expect(milter.codes == "OCHMRTLLNBEA" + "MA" + "MRTLLNBEQ")
        #expect(transcripts.map(\.verdict) == [.accept, .reject, .accept])
        #expect(transcripts.map(\.modifications.count) == [1, 0, 1])
    }

    @Test func aConnectionLevelAnswerHoldsForEveryMessage() {
        let milter = FakeMilter.answering { command in
            if case .connect = command { return [.reply(.tempfail)] }
            return [.reply(.continue)]
        }
        let transcripts = Conversation.run(messages: SeveralMessagesTests.three, over: milter)
        #expect(milter.codes == "OCQ")
        #expect(transcripts.map(\.verdict) == [.tempfail, .tempfail, .tempfail])
        #expect(transcripts[0].steps.map(\.event.name) == ["connect", "quit"])
        #expect(transcripts.dropFirst().allSatisfy { $0.steps.isEmpty })
        #expect(transcripts[1].reason == "not sent: the connection ended with tempfail")
    }

    @Test func aFailureSpoilsThatMessageAndTheRest() {
        // The first message goes through; the milter hangs up when the second one's MAIL arrives.
        let firstAlone = FakeMilter()
        _ = Conversation.run(messages: [.sample()], over: firstAlone)
        let milter = FakeMilter()
        milter.failAfter = firstAlone.received.count - 1 + 3  // without QUIT; with ABORT, macros, MAIL
        let transcripts = Conversation.run(messages: SeveralMessagesTests.three, over: milter)
        #expect(transcripts.count == 3)
        #expect(transcripts[0].verdict == .accept && transcripts[0].failure == nil)
        #expect(transcripts[1].verdict == nil && transcripts[1].failure == "connection closed by the milter")
        #expect(transcripts[2].failure?.hasPrefix("not sent: the session failed in an earlier message") == true)
        #expect(transcripts[2].steps.isEmpty)
    }
}
