/// A channel that keeps what is sent until the MTA waits for an answer (as `SocketChannel` does
/// for `milter-test bench`): the milter must see the same frames in the same order, the session
/// must end with everything written (quit included), and the writes must come down to one per
/// answer awaited.

import Testing

@testable import MilterProtocol

/// Keeps frames until `receive` or `flush`, then hands them to the milter in one piece.
final class CoalescingChannel: FrameChannel {
    let milter: FakeMilter
    private var pending: [Frame] = []
    private(set) var writes = 0

    init(_ milter: FakeMilter) { self.milter = milter }

    func send(_ frames: [Frame]) throws { pending += frames }

    func receive() throws -> Frame {
        try flush()
        return try milter.receive()
    }

    func flush() throws {
        guard !pending.isEmpty else { return }
        writes += 1
        try milter.send(pending)
        pending = []
    }
}

@Suite struct CoalescingTests {
    static let messages = ["a@x", "b@x", "c@x"].map { Transaction.sample(recipients: [$0, "d@x"]) }

    static func silentMilter() -> FakeMilter {
        let milter = FakeMilter()
        milter.negotiation.steps = [
            .noReplyConnect, .noReplyHelo, .noReplyMail, .noReplyRecipient, .noReplyData, .noReplyHeader,
            .noReplyEndOfHeaders, .noReplyBody,
        ]
        return milter
    }

    @Test func theMilterSeesTheSameFramesInOneWritePerAnswer() throws {
        let direct = CoalescingTests.silentMilter()
        let plain = Conversation.run(messages: CoalescingTests.messages, over: direct)
        let channel = CoalescingChannel(CoalescingTests.silentMilter())
        let coalesced = Conversation.run(messages: CoalescingTests.messages, over: channel)
        #expect(coalesced == plain)
        #expect(channel.milter.received == direct.received)
        #expect(channel.milter.codes.hasSuffix("Q"))
        // Negotiation, then one write per end of message, then the last abort-free quit.
        #expect(channel.writes == 1 + CoalescingTests.messages.count + 1)
    }

    @Test func aRefusedConnectionStillWritesItsQuit() {
        let milter = FakeMilter.answering { command in
            if case .connect = command { [.reply(.reject)] } else { [.reply(.continue)] }
        }
        let channel = CoalescingChannel(milter)
        let transcripts = Conversation.run(messages: CoalescingTests.messages, over: channel)
        #expect(transcripts.allSatisfy { $0.verdict == .reject })
        #expect(milter.codes == "OCQ")
    }
}
