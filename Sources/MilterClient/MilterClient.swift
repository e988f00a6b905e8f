/// The entry point for talking to a running milter as Postfix would: connect, run the
/// `Conversation` from MilterProtocol over the socket, and hand back the transcript, also
/// as JSON. A connection that cannot be made is reported in the transcript like any other
/// failure, so callers have one value to print.

import Foundation
import MilterProtocol

public enum MilterClient {
    /// Runs one session with one message against the milter at `endpoint`.
    ///
    /// - Parameters:
    ///   - timeout: seconds allowed for connecting and for each later wait to read or write
    ///     (Postfix's `milter_command_timeout` is 30 s).
    ///   - offer: what to offer in negotiation; Postfix's full offer by default.
    public static func run(
        _ transaction: Transaction,
        endpoint: MilterEndpoint,
        timeout: Double = 30,
        offer: Negotiation = .postfixOffer
    ) -> Transcript {
        var transcript: Transcript
        do {
            let channel = try SocketChannel(connectingTo: endpoint, timeout: timeout)
            transcript = Conversation.run(transaction, over: channel, offer: offer)
        } catch {
            transcript = Transcript(offer: offer)
            transcript.failure = String(describing: error)
        }
        // Who failed, then what failed: "milter unix:/run/x.sock: connect: No such file or directory".
        transcript.failure = transcript.failure.map { "milter \(endpoint): \($0)" }
        return transcript
    }

    /// Runs one session that carries several messages (see `Conversation.run(messages:…)`),
    /// handing each message's transcript to `finished` as soon as it is done. A connection
    /// that cannot be made fails every message.
    ///
    /// - Parameter coalescing: keep the frames the milter does not answer until the next one
    ///   it does, and write them together (see `SocketChannel`).
    public static func run(
        messages transactions: [Transaction],
        endpoint: MilterEndpoint,
        timeout: Double = 30,
        offer: Negotiation = .postfixOffer,
        coalescing: Bool = false,
        finished: (Int, Transcript) -> Void = { _, _ in }
    ) -> [Transcript] {
        let named = { (transcript: Transcript) -> Transcript in
            var named = transcript
            named.failure = named.failure.map { "milter \(endpoint): \($0)" }
            return named
        }
        do {
            let channel = try SocketChannel(connectingTo: endpoint, timeout: timeout, coalescing: coalescing)
            return Conversation.run(messages: transactions, over: channel, offer: offer) { index, transcript in
                finished(index, named(transcript))
            }.map(named)
        } catch {
            var failed = Transcript(offer: offer)
            failed.failure = String(describing: error)
            let all = transactions.map { _ in named(failed) }
            for (index, transcript) in all.enumerated() { finished(index, transcript) }
            return all
        }
    }
}

extension Transcript {
    /// The transcript as pretty-printed JSON with sorted keys, so equal sessions give
    /// equal text.
    public func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(self), as: UTF8.self) + "\n"
    }
}
