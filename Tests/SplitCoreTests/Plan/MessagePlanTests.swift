/// The edits of one message: silent copies with ORCPT, deduplication, delete-before-add, the marker.

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
            domain example.net
                user carol.smith rewrite carol
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
}
