/// `milter-test explain`: what the daemon would do to one envelope, from the same engine code.

import ArgumentParser
import Foundation
import SplitCore
import SplitSystem

extension MilterTest {
    struct Explain: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show which rule fires for each recipient and the edits the daemon would send.",
            discussion: "Exit status: 0 explained, 1 the rule file has errors (or no rows from --database), 2 usage."
        )

        @Argument(help: "The rule file.")
        var rules: String

        @Option(help: "Envelope sender.")
        var from = "sender@example.com"

        @Option(
            name: .customLong("rcpt"),
            help:
                "Envelope recipient, as RCPT TO would send it, optionally followed by its ESMTP parameters: 'bob@example.org NOTIFY=SUCCESS' (repeatable)."
        )
        var recipients: [String] = []

        @Option(name: .customLong("rcpt-arg"), help: "ESMTP parameter for every recipient, e.g. NOTIFY=SUCCESS.")
        var recipientParameters: [String] = []

        @Option(help: "The SMTP client's IP address, for allow-clients rules.")
        var client: String?

        @Flag(
            help:
                "The message is a local submission (sendmail(1) through non_smtpd_milters): Postfix's emulated client localhost, 127.0.0.1, port 0, which no guard refuses."
        )
        var localSubmission = false

        @Option(help: "The SMTP client's HELO name (shown only; no rule uses it).")
        var helo: String?

        @Option(name: .customLong("auth"), help: "The SASL login of the client ({auth_authen}), if it authenticated.")
        var authenticatedAs: String?

        @Option(help: "DNS server for spf: sources, IP[:PORT] (default: the system's resolvers).")
        var dnsServer: String?

        @Option(help: "Instance name for the copy marker header (default: host name).")
        var instance: String?

        @Flag(help: "Treat the message as already copied by this instance (it carries the marker header).")
        var marked = false

        @Flag(help: "Print JSON instead of text.")
        var json = false

        @Flag(help: "Every rule is a shadow rule, as for splitmilter --dry-run: nothing is sent or refused.")
        var dryRun = false

        @Option(help: DatabaseOption.help)
        var database: String?

        func validate() throws {
            guard !recipients.isEmpty else { throw ValidationError("give at least one --rcpt") }
            if let client, IPAddress(client) == nil {
                throw ValidationError("--client '\(client)' is not an IP address")
            }
            if localSubmission, client != nil {
                throw ValidationError("--local-submission is the client 127.0.0.1, port 0: leave out --client")
            }
            if let dnsServer, ResolverDNS(serverSpec: dnsServer) == nil {
                throw ValidationError("--dns-server '\(dnsServer)' is not IPv4[:PORT]")
            }
        }

        /// `ADDR [PARAM…]` as (`<ADDR>`, its parameters followed by every `--rcpt-arg`), like `send`.
        func envelopeRecipient(_ text: String) -> (raw: String, parameters: [String]) {
            let words = text.split(separator: " ").map(String.init)
            let address = words.first ?? ""
            return (address.hasPrefix("<") ? address : "<\(address)>", Array(words.dropFirst()) + recipientParameters)
        }

        func run() throws {
            var standardError = StandardError()
            // As the daemon builds its rules (RuleBuilder): the same inputs, then every rule shadow.
            let loaded = RuleLoader.load(rules, inputs: try DatabaseOption.inputs(database)).result
            for diagnostic in loaded.diagnostics { print(diagnostic, to: &standardError) }
            guard let parsed = loaded.ruleSet else { throw ExitCode.failure }
            let ruleSet = dryRun ? parsed.everyRuleShadow() : parsed
            let local = ClientContext.localSubmission
            let context =
                localSubmission
                ? ClientContext(
                    address: local.address, port: local.port, hostName: local.hostName,
                    authenticatedAs: authenticatedAs)
                : ClientContext(address: client.flatMap(IPAddress.init), authenticatedAs: authenticatedAs)
            let providers = ProviderResolution.resolve(
                ruleSet.spfDomains, dns: dnsServer.flatMap(ResolverDNS.init(serverSpec:)) ?? ResolverDNS())
            for (domain, problem) in providers.failures.sorted(by: { $0.key < $1.key }) {
                print("spf:\(domain): \(problem)", to: &standardError)
            }
            let explanation = Explanation.predict(
                ruleSet: ruleSet,
                recipients: recipients.map(envelopeRecipient),
                client: context, providers: providers.networks, marked: marked,
                marker: CopyMarker(instance: instance ?? HostName.current))
            print(json ? try explanation.json() : explanation.text, terminator: "")
        }
    }
}
