/// `milter-test send SOCKET …`: play Postfix to any running milter with one message, and
/// print each step's answer and every modification (text or JSON). The session itself is
/// MilterProtocol's `Conversation` over MilterClient's socket; this file only reads options.

import ArgumentParser
import Foundation
import MilterClient
import MilterProtocol

extension MilterTest {
    struct Send: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Send one message to a running milter as Postfix would, and print what it answers.",
            discussion: """
                SOCKET is unix:/path, inet:host:port (Postfix) or inet:port@host (libmilter).

                The session follows Postfix 3.7: negotiate protocol 6 offering every action \
                and step, then connect, helo, mail, each rcpt, data, each header, end of \
                headers, the body in chunks of at most 65535 bytes, end of message, quit. \
                Steps the milter negotiated away are not sent; answers it negotiated away are \
                not awaited. A reject or tempfail at rcpt refuses that recipient only; any \
                other answer but continue ends the session.

                --local-submission connects as Postfix's cleanup(8) does for mail submitted \
                with sendmail(1) when non_smtpd_milters is set: client localhost, address \
                127.0.0.1, port 0. No SMTP client has port 0; splitmilter's guards do not \
                refuse such a session, because Postfix cannot take a refusal there.

                --from and --rcpt take an address and optional ESMTP arguments, for example \
                --rcpt 'bob@example.org NOTIFY=NEVER'. Macros are Postfix's default lists \
                (j, {daemon_name}, {mail_addr}, {rcpt_addr}, …); --macro NAME=VALUE sets or \
                overrides one, and a name no stage lists goes with the connect macros. The \
                queue ID i is sent only when given, from the second rcpt on, as Postfix does.

                Exit status: 0 accept (or continue), 1 reject, 3 tempfail, 4 discard, \
                5 protocol or connection error, 2 usage.
                """
        )

        @Argument(help: "Where the milter listens.")
        var socket: String

        @Option(help: "Envelope sender, with optional ESMTP arguments.")
        var from = "sender@example.org"

        @Option(
            name: .customLong("rcpt"),
            help: "Envelope recipient, with optional ESMTP arguments; repeatable. Default: recipient@example.org."
        )
        var recipients: [String] = []

        @Option(help: "The message as an RFC 5322 file, or - for standard input. Default: a small test message.")
        var message: String?

        @Option(help: "The SMTP client's address, IP[:PORT] (default: 127.0.0.1, port 0).")
        var client: String?

        @Option(help: "The SMTP client's host name as Postfix reports it (default: unknown).")
        var clientName: String?

        @Flag(
            help:
                "Connect as Postfix's cleanup(8) does for mail submitted with sendmail(1) (non_smtpd_milters): client localhost, 127.0.0.1, port 0."
        )
        var localSubmission = false

        @Option(help: "The HELO name.")
        var helo = "localhost"

        @Option(name: .customLong("macro"), help: "A macro value, NAME=VALUE; repeatable.")
        var macros: [String] = []

        @Option(help: "Seconds to wait for the connection and for each answer.")
        var timeout: Double = 30

        @Flag(help: "Print the transcript as JSON.")
        var json = false

        @Flag(help: "Also print the macros sent at each step.")
        var verbose = false

        func validate() throws {
            do {
                _ = try MilterEndpoint(parsing: socket)
                _ = try ClientAddress(parsing: client ?? "127.0.0.1")
                _ = try macros.map(Macro.init(assignment:))
            } catch {
                throw ValidationError(String(describing: error))
            }
            if localSubmission, client != nil || clientName != nil {
                throw ValidationError(
                    "--local-submission is the client localhost, 127.0.0.1, port 0: leave out --client and --client-name"
                )
            }
            guard timeout > 0 else { throw ValidationError("--timeout must be more than 0 seconds") }
        }

        func run() throws {
            let transcript = MilterClient.run(
                try transaction(),
                endpoint: try MilterEndpoint(parsing: socket),
                timeout: timeout
            )
            print(json ? try transcript.json() : transcript.text(macros: verbose), terminator: "")
            let status = Send.exitStatus(transcript)
            if status != 0 { throw ExitCode(status) }
        }

        static func exitStatus(_ transcript: Transcript) -> Int32 {
            switch transcript.verdict {
            case .accept: 0
            case .reject: 1
            case .tempfail: 3
            case .discard: 4
            case nil: 5
            }
        }

        private func transaction() throws -> Transaction {
            let sender = Transaction.Address(parsing: from)
            let recipients = (recipients.isEmpty ? ["recipient@example.org"] : recipients).map(
                Transaction.Address.init(parsing:)
            )
            return Transaction(
                clientName: localSubmission ? "localhost" : clientName ?? "unknown",
                client: localSubmission
                    ? .inet("127.0.0.1", port: 0) : try ClientAddress(parsing: client ?? "127.0.0.1"),
                helo: helo,
                sender: sender,
                recipients: recipients,
                message: try message.map { MailMessage(parsing: try Send.read($0)) }
                    ?? .sample(from: sender, to: recipients),
                macros: try macros.map(Macro.init(assignment:))
            )
        }

        private static func read(_ path: String) throws -> [UInt8] {
            do {
                let data =
                    path == "-"
                    ? FileHandle.standardInput.readDataToEndOfFile()
                    : try Data(contentsOf: URL(fileURLWithPath: path))
                return [UInt8](data)
            } catch {
                throw ValidationError("cannot read message \(path): \(error.localizedDescription)")
            }
        }
    }
}
