#!/usr/bin/env python3
"""What large messages to a slow destination make the relay hold in memory while it delivers.

    cargo build --release -p relayward
    python3 bench/delivery-memory.py [--relay target/release/relayward] [--messages 40]
        [--size-mb 20] [--domains 3] [--budget 1GB]

Starts a relay on loopback whose smart host is a "tarpit" started here: an SMTP server that
answers up to DATA's 354 and then reads nothing more, as a destination on a very slow link
does. The relay's connector sends `--messages` signed messages of `--size-mb` each, every one
to a recipient in each of `--domains` domains of its own, one message per connection. The script then
waits for the relay's deliveries to start and prints its resident memory (VmRSS) and its peak
(VmHWM) every few seconds, and how many deliveries reached the tarpit's DATA.

`--budget` sets `[delivery] max_body_memory` when the relay knows the key (leave it out to
measure the default). Nothing leaves the machine.
"""

import argparse
import asyncio
import socket
import threading
import time

from relayprobe import Relay, free_port, reply

CONFIG = """
[delivery]
smart_host = "127.0.0.1:{tarpit}"
tls = false
{budget}
[[tenants]]
name = "contoso"
domains = [ {{ name = "contoso.example", kind = "authoritative", verified = true }} ]
connectors = [ {{ name = "onprem", ips = ["127.0.0.1/32"] }} ]
"""


class Tarpit:
    """Answers EHLO, MAIL, RCPT and DATA, then holds the connection without reading."""

    def __init__(self, port):
        self.port = port
        self.datas = 0
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            asyncio.start_server(self.session, "127.0.0.1", self.port))
        self.loop.run_until_complete(server.serve_forever())

    async def session(self, reader, writer):
        writer.write(b"220 tarpit ESMTP\r\n")
        while True:
            line = await reader.readline()
            if not line:
                return
            verb = line[:4].upper()
            if verb == b"DATA":
                writer.write(b"354 go ahead\r\n")
                await writer.drain()
                self.datas += 1
                # Hold the connection without reading: the relay's writes fill the socket.
                await asyncio.sleep(3600)
                return
            writer.write(b"250 ok\r\n" if verb != b"QUIT" else b"221 bye\r\n")
            await writer.drain()


def memory(pid):
    with open(f"/proc/{pid}/status") as st:
        fields = dict(l.split(":", 1) for l in st)
    return (int(fields["VmRSS"].split()[0]) // 1024, int(fields["VmHWM"].split()[0]) // 1024)


def send(port, rcpts, body):
    s = socket.create_connection(("127.0.0.1", port), timeout=300)
    f = s.makefile("rb")
    reply(f)
    for c in ([b"EHLO probe.example", b"MAIL FROM:<alice@contoso.example>"]
              + [b"RCPT TO:<" + r.encode() + b">" for r in rcpts] + [b"DATA"]):
        s.sendall(c + b"\r\n")
        reply(f)
    s.sendall(body + b".\r\n")
    r = reply(f)
    s.sendall(b"QUIT\r\n")
    s.close()
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--relay", default="target/release/relayward")
    ap.add_argument("--messages", type=int, default=40)
    ap.add_argument("--size-mb", type=int, default=20)
    ap.add_argument("--domains", type=int, default=3)
    ap.add_argument("--budget")
    ap.add_argument("--watch", type=int, default=20, help="seconds to watch after sending")
    a = ap.parse_args()

    tarpit_port = free_port()
    tarpit = Tarpit(tarpit_port)
    budget = f'max_body_memory = "{a.budget}"' if a.budget else ""
    relay = Relay(a.relay, CONFIG.format(tarpit=tarpit_port, budget=budget),
                  prefix="rw-delivery-memory-")
    proc, port = relay.proc, relay.port
    try:
        line = b"z" * 998 + b"\r\n"
        body = (b"From: Alice <alice@contoso.example>\r\nTo: bob@d0.example\r\n"
                b"Subject: large\r\n\r\n" + line * (a.size_mb * 1024 * 1024 // len(line)))
        t = time.time()
        # Each message to its own domains, so that no destination's 20 slots bound the test.
        replies = [send(port, [f"bob@m{m}-d{i}.example" for i in range(a.domains)], body)
                   for m in range(a.messages)]
        accepted = sum(r.startswith("250") for r in replies)
        print(f"{a.messages} messages of {len(body) / 1e6:.1f} MB to {a.domains} domains: "
              f"{accepted} accepted in {time.time() - t:.1f} s"
              + ("" if accepted == a.messages else f"; first refusal: "
                 f"{next(r for r in replies if not r.startswith('250'))}"), flush=True)
        for i in range(a.watch // 5 + 1):
            rss, hwm = memory(proc.pid)
            print(f"  +{i * 5:3} s  RSS {rss:6} MiB  peak {hwm:6} MiB  "
                  f"deliveries at DATA {tarpit.datas}", flush=True)
            if i < a.watch // 5:
                time.sleep(5)
    finally:
        relay.stop()


if __name__ == "__main__":
    main()
