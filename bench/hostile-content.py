#!/usr/bin/env python3
"""What one hostile message makes the relay do after its end of data.

    cargo build --release -p relayward
    python3 bench/hostile-content.py [--relay target/release/relayward] [--only NAME]

Each probe starts a fresh relay on loopback (its own configuration and data directory), sends
one message over SMTP and prints the time from the final "." to the reply, the reply, and the
relay's peak resident memory (VmHWM). Relayed probes come from the connector's address;
"forward" probes are inbound mail to a tenant's user who forwards, which needs no credentials.
Nothing is delivered: the smart host is a closed port, and the relay only queues.
"""

import argparse
import socket
import time

from relayprobe import Relay, reply

CONFIG = """
[delivery]
smart_host = "127.0.0.1:9"
tls = false
[[tenants]]
name = "contoso"
domains = [ {{ name = "contoso.example", kind = "authoritative", verified = true }} ]
connectors = [ {{ name = "onprem", ips = ["127.0.0.1/32"] }} ]
users = [ {{ address = "ana@contoso.example", forward_to = "ana@home.example" }},
{users} ]
routes = [ {{ domain = "contoso.example", host = "127.0.0.1:9" }} ]
"""


def lines(text, n):
    return (text + b"\r\n") * n


SIG = (b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=outside.example; "
       b"s=s; h=from; bh=AAAA; b=AAAA\r\n")


FORWARDERS = [f"u{i}@contoso.example" for i in range(50)]
USERS = ",\n".join(f'  {{ address = "{a}", forward_to = "{a.split("@")[0]}@home.example" }}'
                    for a in FORWARDERS)

# name -> (recipients, header, body)
PROBES = {
    "header-fields": (["bob@remote.example"],
                      b"Subject: x\r\n" + b"".join(b"X-F%d: v\r\n" % i for i in range(2_400_000)),
                      b"hi\r\n"),
    "header-line": (["bob@remote.example"], b"Subject: x\r\nX-Long: " + b"a" * 8_000_000 + b"\r\n",
                    b"hi\r\n"),
    "folded": (["bob@remote.example"], b"Subject: x\r\nX-Fold: a" + b"\r\n b" * 1_000_000 + b"\r\n",
               b"hi\r\n"),
    "signatures-1MB": (["ana@contoso.example"],
                       b"From: ext@outside.example\r\n" + SIG * 10_000,
                       lines(b"z" * 998, 1_000)),
    "signatures-30MB": (["ana@contoso.example"],
                        b"From: ext@outside.example\r\n" + SIG * 10_000,
                        lines(b"z" * 998, 30_000)),
    "part-header": (["bob@remote.example"],
                    b"Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n",
                    b"--b\r\n" + b"".join(b"X-F%d: v\r\n" % i for i in range(2_400_000))
                    + b"Content-Type: text/plain\r\n\r\nhello\r\n--b--\r\n"),
    "words": (["bob@remote.example"], b"Subject: x\r\nContent-Type: text/plain\r\n",
              lines(b"ab cd ef gh", 2_500_000)),
    "forward-50x30MB": (FORWARDERS, b"From: ext@outside.example\r\nSubject: x\r\n",
                        lines(b"z" * 998, 30_000)),
}


def probe(relay, name, rcpts, header, body):
    running = Relay(relay, CONFIG.format(users=USERS), prefix="rw-hostile-")
    proc, port = running.proc, running.port
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=900)
        f = s.makefile("rb")
        reply(f)
        inbound = rcpts[0].endswith("@contoso.example")
        sender = b"ext@outside.example" if inbound else b"alice@contoso.example"
        for c in ([b"EHLO probe.example", b"MAIL FROM:<" + sender + b">"]
                  + [b"RCPT TO:<" + r.encode() + b">" for r in rcpts] + [b"DATA"]):
            s.sendall(c + b"\r\n")
            reply(f)
        s.sendall(header + b"\r\n" + body)
        t = time.time()
        s.sendall(b".\r\n")
        r = reply(f)
        dt = time.time() - t
        with open(f"/proc/{proc.pid}/status") as st:
            hwm = next(int(l.split()[1]) for l in st if l.startswith("VmHWM"))
        s.close()
        print(f"{name:16} {len(header):>10} B header {len(body):>10} B body  "
              f"{dt:8.3f} s  peak {hwm // 1024:5} MiB  {r[:70]}", flush=True)
    finally:
        running.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--relay", default="target/release/relayward")
    ap.add_argument("--only")
    a = ap.parse_args()
    for name, (rcpts, header, body) in PROBES.items():
        if a.only in (None, name):
            probe(a.relay, name, rcpts, header, body)


if __name__ == "__main__":
    main()
