/// splitmilter: the daemon's entry point. Parsing the command line starts no thread; blocking the
/// stop signals comes next, before anything can start one: libmilter's orderly stop depends on it
/// (SplitDaemon/Signals.swift). `--check` leaves them unblocked, so Ctrl-C and SIGTERM stop a long
/// check at once.

import SplitDaemon

var command = SplitmilterCommand.parseOrExit()
if !command.check { DaemonSignals.prepare() }
do {
    try command.run()
} catch {
    SplitmilterCommand.exit(withError: error)
}
