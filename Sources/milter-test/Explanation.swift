/// The printed forms of `explain`: a stable text form for people and golden files, and JSON.

import Foundation
import SplitCore

struct Explanation {
    /// Every recipient's decision, refused ones included.
    let decisions: [RecipientDecision]
    let plan: MessagePlan
    let edits: MessagePlan.Edits

    init(decisions: [RecipientDecision], plan: MessagePlan, marker: CopyMarker) {
        self.decisions = decisions
        self.plan = plan
        self.edits = plan.edits(marker: marker)
    }

    static func describe(_ verdict: Verdict) -> String {
        switch verdict {
        case .accept: "accept"
        case .reject(let reply, let because, _): "reject \(reply) (\(because))"
        case .tempfail(let reply, let because, _): "tempfail \(reply) (\(because))"
        }
    }

    static func describe(_ selection: Selection) -> String {
        switch selection {
        case .noSection: "no domain section"
        case .unusable: "cannot be used"
        case .user(let rule): "user rule \(rule)"
        case .domainWide(let scope): scope.map { "domain rules, selected by \($0)" } ?? "domain rules"
        case .excluded(let rule): "excluded by \(rule)"
        }
    }

    var text: String {
        var out = ""
        for decision in decisions {
            out += "rcpt \(decision.recipient): \(Self.describe(decision.selection))\n"
            if decision.verdict != .accept { out += "  \(Self.describe(decision.verdict))\n" }
            if let note = decision.guardNote { out += decision.guardWaived ? "  \(note)\n" : "  client: \(note)\n" }
            for copy in decision.copies { out += "  copy \(copy.address)  [\(copy.rule)]\n" }
            if let rewrite = decision.rewrite { out += "  rewrite to \(rewrite.address)  [\(rewrite.rule)]\n" }
            for problem in decision.problems { out += "  problem: \(problem)\n" }
        }
        for skip in edits.skipped { out += "skipped \(skip.target.address) for \(skip.forRecipient): \(skip.reason)\n" }
        out += "edits at end of message:\(edits.edits.isEmpty ? " none" : "")\n"
        for edit in edits.edits { out += "  \(edit)\n" }
        return out
    }

    struct Target: Codable {
        let address: String
        let rule: String
    }

    struct Recipient: Codable {
        let recipient: String
        let selection: String
        let copies: [Target]
        let rewrite: Target?
        let problems: [String]
        let verdict: String
        let accepted: String?
    }

    struct Document: Codable {
        let recipients: [Recipient]
        let skipped: [String]
        let edits: [String]
    }

    func json() throws -> String {
        func target(_ t: PlannedTarget) -> Target {
            Target(address: t.address.description, rule: t.rule.location.fileAndLine)
        }
        let document = Document(
            recipients: decisions.map {
                Recipient(
                    recipient: $0.recipient, selection: Self.describe($0.selection), copies: $0.copies.map(target),
                    rewrite: $0.rewrite.map(target), problems: $0.problems, verdict: Self.describe($0.verdict),
                    accepted: $0.guardNote)
            },
            skipped: edits.skipped.map { "\($0.target.address) for \($0.forRecipient): \($0.reason)" },
            edits: edits.edits.map(\.description)
        )
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(document), as: UTF8.self) + "\n"
    }
}

extension Explanation {
    /// What the daemon's engine does with one envelope, as `explain` runs it: `RuleSet.decide`
    /// for each recipient in order, only accepted recipients recorded in the plan (refused ones
    /// never reach end of message), then `MessagePlan.edits` with the instance's marker.
    static func predict(
        ruleSet: RuleSet, recipients: [(raw: String, parameters: [String])], client: ClientContext,
        providers: ProviderNetworks, marked: Bool, marker: CopyMarker
    ) -> Explanation {
        var plan = MessagePlan()
        plan.carriesMarker = marked
        var decisions: [RecipientDecision] = []
        for recipient in recipients {
            let decision = ruleSet.decide(
                recipient: recipient.raw, parameters: recipient.parameters, client: client, providers: providers)
            decisions.append(decision)
            if decision.verdict == .accept { _ = plan.record(decision) }
        }
        return Explanation(decisions: decisions, plan: plan, marker: marker)
    }
}
