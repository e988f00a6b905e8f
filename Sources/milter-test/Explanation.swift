/// The printed forms of `explain`: a stable text form for people and golden files, and JSON.
///
/// Shadow rules are shown for what they are: their targets `not sent (shadow)`, a shadow guard's
/// refusal as what it `would refuse`, a live target a shadow rule would take the place of as
/// `superseded`, and what the shadow rules would add after the edits, apart from them.

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

    /// What a shadow guard would answer, as `explain` prints it.
    static func describe(shadowRefusal verdict: Verdict) -> String {
        switch verdict {
        case .accept: "would accept"
        case .reject(let reply, let because, _), .tempfail(let reply, let because, _):
            "would refuse \(reply) (\(because))"
        }
    }

    /// A target's line, `copy ADDRESS  [rule]` or `rewrite to ADDRESS  [rule]`, marked when shadow
    /// rules stand in its way.
    static func describe(_ target: PlannedTarget, as kind: MessagePlan.Addition.Kind) -> String {
        let sent = kind == .copy ? "copy" : "rewrite to"
        return switch target.standing {
        case .live: "\(sent) \(target.address)  [\(target.rule)]"
        case .shadow: "shadow \(kind.rawValue) → \(target.address): not sent (shadow)  [\(target.rule)]"
        case .superseded: "\(sent) \(target.address)  [\(target.rule)] (superseded by a shadow rule)"
        }
    }

    /// `copy ADDRESS for <recipient>`: one of the shadow rules' additions.
    static func describe(_ addition: MessagePlan.Addition) -> String {
        "\(addition.kind.rawValue) \(addition.target.address) for \(addition.forRecipient)"
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
            if let refusal = decision.shadowRefusal { out += "  shadow: \(Self.describe(shadowRefusal: refusal))\n" }
            if let note = decision.guardNote { out += decision.guardWaived ? "  \(note)\n" : "  client: \(note)\n" }
            for copy in decision.copies { out += "  \(Self.describe(copy, as: .copy))\n" }
            for rewrite in [decision.supersededRewrite, decision.rewrite].compactMap(\.self) {
                out += "  \(Self.describe(rewrite, as: .rewrite))\n"
            }
            for problem in decision.problems { out += "  problem: \(problem)\n" }
            for problem in decision.shadowProblems { out += "  shadow problem: \(problem)\n" }
        }
        for skip in edits.skipped { out += "skipped \(skip.target.address) for \(skip.forRecipient): \(skip.reason)\n" }
        out += "edits at end of message:\(edits.edits.isEmpty ? " none" : "")\n"
        for edit in edits.edits { out += "  \(edit)\n" }
        guard !edits.shadowAdditions.isEmpty || !edits.shadowSkipped.isEmpty else { return out }
        out += "shadow rules would add (not sent):\n"
        for addition in edits.shadowAdditions { out += "  \(Self.describe(addition))\n" }
        for skip in edits.shadowSkipped {
            out += "  skipped \(skip.target.address) for \(skip.forRecipient): \(skip.reason)\n"
        }
        return out
    }

    struct Target: Codable {
        let address: String
        let rule: String
        /// `live`, `shadow` (not sent) or `superseded` (sent until the shadow rule is live).
        let standing: String
    }

    struct Recipient: Codable {
        let recipient: String
        let selection: String
        let copies: [Target]
        let rewrite: Target?
        let supersededRewrite: Target?
        let problems: [String]
        let shadowProblems: [String]
        let verdict: String
        let shadowRefusal: String?
        let accepted: String?
    }

    struct Document: Codable {
        let recipients: [Recipient]
        let skipped: [String]
        let edits: [String]
        /// What the shadow rules would add and skip: never sent.
        let shadowAdditions: [String]
        let shadowSkipped: [String]
    }

    func json() throws -> String {
        func target(_ t: PlannedTarget) -> Target {
            Target(address: t.address.description, rule: t.rule.location.fileAndLine, standing: "\(t.standing)")
        }
        func skip(_ skip: MessagePlan.Skip) -> String {
            "\(skip.target.address) for \(skip.forRecipient): \(skip.reason)"
        }
        let document = Document(
            recipients: decisions.map {
                Recipient(
                    recipient: $0.recipient, selection: Self.describe($0.selection), copies: $0.copies.map(target),
                    rewrite: $0.rewrite.map(target), supersededRewrite: $0.supersededRewrite.map(target),
                    problems: $0.problems, shadowProblems: $0.shadowProblems, verdict: Self.describe($0.verdict),
                    shadowRefusal: $0.shadowRefusal.map { Self.describe(shadowRefusal: $0) }, accepted: $0.guardNote)
            },
            skipped: edits.skipped.map(skip),
            edits: edits.edits.map(\.description),
            shadowAdditions: edits.shadowAdditions.map(Self.describe),
            shadowSkipped: edits.shadowSkipped.map(skip)
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
