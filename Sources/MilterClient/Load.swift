/// Concurrent load on one running milter: the engine under `milter-test bench`. It owns the
/// workers, the timing and the tallies; what a correct answer is belongs to the caller's check.
///
/// Threads, not tasks: each worker holds one blocking connection at a time, as each Postfix
/// smtpd process does. A worker takes the next batch of `messagesPerConnection` messages, runs
/// them over one connection (`MilterClient.run(messages:…)`), times each message, and checks
/// each transcript with its own `MessageCheck` (so a check may cache without a lock); the
/// tallies merge when every worker is done.
///
/// The driver must never be what limits the milter: the connection coalesces the frames the
/// milter does not answer into the next write, and the report says what the driver itself cost
/// (`cpuSeconds`, this process's user and system time during the run; in JSON,
/// `driverCPUMicrosecondsPerMessage`).
///
/// Invariants: every message is sent once and counted once (`LoadReport.messages` equals
/// `LoadPlan.messages`, whatever fails), and a message with a protocol error or a transcript
/// warning always counts as failed, check or no check: a broken milter must never look fast.
/// Nothing here asserts a speed.

import Foundation
import MilterProtocol
import SplitLock

/// Checks the answers to one message: the problems, or nothing when they are right. Each worker
/// has its own, so it may keep state across messages.
public protocol MessageCheck {
    /// The problems of message `number` (0-based), whose transaction and transcript are given.
    mutating func problems(_ number: Int, _ transaction: Transaction, _ transcript: Transcript) -> [String]
}

/// Checks nothing: only protocol errors and warnings fail a message.
public struct NoCheck: MessageCheck {
    public init() {}
    public func problems(_ number: Int, _ transaction: Transaction, _ transcript: Transcript) -> [String] { [] }
}

/// What to send, where, and how hard.
public struct LoadPlan: Sendable {
    public var endpoint: MilterEndpoint
    /// Workers, each with one connection open at a time.
    public var connections: Int
    /// Messages in the whole run.
    public var messages: Int
    /// Messages per milter connection (one SMTP session each).
    public var messagesPerConnection: Int
    /// Seconds allowed for connecting and for each answer.
    public var timeout: Double
    public var offer: Negotiation
    /// Write the frames the milter does not answer together with the next one it does
    /// (`SocketChannel.coalescing`); false writes every frame at once, as Postfix does.
    public var coalescing: Bool
    /// The transaction of message `n` (0-based); connection-level values come from the first
    /// message of each connection.
    public var transaction: @Sendable (Int) -> Transaction

    public init(
        endpoint: MilterEndpoint,
        connections: Int,
        messages: Int,
        messagesPerConnection: Int = 1,
        timeout: Double = 30,
        offer: Negotiation = .postfixOffer,
        coalescing: Bool = true,
        transaction: @escaping @Sendable (Int) -> Transaction
    ) {
        self.endpoint = endpoint
        self.connections = connections
        self.messages = messages
        self.messagesPerConnection = messagesPerConnection
        self.timeout = timeout
        self.offer = offer
        self.coalescing = coalescing
        self.transaction = transaction
    }
}

/// What a load run measured and found.
public struct LoadReport: Sendable, Encodable {
    /// One message that failed, and why.
    public struct Failure: Sendable, Encodable, Hashable {
        /// 0-based, as `LoadPlan.transaction` numbers it.
        public var message: Int
        public var problems: [String]
    }

    public var endpoint: String
    public var connections: Int
    public var messagesPerConnection: Int
    public var messages: Int
    public var recipients: Int
    /// Wall-clock time of the whole run.
    public var seconds: Double
    /// CPU time (user and system) of this process during the run: what the driver cost.
    public var cpuSeconds: Double
    /// Milliseconds per message, from the end of the previous message on the same connection
    /// (or from before connecting, for a connection's first message) to the final answer.
    public var latencyP50: Double
    public var latencyP99: Double
    public var latencyMax: Double
    /// Messages per verdict (`accept`, `reject` …; `error` when the session failed first).
    public var verdicts: [String: Int]
    /// Recipients per RCPT answer: `continue`, `reject`, `tempfail` (an SMTP reply counts by its
    /// first digit), `no reply` (NR_RCPT), `not sent` (NORCPT), `no answer` (the session failed).
    public var recipientAnswers: [String: Int]
    /// Modifications per kind (`add-rcpt`, `del-rcpt`, `add-header` …), over all messages.
    public var modifications: [String: Int]
    /// Messages whose session failed (connection or protocol error).
    public var protocolErrors: Int
    /// Messages with any problem: a protocol error, a transcript warning, or a failed check.
    public var failedMessages: Int
    /// The first failures, by message number.
    public var firstFailures: [Failure]
    /// What every message was checked against, if anything: set by the caller.
    public var check: String?

    public var messagesPerSecond: Double { seconds > 0 ? Double(messages) / seconds : 0 }
    public var recipientsPerSecond: Double { seconds > 0 ? Double(recipients) / seconds : 0 }
    /// The driver's CPU time per message, in microseconds.
    public var cpuMicrosecondsPerMessage: Double { messages > 0 ? cpuSeconds * 1e6 / Double(messages) : 0 }

    private enum Key: String, CodingKey {
        case endpoint, connections, messagesPerConnection, messages, recipients, seconds
        case messagesPerSecond, recipientsPerSecond, latencyMilliseconds, driverCPUMicrosecondsPerMessage
        case verdicts, recipientAnswers, modifications
        case protocolErrors, failedMessages, firstFailures, check
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Key.self)
        try container.encode(endpoint, forKey: .endpoint)
        try container.encode(connections, forKey: .connections)
        try container.encode(messagesPerConnection, forKey: .messagesPerConnection)
        try container.encode(messages, forKey: .messages)
        try container.encode(recipients, forKey: .recipients)
        try container.encode(LoadReport.rounded(seconds, 3), forKey: .seconds)
        try container.encode(LoadReport.rounded(messagesPerSecond, 1), forKey: .messagesPerSecond)
        try container.encode(LoadReport.rounded(recipientsPerSecond, 1), forKey: .recipientsPerSecond)
        try container.encode(
            [
                "p50": LoadReport.rounded(latencyP50, 3), "p99": LoadReport.rounded(latencyP99, 3),
                "max": LoadReport.rounded(latencyMax, 3),
            ],
            forKey: .latencyMilliseconds
        )
        try container.encode(LoadReport.rounded(cpuMicrosecondsPerMessage, 1), forKey: .driverCPUMicrosecondsPerMessage)
        try container.encode(verdicts, forKey: .verdicts)
        try container.encode(recipientAnswers, forKey: .recipientAnswers)
        try container.encode(modifications, forKey: .modifications)
        try container.encode(protocolErrors, forKey: .protocolErrors)
        try container.encode(failedMessages, forKey: .failedMessages)
        try container.encode(firstFailures, forKey: .firstFailures)
        try container.encodeIfPresent(check, forKey: .check)
    }

    /// The figures for people, one fact per line:
    ///
    ///     bench unix:/run/m.sock: 2000 messages, 6000 recipients, 8 connections, 1 message per connection, 1.234 s
    ///     throughput: 1620.7 msgs/s, 4862.2 rcpts/s
    ///     latency per message: p50 4.10 ms, p99 12.31 ms, max 20.07 ms
    ///     verdicts: accept 2000
    ///     rcpt answers: continue 6000
    ///     modifications: add-header 2000, add-rcpt 4000
    ///
    /// then what the messages were checked against, and, when some failed, the count and the
    /// first failures.
    public var text: String {
        var lines = [
            "bench \(endpoint): \(messages) messages, \(recipients) recipients, \(connections) connections, "
                + "\(messagesPerConnection) message\(messagesPerConnection == 1 ? "" : "s") per connection, "
                + "\(LoadReport.fixed(seconds, 3)) s",
            "throughput: \(LoadReport.fixed(messagesPerSecond, 1)) msgs/s, "
                + "\(LoadReport.fixed(recipientsPerSecond, 1)) rcpts/s",
            "latency per message: p50 \(LoadReport.fixed(latencyP50, 2)) ms, "
                + "p99 \(LoadReport.fixed(latencyP99, 2)) ms, max \(LoadReport.fixed(latencyMax, 2)) ms",
            "verdicts: \(LoadReport.counts(verdicts))",
            "rcpt answers: \(LoadReport.counts(recipientAnswers))",
            "modifications: \(LoadReport.counts(modifications))",
        ]
        if let check {
            lines.append("checked against \(check): \(messages - failedMessages) ok, \(failedMessages) failed")
        }
        if failedMessages > 0 {
            lines.append(
                "FAILED: \(failedMessages) of \(messages) messages (\(protocolErrors) protocol or connection errors)"
            )
            for failure in firstFailures {
                lines.append("  message \(failure.message + 1):")
                lines += failure.problems.map { "    \($0)" }
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    private static func counts(_ counts: [String: Int]) -> String {
        counts.isEmpty
            ? "none" : counts.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
    }

    static func fixed(_ value: Double, _ digits: Int) -> String {
        String(format: "%.\(digits)f", value)
    }

    static func rounded(_ value: Double, _ digits: Int) -> Double {
        let scale = pow(10, Double(digits))
        return (value * scale).rounded() / scale
    }
}

public enum MilterLoad {
    /// How many failures a report lists one by one.
    public static let listedFailures = 5

    /// Runs the plan and returns its report.
    ///
    /// - Parameter check: makes one worker's check; called once on each worker thread, whose
    ///   check then sees that worker's messages, in order.
    public static func run(
        _ plan: LoadPlan,
        check: @escaping @Sendable () -> any MessageCheck
    ) -> LoadReport {
        let batchSize = max(1, plan.messagesPerConnection)
        let batches = (plan.messages + batchSize - 1) / batchSize
        let shared = Shared()
        let workers = DispatchGroup()
        let clock = ContinuousClock()
        let startCPU = processCPUSeconds()
        let start = clock.now
        for _ in 0..<max(1, min(plan.connections, batches)) {
            workers.enter()
            let thread = Thread {
                var tally = Tally()
                var checker = check()
                tally.latencies.reserveCapacity(plan.messages / max(1, plan.connections) + batchSize)
                var transactions: [Transaction] = []
                while true {
                    let batch = shared.nextBatch.withLock { next in
                        defer { next += 1 }
                        return next
                    }
                    guard batch < batches else { break }
                    let first = batch * batchSize
                    transactions.removeAll(keepingCapacity: true)
                    for number in first..<min(first + batchSize, plan.messages) {
                        transactions.append(plan.transaction(number))
                    }
                    var previous = clock.now
                    _ = MilterClient.run(
                        messages: transactions,
                        endpoint: plan.endpoint,
                        timeout: plan.timeout,
                        offer: plan.offer,
                        coalescing: plan.coalescing
                    ) { index, transcript in
                        let now = clock.now
                        tally.latencies.append(milliseconds(now - previous))
                        previous = now
                        let number = first + index
                        tally.record(
                            number,
                            transactions[index],
                            transcript,
                            problems: checker.problems(number, transactions[index], transcript)
                        )
                    }
                }
                shared.tallies.withLock { $0.append(tally) }
                workers.leave()
            }
            thread.start()
        }
        workers.wait()
        let seconds = milliseconds(clock.now - start) / 1000
        let cpuSeconds = processCPUSeconds() - startCPU
        var total = Tally()
        for tally in shared.tallies.withLock({ $0 }) { total.merge(tally) }
        let latencies = total.latencies.sorted()
        return LoadReport(
            endpoint: plan.endpoint.description,
            connections: plan.connections,
            messagesPerConnection: batchSize,
            messages: total.messages,
            recipients: total.recipients,
            seconds: seconds,
            cpuSeconds: cpuSeconds,
            latencyP50: percentile(latencies, 0.50),
            latencyP99: percentile(latencies, 0.99),
            latencyMax: latencies.last ?? 0,
            verdicts: Dictionary(uniqueKeysWithValues: total.verdicts.map { ($0.key.rawValue, $0.value) }),
            recipientAnswers: Dictionary(
                uniqueKeysWithValues: total.recipientAnswers.map { ($0.key.rawValue, $0.value) }),
            modifications: total.modifications,
            protocolErrors: total.protocolErrors,
            failedMessages: total.failedMessages,
            firstFailures: Array(total.failures.sorted { $0.message < $1.message }.prefix(listedFailures)),
            check: nil
        )
    }

    /// Runs the plan with no check but the protocol's own.
    public static func run(_ plan: LoadPlan) -> LoadReport {
        run(plan) { NoCheck() }
    }

    /// User plus system time of this process so far, in seconds.
    static func processCPUSeconds() -> Double {
        var usage = rusage()
        guard getrusage(RUSAGE_SELF.rawValue, &usage) == 0 else { return 0 }
        func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }

    /// Nearest rank: the smallest value with at least `fraction` of the values at or below it.
    static func percentile(_ sorted: [Double], _ fraction: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        let rank = Int((fraction * Double(sorted.count)).rounded(.up))
        return sorted[min(max(rank, 1), sorted.count) - 1]
    }

    static func milliseconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) * 1000 + Double(attoseconds) / 1e15
    }

    /// What the workers share: the next batch to take, and the tallies of finished workers.
    private final class Shared: Sendable {
        let nextBatch = Locked(0)
        let tallies = Locked<[Tally]>([])
    }

    /// A message's verdict as counted: `error` when the session failed first.
    enum VerdictWord: String, Sendable {
        case accept, reject, tempfail, discard, error
    }

    /// A RCPT answer as counted (see `LoadReport.recipientAnswers`).
    enum AnswerWord: String, Sendable {
        case `continue`, accept, reject, tempfail, discard, skip
        case connectionFailure = "conn-fail"
        case shutdown
        case noReply = "no reply"
        case notSent = "not sent"
        case noAnswer = "no answer"
    }

    /// One worker's counts; merged once at the end, so the hot path takes no lock.
    private struct Tally: Sendable {
        var messages = 0
        var recipients = 0
        var latencies: [Double] = []
        var verdicts: [VerdictWord: Int] = [:]
        var recipientAnswers: [AnswerWord: Int] = [:]
        var modifications: [String: Int] = [:]
        var protocolErrors = 0
        var failedMessages = 0
        /// At most `listedFailures` per worker; the report keeps the lowest message numbers.
        var failures: [LoadReport.Failure] = []

        mutating func record(_ number: Int, _ transaction: Transaction, _ transcript: Transcript, problems: [String]) {
            messages += 1
            recipients += transaction.recipients.count
            verdicts[transcript.verdict.flatMap { VerdictWord(rawValue: $0.rawValue) } ?? .error, default: 0] += 1
            for step in transcript.steps {
                if case .recipient = step.event { recipientAnswers[Tally.word(step.answer), default: 0] += 1 }
                for modification in step.modifications { modifications[modification.name, default: 0] += 1 }
            }
            guard transcript.failure != nil || !transcript.warnings.isEmpty || !problems.isEmpty else { return }
            var all: [String] = []
            if let failure = transcript.failure {
                protocolErrors += 1
                all.append("error: \(failure)")
            }
            all += transcript.warnings.map { "warning: \($0)" }
            all += problems
            failedMessages += 1
            if failures.count < MilterLoad.listedFailures { failures.append(.init(message: number, problems: all)) }
        }

        static func word(_ answer: Transcript.Answer) -> AnswerWord {
            switch answer {
            case .reply(.replyCode(let reply)): reply.code / 100 == 4 ? .tempfail : .reject
            case .reply(.continue): .continue
            case .reply(.accept): .accept
            case .reply(.reject): .reject
            case .reply(.tempfail): .tempfail
            case .reply(.discard): .discard
            case .reply(.skip): .skip
            case .reply(.connectionFailure): .connectionFailure
            case .reply(.shutdown): .shutdown
            case .noReply: .noReply
            case .notSent: .notSent
            case .none, .missing: .noAnswer
            }
        }

        mutating func merge(_ other: Tally) {
            messages += other.messages
            recipients += other.recipients
            latencies += other.latencies
            verdicts.merge(other.verdicts, uniquingKeysWith: +)
            recipientAnswers.merge(other.recipientAnswers, uniquingKeysWith: +)
            modifications.merge(other.modifications, uniquingKeysWith: +)
            protocolErrors += other.protocolErrors
            failedMessages += other.failedMessages
            failures += other.failures
        }
    }
}
