/// `milter-test explain`: what the daemon would do to one envelope, from the same engine code.

import ArgumentParser
import Foundation
import SplitCore
import SplitSystem

extension MilterTest {
    struct Explain: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show which rule fires for each recipient and the edits the daemon would send.",
            discussion: "Exit status: 0 explained, 1 the rule file has errors, 2 usage."
        )

        @Argument(help: "The rule file.")
        var rules: String

        @Option(help: "Envelope sender.")
        var from = "sender@example.com"

        @Option(name: .customLong("rcpt"), help: "Envelope recipient, as RCPT TO would send it (repeatable).")
        var recipients: [String] = []

        @Option(name: .customLong("rcpt-arg"), help: "ESMTP parameter for every recipient, e.g. NOTIFY=SUCCESS.")
        var recipientParameters: [String] = []

        @Option(help: "Instance name for the copy marker header (default: host name).")
        var instance: String?

        @Flag(help: "Treat the message as already copied by this instance (it carries the marker header).")
        var marked = false

        @Flag(help: "Print JSON instead of text.")
        var json = false

        func validate() throws {
            guard !recipients.isEmpty else { throw ValidationError("give at least one --rcpt") }
        }

        func run() throws {
            var standardError = StandardError()
            let loaded = RuleLoader.load(rules)
            for diagnostic in loaded.diagnostics { print(diagnostic, to: &standardError) }
            guard let ruleSet = loaded.ruleSet else { throw ExitCode.failure }
            var plan = MessagePlan()
            plan.carriesMarker = marked
            for recipient in recipients {
                let raw = recipient.hasPrefix("<") ? recipient : "<\(recipient)>"
                _ = plan.record(ruleSet.decide(recipient: raw, parameters: recipientParameters))
            }
            let explanation = Explanation(plan: plan, marker: CopyMarker(instance: instance ?? HostName.current))
            print(json ? try explanation.json() : explanation.text, terminator: "")
        }
    }
}
