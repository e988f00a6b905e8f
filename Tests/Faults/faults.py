#!/usr/bin/env python3
"""Helpers of Tests/Faults/run.sh (standard library only).

  faults.py model MILTER_TEST INSTANCE VERSION=RULES... --users U...   what each user's message must become
  faults.py send --port P --count N --prefix ID --users U... --out FILE  a retrying SMTP sender
  faults.py count --model FILE --sent FILE --sink DIR [--versions a,b]   sink dumps against the model
  faults.py abuse --socket PATH --connections N                          abusive milter connections

The sender retries every message (same Message-ID) on any 4xx reply, refused connection or dropped
connection until it gets 250 for its DATA, as an MTA would; a message with several recipients is sent
all-or-nothing (a recipient refused with 4xx: RSET and the whole message again later). It never sends
a message again after a 250, so a duplicate at the sink is the MTA's or the milter's doing.
"""

import argparse
import json
import os
import random
import re
import smtplib
import socket
import struct
import subprocess
import sys
import threading
import time

DOMAIN = "example.org"


def die(message):
    print(f"faults.py: {message}", file=sys.stderr)
    sys.exit(2)


# ---------------------------------------------------------------------------------------------
# model: `milter-test explain` is the oracle of what each recipient's message becomes.


def explain_user(milter_test, instance, rules, user):
    """The addresses a message to USER@example.org is delivered to under RULES, and whether the
    milter marks it (adds its header): from the edits `milter-test explain` lists."""
    out = subprocess.run(
        [milter_test, "explain", rules, "--rcpt", f"{user}@{DOMAIN}", "--instance", instance],
        capture_output=True, text=True, check=False)
    if out.returncode != 0:
        die(f"milter-test explain {rules} failed: {out.stderr.strip()}")
    delivered = {f"{user}@{DOMAIN}".lower()}
    marked = False
    edits = out.stdout.split("edits at end of message:", 1)
    for line in (edits[1].splitlines() if len(edits) == 2 else []):
        words = line.split()
        if len(words) >= 2 and words[0] == "del-rcpt":
            delivered.discard(words[1].strip("<>").lower())
        elif len(words) >= 2 and words[0] == "add-rcpt":
            delivered.add(words[1].strip("<>").lower())
        elif words and words[0] == "add-header":
            marked = True
    return sorted(delivered), marked


def cmd_model(args):
    model = {}
    for spec in args.versions:
        name, _, rules = spec.partition("=")
        model[name] = {}
        for user in args.users:
            delivered, marked = explain_user(args.milter_test, args.instance, rules, user)
            model[name][user] = {"delivered": delivered, "marked": marked}
    json.dump(model, sys.stdout, indent=1)
    print()


# ---------------------------------------------------------------------------------------------
# send: the retrying sender


class Sender:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.next_index = 0
        self.results = []
        self.tempfails = 0
        self.connect_failures = 0
        self.ambiguous = 0
        self.permanent = 0
        self.first_errors = []
        self.rng = random.Random(args.seed)
        self.deadline = time.monotonic() + args.deadline

    def take(self):
        with self.lock:
            if self.args.stop_file and os.path.exists(self.args.stop_file):
                return None
            if self.args.count and self.next_index >= self.args.count:
                return None
            self.next_index += 1
            index = self.next_index
            k = self.rng.choice(self.args.rcpts_per_message)
            users = self.rng.sample(self.args.users, min(k, len(self.args.users)))
        return index, users

    def note(self, kind, detail):
        with self.lock:
            if kind == "tempfail":
                self.tempfails += 1
            elif kind == "connect":
                self.connect_failures += 1
            elif kind == "ambiguous":
                self.ambiguous += 1
            elif kind == "permanent":
                self.permanent += 1
            if kind != "tempfail" and kind != "connect" and len(self.first_errors) < 10:
                self.first_errors.append(f"{kind}: {detail}")

    def worker(self):
        client = None
        while True:
            item = self.take()
            if item is None:
                break
            index, users = item
            message_id = f"{self.args.prefix}-{index}@faults.test"
            attempts = 0
            while True:
                if time.monotonic() > self.deadline:
                    self.note("permanent", f"{message_id}: gave up at the deadline")
                    return
                attempts += 1
                if client is None:
                    try:
                        client = smtplib.SMTP("127.0.0.1", self.args.port, local_hostname="client.faults.test",
                                              timeout=self.args.timeout)
                        code, _ = client.ehlo()
                        if code != 250:
                            raise smtplib.SMTPResponseException(code, b"EHLO")
                    except (OSError, smtplib.SMTPException):
                        self.note("connect", "connect")
                        client = self.drop(client)
                        time.sleep(self.rng.uniform(0.05, 0.25))
                        continue
                outcome, detail = self.transaction(client, message_id, users)
                if outcome == "sent":
                    with self.lock:
                        self.results.append({"id": message_id, "users": users, "attempts": attempts,
                                             "queue_id": detail})
                    # A session carries several messages now and then, as an MTA's cached connection.
                    if self.rng.random() < 0.5:
                        client = self.drop(client, quit_first=True)
                    break
                self.note(outcome, f"{message_id}: {detail}")
                client = self.drop(client)
                if outcome == "permanent":
                    break
                time.sleep(self.rng.uniform(0.02, 0.2))
            if self.args.pause:
                time.sleep(self.args.pause)
        self.drop(client, quit_first=True)

    @staticmethod
    def drop(client, quit_first=False):
        if client is not None:
            try:
                if quit_first:
                    client.quit()
                else:
                    client.close()
            except (OSError, smtplib.SMTPException):
                try:
                    client.close()
                except OSError:
                    pass
        return None

    def transaction(self, client, message_id, users):
        """One MAIL/RCPT.../DATA: ("sent", queue id), ("tempfail", why), ("ambiguous", why) or
        ("permanent", why)."""
        rcpts = [f"{u}@{DOMAIN}" for u in users]
        body = (f"From: sender@faults.test\r\nTo: {', '.join(rcpts)}\r\nMessage-ID: <{message_id}>\r\n"
                f"Subject: faults {message_id}\r\n\r\nfault test message {message_id}\r\n")
        try:
            code, text = client.mail("sender@faults.test")
            if code != 250:
                return self.classify(code, f"MAIL: {code} {text!r}")
            for rcpt in rcpts:
                code, text = client.rcpt(rcpt)
                if code not in (250, 251):
                    outcome = self.classify(code, f"RCPT {rcpt}: {code} {text!r}")
                    try:
                        client.rset()
                    except (OSError, smtplib.SMTPException):
                        return "tempfail", "RSET failed"
                    return outcome
            code, text = client.docmd("DATA")
            if code != 354:
                return self.classify(code, f"DATA: {code} {text!r}")
        except (OSError, smtplib.SMTPException) as error:
            return "tempfail", f"before the message: {error!r}"
        # From here the message is on its way: a lost reply would leave it unknown whether the
        # server took it.
        try:
            client.send(smtplib.quotedata(body).encode() + b"\r\n.\r\n")
            code, text = client.getreply()
        except (OSError, smtplib.SMTPException) as error:
            return "ambiguous", f"no reply to the end of data: {error!r}"
        if code == 250:
            match = re.search(rb"queued as ([0-9A-Za-z]+)", text)
            return "sent", match.group(1).decode() if match else ""
        return self.classify(code, f"end of data: {code} {text!r}")

    @staticmethod
    def classify(code, detail):
        if 400 <= code < 500 or code == -1:
            return "tempfail", detail
        return "permanent", detail


def cmd_send(args):
    sender = Sender(args)
    threads = [threading.Thread(target=sender.worker) for _ in range(args.workers)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    summary = {"sent": len(sender.results), "tempfails": sender.tempfails,
               "connect_failures": sender.connect_failures, "ambiguous": sender.ambiguous,
               "permanent": sender.permanent, "seconds": round(elapsed, 1), "errors": sender.first_errors}
    with open(args.out, "w", encoding="utf-8") as out:
        json.dump({"summary": summary, "messages": sender.results}, out)
    print(json.dumps(summary))
    return 0 if sender.permanent == 0 and sender.ambiguous == 0 else 1


# ---------------------------------------------------------------------------------------------
# count: what reached the sink against the model


def read_dumps(sink):
    """message id -> list of (addresses, marked) per smtp-sink dump (one dump per SMTP transaction)."""
    found = {}
    for name in os.listdir(sink):
        path = os.path.join(sink, name)
        with open(path, "rb") as dump:
            addresses, message_id, marked = [], None, False
            for raw in dump:
                line = raw.rstrip(b"\r\n")
                if not line:
                    break
                lower = line.lower()
                if lower.startswith(b"x-rcpt-args:"):
                    addresses.append(line.split(None, 2)[1].strip(b"<>").decode().lower())
                elif lower.startswith(b"message-id:"):
                    message_id = line.split(None, 1)[1].strip(b"<> ").decode()
                elif lower.startswith(b"x-splitmilter-copied:"):
                    marked = True
        found.setdefault(message_id, []).append((addresses, marked))
    return found


def expected(model, version, users):
    delivered, marked = set(), False
    for user in users:
        delivered.update(model[version][user]["delivered"])
        marked = marked or model[version][user]["marked"]
    return delivered, marked


def cmd_count(args):
    with open(args.model, encoding="utf-8") as file:
        model = json.load(file)
    with open(args.sent, encoding="utf-8") as file:
        sent = json.load(file)
    versions = args.versions.split(",")
    dumps = read_dumps(args.sink)
    lost, duplicated, half, mixed, problems = 0, 0, 0, 0, []
    per_version = {v: 0 for v in versions}
    per_version["either"] = 0
    deliveries = 0

    def problem(kind, message_id, detail):
        if len(problems) < 12:
            problems.append(f"{kind} {message_id}: {detail}")

    accepted = {m["id"]: m for m in sent["messages"]}
    for message_id, message in accepted.items():
        got = dumps.pop(message_id, [])
        addresses = [a for batch, _ in got for a in batch]
        deliveries += len(addresses)
        if not addresses:
            lost += 1
            problem("lost", message_id, f"to {message['users']}: nothing reached the sink")
            continue
        counts = {a: addresses.count(a) for a in set(addresses)}
        if any(n > 1 for n in counts.values()):
            duplicated += 1
            problem("duplicated", message_id, f"{sorted(counts.items())}")
        fits = []
        for version in versions:
            want, want_marked = expected(model, version, message["users"])
            marks = {marked for _, marked in got}
            if set(counts) == want and marks == {want_marked}:
                fits.append(version)
        if not fits:
            # Half-edited (a copy without its marker, a rewrite without its delete, a copy missing),
            # or edits of two rule versions in one message.
            sources = set()
            for address in counts:
                owners = {v for v in versions
                          if any(address in model[v][u]["delivered"] for u in message["users"])}
                if owners and len(owners) < len(versions):
                    sources |= owners
            if len(sources) > 1:
                mixed += 1
                problem("mixed", message_id, f"to {message['users']}: got {sorted(counts)}")
            else:
                half += 1
                problem("half-edited", message_id,
                        f"to {message['users']}: got {sorted(counts)} marker {[m for _, m in got]}; "
                        f"expected {sorted(expected(model, versions[0], message['users'])[0])}")
        elif len(fits) == 1:
            per_version[fits[0]] += 1
        else:
            per_version["either"] += 1
    unexpected = sum(1 for message_id in dumps if message_id and message_id.startswith(args.prefix))
    for message_id in list(dumps)[:3]:
        if message_id and message_id.startswith(args.prefix):
            problem("unexpected", message_id, "reached the sink, but the sender never got 250 for it")
    report = {"accepted": len(accepted), "deliveries": deliveries, "lost": lost, "duplicated": duplicated,
              "half_edited": half, "mixed_versions": mixed, "unexpected": unexpected,
              "per_version": per_version, "problems": problems}
    print(json.dumps(report))
    bad = lost or duplicated or half or mixed or unexpected
    return 1 if bad else 0


# ---------------------------------------------------------------------------------------------
# abuse: hostile clients at the milter socket

SMFIC_OPTNEG = b"O"


def frame(command, payload=b""):
    return struct.pack(">I", len(payload) + 1) + command + payload


def negotiate():
    # Version 6, every action, every protocol step offered (as Postfix 3.7 offers).
    return frame(SMFIC_OPTNEG, struct.pack(">III", 6, 0x1FF, 0x1FFFFF))


def read_some(sock, limit=65536, wait=0.25):
    """What the milter answers within WAIT seconds (it answers garbage with nothing, or by closing)."""
    try:
        sock.settimeout(wait)
        return sock.recv(limit)
    except OSError:
        return b""


class Abuser:
    KINDS = ["connect-close", "garbage", "huge-length", "zero-length", "half-frame", "negotiate-garbage",
             "negotiate-huge", "mid-transaction", "bad-negotiate", "silent"]

    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.left = args.connections
        self.done = {k: 0 for k in self.KINDS}
        self.refused = 0
        self.rng = random.Random(args.seed)

    def take(self):
        with self.lock:
            if self.left <= 0:
                return None
            self.left -= 1
            return self.rng.choice(self.KINDS), self.rng.getrandbits(32)

    def connect(self):
        """A connection to the milter, or None (counted as refused)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.args.timeout)
        try:
            sock.connect(self.args.socket)
        except OSError:
            sock.close()
            with self.lock:
                self.refused += 1
            return None
        return sock

    def one(self, kind, seed):
        rng = random.Random(seed)
        sock = self.connect()
        if sock is None:
            return
        try:
            if kind == "connect-close":
                pass
            elif kind == "garbage":
                sock.sendall(rng.randbytes(rng.randint(1, 300)))
                read_some(sock)
            elif kind == "huge-length":
                length = rng.choice([0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0x10000000, 65536, 65537, 1 << 20])
                sock.sendall(struct.pack(">I", length) + rng.choice([b"O", b"C", b"B", b"R"]) + rng.randbytes(64))
                read_some(sock)
            elif kind == "zero-length":
                sock.sendall(struct.pack(">I", 0) * rng.randint(1, 4))
                read_some(sock)
            elif kind == "half-frame":
                sock.sendall(struct.pack(">I", rng.randint(20, 4000)) + b"O" + rng.randbytes(rng.randint(0, 10)))
                time.sleep(rng.uniform(0.05, self.args.hold))
            elif kind == "silent":
                time.sleep(rng.uniform(0.05, self.args.hold))
            elif kind == "bad-negotiate":
                sock.sendall(frame(b"O", rng.randbytes(rng.choice([0, 3, 8, 12, 13, 40]))))
                read_some(sock)
            else:
                sock.sendall(negotiate())
                read_some(sock)
                if kind == "negotiate-garbage":
                    for _ in range(rng.randint(1, 5)):
                        command = bytes([rng.randrange(256)])
                        sock.sendall(frame(command, rng.randbytes(rng.randint(0, 200))))
                    read_some(sock)
                elif kind == "negotiate-huge":
                    sock.sendall(struct.pack(">I", rng.choice([0xFFFFFFF0, 1 << 24, 70000])) + b"B" + rng.randbytes(100))
                    read_some(sock)
                elif kind == "mid-transaction":
                    # A session as Postfix starts it, then cut off after MAIL or RCPT or in the body.
                    steps = [
                        frame(b"D", b"C" + b"j\x00mx.faults.test\x00"),
                        frame(b"C", b"client.faults.test\x00" + b"4" + struct.pack(">H", 2525) + b"127.0.0.1\x00"),
                        frame(b"M", b"<sender@faults.test>\x00"),
                        frame(b"R", b"<alice@example.org>\x00"),
                        frame(b"L", b"Subject\x00hello\x00"),
                        frame(b"N"),
                        frame(b"B", rng.randbytes(rng.randint(0, 500))),
                    ]
                    for step in steps[: rng.randint(1, len(steps))]:
                        sock.sendall(step)
                    read_some(sock)
        except OSError:
            pass
        finally:
            sock.close()
        with self.lock:
            self.done[kind] += 1

    def worker(self):
        while True:
            item = self.take()
            if item is None:
                return
            self.one(*item)

    def stall(self, seed):
        """Half a negotiation frame, then silence until the daemon drops the connection (its
        --timeout): counts in self.dropped when it does within --stall-wait seconds."""
        rng = random.Random(seed)
        sock = self.connect()
        if sock is None:
            return
        started = time.monotonic()
        try:
            sock.sendall(struct.pack(">I", 13) + b"O" + rng.randbytes(rng.randint(0, 11)))
            sock.settimeout(self.args.stall_wait)
            if sock.recv(1) == b"":
                with self.lock:
                    self.dropped.append(time.monotonic() - started)
        except OSError:
            pass
        finally:
            sock.close()


def cmd_abuse(args):
    abuser = Abuser(args)
    abuser.dropped = []
    threads = [threading.Thread(target=abuser.stall, args=(i,)) for i in range(args.stalls)]
    threads += [threading.Thread(target=abuser.worker) for _ in range(args.workers)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    summary = {"connections": sum(abuser.done.values()), "refused": abuser.refused,
               "seconds": round(time.monotonic() - started, 1), "stalled": args.stalls,
               "stalled_dropped": len(abuser.dropped),
               "stalled_dropped_after": round(max(abuser.dropped), 1) if abuser.dropped else 0,
               "kinds": abuser.done}
    print(json.dumps(summary))
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    model = sub.add_parser("model")
    model.add_argument("milter_test")
    model.add_argument("instance")
    model.add_argument("versions", nargs="+", help="NAME=RULES")
    model.add_argument("--users", nargs="+", required=True)

    send = sub.add_parser("send")
    send.add_argument("--port", type=int, required=True)
    send.add_argument("--count", type=int, default=0, help="messages (0: until --stop-file exists)")
    send.add_argument("--stop-file")
    send.add_argument("--prefix", required=True)
    send.add_argument("--users", nargs="+", required=True)
    send.add_argument("--rcpts-per-message", type=int, nargs="+", default=[1, 1, 2, 3])
    send.add_argument("--workers", type=int, default=4)
    send.add_argument("--pause", type=float, default=0.0, help="seconds a worker waits between messages")
    send.add_argument("--timeout", type=float, default=30.0)
    send.add_argument("--deadline", type=float, default=600.0, help="seconds before giving up")
    send.add_argument("--seed", type=int, default=1)
    send.add_argument("--out", required=True)

    count = sub.add_parser("count")
    count.add_argument("--model", required=True)
    count.add_argument("--sent", required=True)
    count.add_argument("--sink", required=True)
    count.add_argument("--versions", default="a")
    count.add_argument("--prefix", required=True)

    abuse = sub.add_parser("abuse")
    abuse.add_argument("--socket", required=True)
    abuse.add_argument("--connections", type=int, default=1000)
    abuse.add_argument("--workers", type=int, default=16)
    abuse.add_argument("--hold", type=float, default=1.0, help="longest silence of a stalled client, s")
    abuse.add_argument("--timeout", type=float, default=5.0, help="connect timeout, s")
    abuse.add_argument("--stalls", type=int, default=16, help="connections that wait to be dropped")
    abuse.add_argument("--stall-wait", type=float, default=20.0, help="how long they wait, s")
    abuse.add_argument("--seed", type=int, default=7)

    args = parser.parse_args()
    handler = {"model": cmd_model, "send": cmd_send, "count": cmd_count, "abuse": cmd_abuse}[args.command]
    sys.exit(handler(args))


if __name__ == "__main__":
    main()
