/// `milter-test ping SOCKET`: a health probe for monit, Nagios or systemd. Connect, send the
/// negotiation Postfix sends (SMFIC_OPTNEG), read the milter's answer, send SMFIC_QUIT, close.
///
/// Invariants:
/// - The answer is judged by MilterProtocol's `Conversation`, the code `send` and `bench` run,
///   never by a second copy of its rules: `NegotiationOnly` carries the negotiation to the socket
///   and stops the conversation at the first frame after it, which Conversation sends only once
///   the answer has passed its checks. Nothing but SMFIC_OPTNEG and SMFIC_QUIT reaches the milter.
/// - --timeout bounds the whole ping, whatever it is blocked in (name lookup, connect, write, a
///   read the milter drips bytes into): the probe runs on a thread of its own, and the command
///   stops waiting for it after that many seconds. Each connect, write and read on the socket is
///   bounded by the same seconds (`SocketChannel`).
/// - Exactly one line: on standard output for a valid answer (none with --quiet), on standard
///   error for anything else.
/// - Exit status: 0 a valid negotiation; 1 the milter answered, but wrongly (bytes that are not
///   a negotiation, a frame cut short, a version or actions it may not ask for); 2 no answer
///   (cannot connect, refused, closed without a byte, timed out), and usage errors.

import ArgumentParser
import Foundation
import MilterClient
import MilterProtocol
import SplitLock
import SplitSystem

extension MilterTest {
    struct Ping: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check that a milter answers: negotiate, then quit.",
            discussion: """
                SOCKET is unix:/path, inet:host:port (Postfix) or inet:port@host (libmilter).

                Connects, sends the negotiation Postfix sends (protocol 6, every action and \
                step offered), reads the milter's answer, sends QUIT and closes. On a valid \
                answer, prints one line on standard output: the socket, "ok", the milter's \
                protocol version, actions and steps, and the time from connecting to the \
                answer. Otherwise prints one line on standard error saying what failed. \
                --timeout bounds the whole ping, and each connect, write and read in it.

                Exit status: 0 the milter answered a valid negotiation; 1 it answered \
                wrongly (not a negotiation, a frame cut short, a version or actions it may \
                not ask for); 2 no answer (cannot connect, connection refused, closed \
                without answering, timed out), or usage.
                """
        )

        @Argument(help: "Where the milter listens.")
        var socket: String

        @Option(help: "Seconds the whole ping may take.")
        var timeout: Double = 5

        @Flag(help: "Print nothing when the milter answers; failures are still printed.")
        var quiet = false

        func validate() throws {
            do {
                _ = try MilterEndpoint(parsing: socket)
            } catch {
                throw ValidationError(String(describing: error))
            }
            guard timeout.isFinite, timeout > 0 else { throw ValidationError("--timeout must be more than 0 seconds") }
        }

        func run() throws {
            let endpoint = try MilterEndpoint(parsing: socket)
            switch Ping.probe(endpoint, timeout: timeout) {
            case .answered(let answer, let milliseconds):
                if !quiet {
                    print(
                        "\(endpoint): ok: milter protocol \(answer.version), "
                            + "actions 0x\(String(answer.actions.rawValue, radix: 16)), "
                            + "steps 0x\(String(answer.steps.rawValue, radix: 16)), "
                            + "\(String(format: "%.1f", milliseconds)) ms"
                    )
                }
            case .wrongAnswer(let reason):
                try Ping.fail("\(endpoint): wrong answer: \(reason)", status: 1)
            case .noAnswer(let reason):
                try Ping.fail("\(endpoint): \(reason)", status: 2)
            }
        }

        private static func fail(_ line: String, status: Int32) throws -> Never {
            var standardError = StandardError()
            print(line, to: &standardError)
            throw ExitCode(status)
        }

        /// How a ping ended.
        enum Outcome: Sendable {
            /// A valid negotiation, and the milliseconds from connecting to the answer.
            case answered(Negotiation, milliseconds: Double)
            /// Bytes came back, but not a negotiation Postfix would take: exit 1.
            case wrongAnswer(String)
            /// Nothing came back: exit 2.
            case noAnswer(String)
        }

        /// Runs `negotiate` on a thread of its own and waits for it at most `timeout` seconds.
        /// A probe still blocked then is left behind: the process exits soon after.
        static func probe(_ endpoint: MilterEndpoint, timeout: Double) -> Outcome {
            let handover = Handover()
            Thread {
                let outcome = negotiate(endpoint, timeout: timeout)
                handover.outcome.withLock { $0 = outcome }
                handover.done.signal()
            }.start()
            guard handover.done.wait(timeout: .now() + timeout) == .success,
                let outcome = handover.outcome.withLock({ $0 })
            else { return .noAnswer(noAnswerWithin(timeout)) }
            return outcome
        }

        /// The ping itself, each system call bounded by `timeout` but not the whole.
        private static func negotiate(_ endpoint: MilterEndpoint, timeout: Double) -> Outcome {
            let start = ContinuousClock.now
            let channel: NegotiationOnly
            do {
                channel = NegotiationOnly(try SocketChannel(connectingTo: endpoint, timeout: timeout))
            } catch {
                return outcome(of: error, timeout: timeout)
            }
            let transcript = Conversation.run(NegotiationOnly.unsent, over: channel)
            if channel.accepted, let answer = transcript.negotiated, let answered = channel.answered {
                return .answered(answer, milliseconds: (answered - start) / .milliseconds(1))
            }
            if let failure = channel.failure { return outcome(of: failure, timeout: timeout) }
            return .wrongAnswer(transcript.failure ?? "no negotiation")
        }

        /// A socket's error: only a `ClientError` can mean that nothing came back; a
        /// `ProtocolError` (from the frame decoder) means bytes did, and were wrong.
        private static func outcome(of error: any Error, timeout: Double) -> Outcome {
            switch error as? ClientError {
            case nil: .wrongAnswer(String(describing: error))
            case .timedOut?: .noAnswer(noAnswerWithin(timeout))
            case .closed(let buffered)? where buffered > 0: .wrongAnswer(String(describing: error))
            case let other?: .noAnswer(String(describing: other))
            }
        }

        private static func noAnswerWithin(_ timeout: Double) -> String {
            "no answer within \(String(format: "%g", timeout)) s"
        }

        /// The probe's outcome, handed from its thread to the one waiting for it.
        private final class Handover: Sendable {
            let outcome = Locked<Outcome?>(nil)
            let done = DispatchSemaphore(value: 0)
        }
    }
}

/// Carries the negotiation to the milter and nothing after it: the first frames Conversation
/// sends once it has taken the answer are replaced by SMFIC_QUIT, and the conversation is
/// stopped there by throwing `Stop`.
final class NegotiationOnly: FrameChannel {
    /// Ends the conversation once the answer has passed.
    struct Stop: Error {}

    /// What Conversation would go on with after the negotiation; never sent.
    static let unsent = Transaction(
        sender: Transaction.Address("<>"),
        recipients: [],
        message: MailMessage(headers: [], body: [])
    )

    private let socket: SocketChannel
    /// When the milter's answer came.
    private(set) var answered: ContinuousClock.Instant?
    /// Whether Conversation took the answer (it went on to the next step).
    private(set) var accepted = false
    /// What failed on the socket, if anything did.
    private(set) var failure: (any Error)?

    init(_ socket: SocketChannel) { self.socket = socket }

    func send(_ frames: [Frame]) throws {
        if answered != nil {
            accepted = true
            // As Postfix ends a session; the answer stands if the milter has already hung up.
            try? socket.send([Command.quit.frame()])
            throw Stop()
        }
        try recording { try socket.send(frames) }
    }

    func receive() throws -> Frame {
        let frame = try recording { try socket.receive() }
        answered = ContinuousClock.now
        return frame
    }

    private func recording<Result>(_ body: () throws -> Result) throws -> Result {
        do {
            return try body()
        } catch {
            failure = error
            throw error
        }
    }
}
