#!/usr/bin/env python3
"""How long a change takes to hold on the other nodes of a cluster (README: "within 2 seconds").

Three nodes on one PostgreSQL database (127.0.0.2, .3 and .4, as bench/cluster.sh runs them).
Each round makes three changes, one after the other, and measures, from the moment the change
is made, how long until nodes B and C act on it, as a client sees them (a new SMTP connection
every 10 ms to each node):

- directory: `relayward connector add` through node A's configuration (the command line writes
  the store, which notifies the nodes) for a tenant made with `relayward tenant add`; a client
  at the connector's new address is relayed;
- restriction: node A's guard restricts a user (`user_suspicious_per_day = 1`: its first GTUBE
  message is refused 5.1.8 at end of data); B and C refuse that user at MAIL FROM;
- release: `relayward restriction release` through node A; B and C take the user's mail again.

LOAD=1 keeps smtp-source sending through nodes B and C all the while (a new connection per
message, 10 sessions), as a busy cluster on this machine's two cores would.

    python3 bench/propagation.py          ROUNDS=10 LOAD=0 (and LOAD=1)

Needs the PostgreSQL at 127.0.0.1:5432 (trust auth), a release build (cargo build --release
-p relayward) and, with LOAD=1, Postfix's smtp-source (apt-get install postfix).
"""
import os
import shutil
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROUNDS = int(os.environ.get("ROUNDS", "10"))
LOAD = os.environ.get("LOAD", "0") == "1"
RW = os.environ.get("RW", "target/release/relayward")
PG = os.environ.get("PG", "postgres://postgres@127.0.0.1:5432")
DB = "relayward_bench_propagation"
NODES = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
SINK = "127.0.0.1:2526"
POLL = 0.01
GIVE_UP = 30.0
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def config(ip, work):
    users = ", ".join(f'{{ address = "u{i}@contoso.example" }}' for i in range(ROUNDS))
    return f"""
[smtp]
relay_listen = "{ip}:2625"
submission_listen = "{ip}:0"
hostname = "relayward.bench"
max_connections = 30000
max_connections_per_ip = 30000
[http]
listen = "{ip}:8025"
[storage]
data_dir = "{work}/data-{ip}"
database_url = "{PG}/{DB}"
node_name = "{ip}"
[forwarding]
srs_secret = "bench-secret-the-same-on-every-node"
[delivery]
smart_host = "{SINK}"
tls = false
[scan]
bulk_recipients = 100000000
[limits]
user_messages_per_minute = 100000000
user_recipients_per_day = 100000000
unregistered_allowance_per_day = 100000000
[[tenants]]
name = "contoso"
domains = [ {{ name = "contoso.example", verified = true }} ]
connectors = [ {{ name = "bench", ips = ["127.0.0.1/32"], relay_unregistered = true }} ]
users = [ {{ address = "load@contoso.example" }}, {users} ]
limits = {{ user_suspicious_per_day = 1 }}
"""


def psql(sql):
    subprocess.run(["psql", f"{PG}/postgres", "-qc", sql], check=True, capture_output=True)


def cli(work, *args):
    out = subprocess.run([RW, *args, "--config", f"{work}/{NODES[0]}.toml"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"relayward {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout


def probe(node, source, sender, rcpt="probe@remote.example"):
    """One new SMTP connection: the reply code to RCPT TO (or to MAIL FROM when it refuses)."""
    try:
        with smtplib.SMTP(node, 2625, local_hostname="probe.bench", timeout=5,
                          source_address=(source, 0)) as s:
            s.ehlo()
            code, _ = s.mail(sender)
            if code != 250:
                return code
            code, _ = s.rcpt(rcpt)
            s.rset()
            return code
    except (OSError, smtplib.SMTPException):
        return None


def accepted(node):
    """The node's relayward_messages_accepted_total."""
    with urllib.request.urlopen(f"http://{node}:8025/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("relayward_messages_accepted_total"):
                return int(float(line.split()[-1]))
    return 0


def until(nodes, check, t0):
    """Seconds from t0 until check(node) holds, for each node (probed in parallel)."""
    took = {}

    def watch(n):
        while time.monotonic() - t0 < GIVE_UP:
            if check(n):
                took[n] = time.monotonic() - t0
                return
            time.sleep(POLL)
        took[n] = float("inf")

    threads = [threading.Thread(target=watch, args=(n,)) for n in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [took[n] for n in nodes]


def send(node, sender, body):
    with smtplib.SMTP(node, 2625, local_hostname="onprem.bench", timeout=10) as s:
        s.ehlo()
        try:
            s.sendmail(sender, ["victim@remote.example"],
                       f"From: {sender}\r\nTo: victim@remote.example\r\nSubject: t\r\n\r\n{body}\r\n")
            return 250
        except smtplib.SMTPDataError as e:
            return e.smtp_code
        except smtplib.SMTPSenderRefused as e:
            return e.smtp_code


def main():
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    if not os.path.exists(RW):
        sys.exit(f"{RW} is missing: cargo build --release -p relayward")
    work = tempfile.mkdtemp(prefix="relayward-propagation.")
    psql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    psql(f"CREATE DATABASE {DB}")
    procs = []
    try:
        sink = subprocess.Popen(["smtp-sink", "-u", "nobody", "-c", SINK, "4096"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) \
            if shutil.which("smtp-sink") else None
        if sink:
            procs.append(sink)
        for ip in NODES:
            with open(f"{work}/{ip}.toml", "w") as f:
                f.write(config(ip, work))
            out = open(f"{work}/{ip}.out", "w")
            p = subprocess.Popen([RW, "serve", "--config", f"{work}/{ip}.toml"], stdout=out,
                                 stderr=open(f"{work}/{ip}.err", "w"),
                                 env={**os.environ, "RELAYWARD_LOG": "warn"})
            procs.append(p)
            for _ in range(300):
                if "ready" in open(f"{work}/{ip}.out").read():
                    break
                time.sleep(0.1)
            else:
                sys.exit(f"node {ip} did not start: see {work}/{ip}.err")
        if LOAD:
            if not shutil.which("smtp-source"):
                sys.exit("LOAD=1 needs smtp-source (apt-get install postfix)")
            for ip in NODES[1:]:
                procs.append(subprocess.Popen(
                    ["smtp-source", "-c", "-s", "5", "-m", "100000000", "-l", "1000",
                     "-f", "load@contoso.example", "-t", "rcpt@remote.example",
                     "-M", "client.bench", f"{ip}:2625"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            time.sleep(2)
        print(f"== {len(NODES)} nodes on PostgreSQL, {os.cpu_count()} cores, "
              f"{'under load (smtp-source through B and C)' if LOAD else 'idle'}, {ROUNDS} rounds")
        others = NODES[1:]
        start, before = time.monotonic(), sum(accepted(n) for n in others)
        cli(work, "tenant", "add", "probe")   # one made through the store: the file's are read-only
        results = {"directory": [], "restriction": [], "release": []}
        for r in range(ROUNDS):
            source = f"127.0.1.{r + 1}"
            assert probe(others[0], source, "x@fabrikam.example") != 250
            t0 = time.monotonic()
            cli(work, "connector", "add", "probe", f"probe{r}", "--ip", f"{source}/32",
                "--relay-unregistered")
            results["directory"] += until(
                others, lambda n: probe(n, source, "x@fabrikam.example") == 250, t0)

            user = f"u{r}@contoso.example"
            t0 = time.monotonic()
            code = send(NODES[0], user, GTUBE)
            assert code == 550, f"refused at end of data: {code}"
            results["restriction"] += until(
                others, lambda n: probe(n, "127.0.0.1", user) == 550, t0)

            listed = cli(work, "restrictions", "--tenant", "contoso", "--json")
            rid = next(line.split('"id":"')[1].split('"')[0] for line in listed.splitlines()
                       if user in line)
            t0 = time.monotonic()
            cli(work, "restriction", "release", rid, "--note", "bench")
            results["release"] += until(
                others, lambda n: probe(n, "127.0.0.1", user) == 250, t0)
        rate = (sum(accepted(n) for n in others) - before) / (time.monotonic() - start)
        print(f"B and C accepted {rate:.0f} messages a second meanwhile")
        print(f"{'change':<12} {'n':>3} {'median ms':>10} {'p90 ms':>8} {'max ms':>8}")
        for what, xs in results.items():
            ms = sorted(x * 1000 for x in xs)
            p90 = ms[min(len(ms) - 1, int(len(ms) * 0.9))]
            print(f"{what:<12} {len(ms):>3} {statistics.median(ms):>10.0f} {p90:>8.0f} "
                  f"{ms[-1]:>8.0f}")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        psql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        print(f"== work directory: {work}")


if __name__ == "__main__":
    socket.setdefaulttimeout(10)
    main()
