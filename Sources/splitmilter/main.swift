/// splitmilter: the daemon's entry point. Blocking the stop signals comes first, before anything
/// can start a thread: libmilter's orderly stop depends on it (SplitDaemon/Signals.swift).

import SplitDaemon

DaemonSignals.blockAll()
SplitmilterCommand.main()
