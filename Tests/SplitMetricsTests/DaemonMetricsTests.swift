/// The metrics made once and kept: the section table and its cap over the process's life, the
/// counters a session increments, the rules' gauges and hash, `spf:` sources and readiness, the
/// lock-free histogram's page.

import SplitCore
import Testing

@testable import SplitMetrics

/// Rule files held in memory.
struct MemorySource: RuleSource {
    let files: [String: String]

    struct Missing: Error {}

    func contents(of path: String) throws -> [UInt8] {
        guard let text = files[path] else { throw Missing() }
        return Array(text.utf8)
    }

    func expand(pattern: String) throws -> [String] { [] }
}

func rules(_ text: String, file: String = "/r/main.rules") throws -> RuleSet {
    let parsed = RuleParser.parse(file: file, source: MemorySource(files: [file: text]))
    return try #require(parsed.ruleSet, "\(parsed.diagnostics)")
}

/// `count` sections, `domain dN.example` each with a copy rule, the first on line 1.
func sections(_ count: Int, from first: Int = 0) -> String {
    (first..<first + count).map { "domain d\($0).example\n  copy %u@copy.example\n" }.joined()
}

extension DaemonMetrics {
    var text: String { String(decoding: page(), as: UTF8.self) }

    /// The page's sample lines (no comments) that start with `prefix`.
    func samples(_ prefix: String) -> [String] {
        text.split(separator: "\n").map(String.init).filter { $0.hasPrefix(prefix) }
    }

    /// The value of the one sample named `series` (name and labels as the page writes them).
    func value(_ series: String) -> String? {
        let values = samples(series + " ").map { String($0.dropFirst(series.count + 1)) }
        return values.count == 1 ? values[0] : nil
    }

    /// The value of a section's series.
    func section(_ section: String, _ domain: String, _ action: String, _ mode: String) -> String? {
        value(
            "splitmilter_section_actions_total{section=\"\(section)\",domain=\"\(domain)\",action=\"\(action)\",mode=\"\(mode)\"}"
        )
    }
}

@Suite struct DaemonMetricsTests {
    @Test func sectionSeriesStopAtTheCapAndTheRestCountAsOther() throws {
        let metrics = DaemonMetrics()
        let big = try rules(sections(1_500))
        let counters = metrics.rulesLoaded(big, sha256: "a", reload: false)
        #expect(counters.sections.count == 1_500 && counters.sections.compactMap { $0 }.count == SectionBook.limit)
        // The first 1,000 in rule order have their own series, the rest share "other".
        #expect(counters.sections[0] != nil && counters.sections[1_499] == nil)
        counters.count(.copy, section: 0, shadow: false)
        counters.count(.copy, section: 1_499, shadow: false)
        counters.count(.rewrite, section: 1_499, shadow: true)
        let series = metrics.samples("splitmilter_section_actions_total{")
        #expect(series.count == (SectionBook.limit + 1) * 4)
        #expect(metrics.section("/r/main.rules:1", "d0.example", "copy", "live") == "1")
        #expect(metrics.section("/r/main.rules:1999", "d999.example", "rewrite", "shadow") == "0")
        #expect(metrics.section("other", "other", "copy", "live") == "1")
        #expect(metrics.section("other", "other", "rewrite", "shadow") == "1")
        #expect(!series.contains { $0.contains("d1000.example") })

        // Reloaded: the same sections keep their series (and counts); the cap was used up, so a new
        // section counts as other even though the old ones are gone from the rules.
        let smaller = try rules(sections(1) + sections(1, from: 5_000))
        let again = metrics.rulesLoaded(smaller, sha256: "b", reload: true)
        #expect(again.sections.count == 2 && again.sections.compactMap { $0 }.count == 1)
        again.count(.copy, section: 0, shadow: false)
        #expect(metrics.samples("splitmilter_section_actions_total{").count == (SectionBook.limit + 1) * 4)
        #expect(metrics.section("/r/main.rules:1", "d0.example", "copy", "live") == "2")
    }

    @Test func aSectionIsItsLineAndFirstName() {
        var book = SectionBook(registry: DaemonMetrics().registry)
        let here = SourceLocation(file: "a.rules", line: 3, column: 1)
        let table = book.table(for: [(here, "example.org"), (SourceLocation(file: "a.rules", line: 9), "example.net")])
        #expect(table.count == 2 && book.made.count == 2)
        // Another rule set with the same line and name: the same series, nothing new made.
        let same = book.table(for: [(SourceLocation(file: "a.rules", line: 3, column: 7), "example.org")])
        #expect(same[0] === table[0] && book.made.count == 2)
        // The same line naming another domain is another section.
        _ = book.table(for: [(here, "example.com")])
        #expect(book.made.count == 3)
    }

    @Test func outcomesAndStagesArePreCreatedAndIndexedInOrder() {
        for (position, outcome) in RecipientOutcome.allCases.enumerated() {
            #expect(RuleCounters.outcomeIndex(outcome, shadow: false) == position * 2)
            #expect(RuleCounters.outcomeIndex(outcome, shadow: true) == position * 2 + 1)
        }
        for (position, step) in DaemonMetrics.stages.enumerated() {
            #expect(DaemonMetrics.stageIndex(step) == position)
        }
        let metrics = DaemonMetrics()
        let outcomes = metrics.samples("splitmilter_recipient_outcomes_total{")
        #expect(outcomes.count == RecipientOutcome.allCases.count * 2)
        #expect(metrics.samples("splitmilter_tempfails_total{").count == 8)
        #expect(metrics.samples("splitmilter_callback_errors_total{").count == 8)
        metrics.answeredTempfail(.rcpt)
        metrics.callbackFailed(.eom)
        #expect(metrics.value(#"splitmilter_tempfails_total{stage="rcpt"}"#) == "1")
        #expect(metrics.value(#"splitmilter_callback_errors_total{stage="eom"}"#) == "1")
    }

    @Test func sessionCounters() throws {
        let metrics = DaemonMetrics()
        let set = try rules("domain example.org\n  copy %u@copy.example\n")
        let counters = metrics.rulesLoaded(set, sha256: nil, reload: false)
        counters.countRecipient()
        counters.countRecipient()
        counters.countMessage()
        counters.count(.refusedClient, section: 0, shadow: false)
        counters.count(.none, section: nil, shadow: true)
        #expect(metrics.value("splitmilter_recipients_total") == "2")
        #expect(metrics.value("splitmilter_messages_total") == "1")
        let outcomes = metrics.samples("splitmilter_recipient_outcomes_total{").filter { !$0.hasSuffix(" 0") }
        #expect(outcomes.count == 2)
        #expect(metrics.value(#"splitmilter_recipient_outcomes_total{outcome="none",mode="shadow"}"#) == "1")
        #expect(metrics.value(#"splitmilter_recipient_outcomes_total{outcome="refused_client",mode="live"}"#) == "1")
        // A refusal is not a section action.
        #expect(metrics.samples("splitmilter_section_actions_total{").allSatisfy { $0.hasSuffix(" 0") })
    }

    @Test func theRulesGaugesAndHash() throws {
        let metrics = DaemonMetrics()
        #expect(metrics.unready == "no rules loaded")
        let set = try rules(
            "domain example.org example.net\n  copy %u@copy.example\n  user bob rewrite b@x.example\n")
        let hash = String(repeating: "ab", count: 32)
        _ = metrics.rulesLoaded(set, sha256: hash, reload: false)
        #expect(metrics.unready == nil)
        #expect(metrics.value("splitmilter_rules_domains") == "2.0")
        #expect(metrics.value("splitmilter_rules_users") == "1.0")
        #expect(metrics.value("splitmilter_rules_rules") == "2.0")
        #expect(metrics.value("splitmilter_rules_files") == "1.0")
        #expect(metrics.samples("splitmilter_rules_info{") == ["splitmilter_rules_info{sha256=\"\(hash)\"} 1.0"])
        #expect(metrics.value(#"splitmilter_reloads_total{result="ok"}"#) == "0")
        _ = metrics.rulesLoaded(set, sha256: "cd", reload: true)
        metrics.reloadFailed()
        // One info series: the hash of the rules in force.
        #expect(metrics.samples("splitmilter_rules_info{") == [#"splitmilter_rules_info{sha256="cd"} 1.0"#])
        #expect(metrics.value(#"splitmilter_reloads_total{result="ok"}"#) == "1")
        #expect(metrics.value(#"splitmilter_reloads_total{result="failed"}"#) == "1")
        #expect(metrics.samples("splitmilter_build_info{").count == 1)
    }

    @Test func spfSourcesAndReadiness() throws {
        let metrics = DaemonMetrics()
        let two = try rules(
            "domain example.org\n  copy %u@copy.example\n  allow-clients spf:a.example spf:b.example\n")
        _ = metrics.rulesLoaded(two, sha256: nil, reload: false)
        #expect(metrics.unready == "no list yet for spf:a.example, spf:b.example")
        metrics.spfRefreshed("a.example", succeeded: true, networks: 3)
        metrics.spfRefreshed("b.example", succeeded: false, networks: nil)
        #expect(metrics.unready == "no list yet for spf:b.example")
        metrics.spfRefreshed("b.example", succeeded: false, networks: 2)  // from the cache
        #expect(metrics.unready == nil)
        #expect(metrics.value(#"splitmilter_spf_up{source="a.example"}"#) == "1.0")
        #expect(metrics.value(#"splitmilter_spf_up{source="b.example"}"#) == "0.0")
        #expect(metrics.value(#"splitmilter_spf_networks{source="b.example"}"#) == "2.0")
        #expect(metrics.value(#"splitmilter_spf_refreshes_total{source="b.example",result="failed"}"#) == "2")
        #expect(metrics.value(#"splitmilter_spf_refreshes_total{source="a.example",result="ok"}"#) == "1")
        #expect(metrics.value(#"splitmilter_spf_last_success_timestamp_seconds{source="a.example"}"#) != "0.0")
        #expect(metrics.value(#"splitmilter_spf_last_success_timestamp_seconds{source="b.example"}"#) == "0.0")

        // Reloaded without b and with c: b's gauges go, its counter stays; c is missing until looked up.
        let other = try rules(
            "domain example.org\n  copy %u@copy.example\n  allow-clients spf:a.example spf:c.example\n")
        _ = metrics.rulesLoaded(other, sha256: nil, reload: true)
        #expect(metrics.unready == "no list yet for spf:c.example")
        #expect(metrics.samples(#"splitmilter_spf_up{source="b.example"}"#).isEmpty)
        #expect(metrics.value(#"splitmilter_spf_refreshes_total{source="b.example",result="failed"}"#) == "2")
        // A late lookup of a source no longer in force is not counted.
        metrics.spfRefreshed("b.example", succeeded: true, networks: 1)
        #expect(metrics.samples(#"splitmilter_spf_up{source="b.example"}"#).isEmpty)
    }

    @Test func theHistogramIsCumulativeAndCountsEverything() {
        let histogram = LatencyHistogram(
            name: "h_seconds", help: "help", bounds: [("0.001", 1_000_000), ("0.01", 10_000_000)])
        histogram.record(nanoseconds: 500)
        histogram.record(nanoseconds: 1_000_000)
        histogram.record(nanoseconds: 5_000_000)
        histogram.record(nanoseconds: 2_000_000_000)
        var buffer: [UInt8] = []
        histogram.emit(into: &buffer)
        #expect(
            String(decoding: buffer, as: UTF8.self) == """
                # HELP h_seconds help
                # TYPE h_seconds histogram
                h_seconds_bucket{le="0.001"} 2
                h_seconds_bucket{le="0.01"} 3
                h_seconds_bucket{le="+Inf"} 4
                h_seconds_sum 2.0060005
                h_seconds_count 4

                """)
    }
}
