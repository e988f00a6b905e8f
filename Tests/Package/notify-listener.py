#!/usr/bin/python3
"""A stand-in for systemd's notification socket (sd_notify(3)), for Tests/Package/run.sh.

Usage: notify-listener.py NOTIFY_SOCKET MILTER_SOCKET LOG

Binds the datagram socket NOTIFY_SOCKET and writes each message it receives to LOG, one line per
message with its fields joined by spaces. On every READY=1 it connects to the unix socket
MILTER_SOCKET at once and writes "ready-check: accepted" or "ready-check: refused (REASON)":
READY=1 must come only once the milter's socket accepts connections. Runs until killed.
"""

import os
import socket
import sys


def main() -> None:
    notify_path, milter_path, log_path = sys.argv[1:4]
    try:
        os.unlink(notify_path)
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(notify_path)
    # The daemon runs as an unprivileged user; systemd's own socket is writable by every service.
    os.chmod(notify_path, 0o666)
    with open(log_path, "a", buffering=1) as log:
        while True:
            message = listener.recv(4096).decode("utf-8", "replace")
            fields = message.strip().split("\n")
            log.write(" ".join(fields) + "\n")
            if "READY=1" in fields:
                probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    probe.connect(milter_path)
                    log.write("ready-check: accepted\n")
                except OSError as error:
                    log.write(f"ready-check: refused ({error.strerror})\n")
                finally:
                    probe.close()


if __name__ == "__main__":
    main()
