/// Per-connection state, carried through libmilter's private-data pointer.
///
/// libmilter never runs two callbacks of one connection at once, but successive callbacks may run
/// on different threads, so all state lives here and none in thread-locals. The message plan is
/// reset at MAIL, after EOM and on abort: one SMTP session can carry several messages.

import Logging
import SplitCore

final class Session {
    /// The rules, `spf:` networks, settings and logger this connection started with; a reload or a
    /// refresh affects the next connection.
    let snapshot: Snapshot
    /// The SMFIP_NR_* steps negotiated: their callbacks must answer NOREPLY, whatever happens.
    var noReplySteps: UInt = 0
    var plan = MessagePlan()
    /// The client as xxfi_connect gave it: host name, IP address and TCP port (nil for a non-IP client).
    var clientHostName: String?
    var clientAddress: IPAddress?
    var clientPort: UInt16?
    var authenticatedAs: String?
    /// Set when the plan could not hold every recipient, or a no-reply step failed: the message is
    /// then refused at EOM rather than delivered without its edits.
    var failure: String?

    init(_ snapshot: Snapshot) { self.snapshot = snapshot }

    var rules: RuleSet { snapshot.rules }
    var logger: Logger { snapshot.logger }

    var client: ClientContext {
        ClientContext(
            address: clientAddress, port: clientPort, hostName: clientHostName, authenticatedAs: authenticatedAs)
    }

    func startMessage(authenticatedAs: String?) {
        plan = MessagePlan()
        failure = nil
        self.authenticatedAs = authenticatedAs
    }

    func endMessage() {
        plan = MessagePlan()
        failure = nil
    }
}
