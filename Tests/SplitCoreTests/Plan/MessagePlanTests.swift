/// The edits of one message: silent copies with ORCPT, deduplication, delete-before-add, the marker,
/// and what shadow rules would edit.

import Testing

@testable import SplitCore

@Suite struct MessagePlanTests {
    let set: RuleSet
    let marker = CopyMarker(instance: "mx1.test")

    init() throws {
        set = try rules(
            """
            domain example.org
                copy %u@gapps.example.org
                user allie copy alice@gapps.example.org
                user al copy alice@gapps.example.org
                user frank rewrite frank@mda.example.test
                user fred rewrite frank@mda.example.test
                user zoe rewrite bob@example.org
                shadow user walt rewrite walt@new.example
                shadow user yan copy xavier@gapps.example.org
            domain example.net
                user carol.smith rewrite carol
            domain new.example
                shadow
                copy %u@gw.example
                known alice
            """)
    }

    func plan(_ recipients: [(String, [String])], marked: Bool = false) -> MessagePlan.Edits {
        var plan = MessagePlan()
        plan.carriesMarker = marked
        for (recipient, parameters) in recipients {
            _ = plan.record(set.decide(recipient: recipient, parameters: parameters))
        }
        return plan.edits(marker: marker)
    }

    func plan(_ recipients: String...) -> [String] {
        plan(recipients.map { ($0, []) }).edits.map(\.description)
    }

    @Test func copiesAreSilentAndRememberTheirRecipient() {
        #expect(
            plan("<bob+news@example.org>") == [
                "add-rcpt bob+news@gapps.example.org NOTIFY=NEVER ORCPT=rfc822;bob+2Bnews@example.org",
                "add-header X-Splitmilter-Copied: mx1.test",
            ])
    }

    /// The parameters as the daemon hands them to libmilter: one C string, the same as their text.
    @Test func addedParametersAreWrittenAsOneString() {
        for parameters in [
            AddedParameters.copy(originalRecipient: "bob+2Bnews@example.org"),
            .copy(originalRecipient: String(repeating: "x", count: 5000)), .text("ORCPT=rfc822;x@example.net"),
        ] {
            var written = ""
            parameters.withCString { written = String(cString: $0) }
            #expect(written == parameters.description)
        }
        #expect(
            AddedParameters.copy(originalRecipient: "bob@example.org").description
                == "NOTIFY=NEVER ORCPT=rfc822;bob@example.org")
    }

    @Test func twoRecipientsMappingToOneCopyGiveOneCopy() {
        let edits = plan("<alice@example.org>", "<allie@example.org>", "<AL@example.org>", "<bob@example.org>")
        #expect(
            edits == [
                "add-rcpt alice@gapps.example.org NOTIFY=NEVER ORCPT=rfc822;alice@example.org",
                "add-rcpt bob@gapps.example.org NOTIFY=NEVER ORCPT=rfc822;bob@example.org",
                "add-header X-Splitmilter-Copied: mx1.test",
            ])
    }

    @Test func neverAddsWhatIsAlreadyARecipient() {
        // The client already sent the Google address itself.
        let edits = plan("<alice@example.org>", "<Alice@GAPPS.example.org>")
        #expect(edits == [])
    }

    @Test func rewritesDeleteTheExactArgumentThenAdd() {
        let edits = plan([("<Carol.Smith@example.net>", ["NOTIFY=SUCCESS", "ORCPT=rfc822;x+2By@example.net"])])
        #expect(
            edits.edits.map(\.description) == [
                "del-rcpt <Carol.Smith@example.net>",
                "add-rcpt carol NOTIFY=SUCCESS ORCPT=rfc822;x+2By@example.net",
            ])
        #expect(
            plan("<carol.smith@example.net>") == [
                "del-rcpt <carol.smith@example.net>", "add-rcpt carol ORCPT=rfc822;carol.smith@example.net",
            ])
    }

    @Test func rewriteToAnExistingRecipientOnlyDeletes() {
        #expect(
            plan("<zoe@example.org>", "<bob@example.org>").filter { !$0.hasPrefix("add-rcpt bob@gapps") } == [
                "del-rcpt <zoe@example.org>",
                "add-rcpt zoe@gapps.example.org NOTIFY=NEVER ORCPT=rfc822;zoe@example.org",
                "add-header X-Splitmilter-Copied: mx1.test",
            ])
        let twoToOne = plan("<frank@example.org>", "<fred@example.org>")
        #expect(twoToOne.filter { $0.hasPrefix("add-rcpt frank@mda") }.count == 1)
        #expect(twoToOne.filter { $0.hasPrefix("del-rcpt") }.count == 2)
    }

    @Test func everyDeleteComesBeforeEveryAdd() {
        let edits = plan("<frank@example.org>", "<zoe@example.org>")
        let kinds = edits.map { $0.prefix(3) }
        #expect(kinds == ["del", "del", "add", "add", "add", "add", "add"], "\(edits)")
    }

    @Test func aMarkedMessageGetsRewritesButNoCopies() {
        let result = plan([("<alice@example.org>", []), ("<carol.smith@example.net>", [])], marked: true)
        #expect(
            result.edits.map(\.description) == [
                "del-rcpt <carol.smith@example.net>", "add-rcpt carol ORCPT=rfc822;carol.smith@example.net",
            ])
        #expect(result.skipped.map(\.reason) == ["message was already copied here"])
        #expect(marker.matches(name: "x-splitmilter-copied", value: " mx1.test\r\n"))
        #expect(!marker.matches(name: "X-Splitmilter-Copied", value: "mx2.test"))
        #expect(Array("X-SPLITMILTER-COPIED".utf8).withUnsafeBytes(CopyMarker.isMarkerName))
        #expect(!Array("X-Splitmilter-Copie".utf8).withUnsafeBytes(CopyMarker.isMarkerName))
        #expect(!Array("X-Splitmilter-Copied2".utf8).withUnsafeBytes(CopyMarker.isMarkerName))
        #expect(!Array("X-Splitmilter_Copied".utf8).withUnsafeBytes(CopyMarker.isMarkerName))
    }

    @Test func refusesRecipientsBeyondTheLimit() {
        var plan = MessagePlan()
        let decision = set.decide(recipient: "<a@example.org>")
        var accepted = 0
        for _ in 0..<MessagePlan.maximumRecipients where plan.record(decision) { accepted += 1 }
        #expect(accepted == MessagePlan.maximumRecipients)
        let oneMore = plan.record(decision)
        #expect(!oneMore)
    }

    @Test func resetIsANewPlanThatKeepsASmallArray() {
        var plan = MessagePlan()
        plan.carriesMarker = true
        _ = plan.record(set.decide(recipient: "<shadow@new.example>"))
        #expect(plan.involvesShadow)
        plan.reset()
        #expect(plan.decisions.isEmpty && !plan.carriesMarker && !plan.involvesShadow)
        #expect(plan.decisions.capacity >= MessagePlan.firstCapacity)
        #expect(plan.edits(marker: marker).edits.isEmpty)
        for _ in 0...MessagePlan.keptCapacity { _ = plan.record(set.decide(recipient: "<a@example.org>")) }
        plan.reset()
        #expect(plan.decisions.capacity == 0)
    }

    // Shadow rules: the live edits never hold a shadow target; what the shadow rules would do is
    // what the plan would edit with them live, reported apart.

    func additions(_ additions: [MessagePlan.Addition]) -> [String] {
        additions.map { "\($0.kind.rawValue) \($0.target.address) for \($0.forRecipient)" }
    }

    @Test func aShadowRewriteDeletesNothingAndTheLiveCopyGoes() {
        let edits = plan([("<walt@example.org>", [])])
        #expect(
            edits.edits.map(\.description) == [
                "add-rcpt walt@gapps.example.org NOTIFY=NEVER ORCPT=rfc822;walt@example.org",
                "add-header X-Splitmilter-Copied: mx1.test",
            ])
        #expect(additions(edits.additions) == ["copy walt@gapps.example.org for <walt@example.org>"])
        #expect(additions(edits.shadowAdditions) == ["rewrite walt@new.example for <walt@example.org>"])
        #expect(edits.shadowSkipped.isEmpty)
    }

    /// yan's shadow copy would go where xavier's live copy already goes; yan's own live copy,
    /// which the shadow rule supersedes, is sent.
    @Test func aShadowCopyThatALiveOneMakesIsASkip() {
        for recipients in [
            ["<xavier@example.org>", "<yan@example.org>"], ["<yan@example.org>", "<xavier@example.org>"],
        ] {
            let edits = plan(recipients.map { ($0, []) })
            #expect(
                Set(edits.edits.map(\.description)) == [
                    "add-rcpt xavier@gapps.example.org NOTIFY=NEVER ORCPT=rfc822;xavier@example.org",
                    "add-rcpt yan@gapps.example.org NOTIFY=NEVER ORCPT=rfc822;yan@example.org",
                    "add-header X-Splitmilter-Copied: mx1.test",
                ])
            #expect(edits.shadowAdditions.isEmpty)
            #expect(
                edits.shadowSkipped.map { "\($0.target.address) for \($0.forRecipient): \($0.reason)" } == [
                    "xavier@gapps.example.org for <yan@example.org>: already a recipient or copy"
                ])
        }
    }

    @Test func aShadowOnlyMessageGetsNoEditAndNoMarker() {
        let edits = plan([("<alice@new.example>", [])])
        #expect(edits.edits.isEmpty)
        #expect(edits.additions.isEmpty)
        #expect(additions(edits.shadowAdditions) == ["copy alice@gw.example for <alice@new.example>"])
    }

    /// A recipient the shadow guard would refuse is not in the plan with the shadow rules live.
    @Test func aRecipientAShadowGuardWouldRefuseAddsNothing() {
        let edits = plan([("<mallory@new.example>", []), ("<alice@new.example>", [])])
        #expect(edits.edits.isEmpty)
        #expect(additions(edits.shadowAdditions) == ["copy alice@gw.example for <alice@new.example>"])
    }

    @Test func aMarkedMessageSkipsTheShadowCopiesToo() {
        let edits = plan([("<alice@new.example>", []), ("<bob@example.org>", [])], marked: true)
        #expect(edits.edits.isEmpty)
        #expect(edits.skipped.map(\.reason) == ["message was already copied here"])
        #expect(edits.shadowSkipped.map(\.target.address.description) == ["alice@gw.example"])
        #expect(edits.shadowSkipped.map(\.reason) == ["message was already copied here"])
    }
}
