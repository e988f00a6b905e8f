/// Per-connection state, carried through libmilter's private-data pointer.
///
/// libmilter never runs two callbacks of one connection at once, but successive callbacks may run
/// on different threads, so all state lives here and none in thread-locals. The message plan is
/// reset at MAIL, after EOM and on abort: one SMTP session can carry several messages.

import SplitCore

final class Session {
    /// The rules this connection negotiated with; a reload affects the next connection.
    let rules: RuleSet
    var plan = MessagePlan()
    var sender: String = ""
    var client: String = ""

    init(rules: RuleSet) { self.rules = rules }

    func startMessage(sender: String) {
        plan = MessagePlan()
        self.sender = sender
    }

    func endMessage() {
        plan = MessagePlan()
        sender = ""
    }
}
