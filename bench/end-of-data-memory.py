# Peak resident memory of the relay while N large messages reach their end of data at once
# (BENCHMARKS.md, "Messages held in memory before their end of data"). Usage:
#   python3 bench/end-of-data-memory.py <relayward binary> <sessions> <MB each>
# Listens on 127.0.0.1:3525/3587/3825; the smart host is a closed port, so nothing is delivered.
import socket, sys, threading, time, subprocess, os, tempfile, re

binary, n, mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
d = tempfile.mkdtemp()
cfg = os.path.join(d, "r.toml")
open(cfg, "w").write(f'''
[smtp]
relay_listen = "127.0.0.1:3525"
submission_listen = "127.0.0.1:3587"
hostname = "relay.test"
[http]
listen = "127.0.0.1:3825"
[storage]
data_dir = "{d}/data"
[delivery]
smart_host = "127.0.0.1:9"
retry_schedule = ["1h"]
[[tenants]]
name = "contoso"
domains = [ {{ name = "contoso.example", kind = "authoritative", verified = true }} ]
connectors = [ {{ name = "on-prem", ips = ["127.0.0.1/32"] }} ]
''')
p = subprocess.Popen([binary, "serve", "--config", cfg], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
p.stdout.readline()
def status(k):
    return int(re.search(k + r":\s+(\d+)", open(f"/proc/{p.pid}/status").read()).group(1)) // 1024
line = ("z" * 998 + "\r\n").encode()
body = b"Subject: big\r\n\r\n" + line * (mb * 1000)
ready = threading.Barrier(n + 1)
go = threading.Barrier(n + 1)
replies = []
def one():
    s = socket.create_connection(("127.0.0.1", 3525))
    f = s.makefile("rb")
    def rd():
        while True:
            l = f.readline()
            if l[3:4] != b"-":
                return l
    rd()
    for c in [b"EHLO onprem\r\n", b"MAIL FROM:<alice@contoso.example>\r\n", b"RCPT TO:<bob@remote.example>\r\n", b"DATA\r\n"]:
        s.sendall(c); rd()
    s.sendall(body)
    ready.wait()
    go.wait()
    s.sendall(b"\r\n.\r\n")
    replies.append(rd().decode().strip())
    s.close()
ts = [threading.Thread(target=one) for _ in range(n)]
[t.start() for t in ts]
ready.wait()
time.sleep(2)
before = status("VmRSS")
hwm_before = status("VmHWM")
go.wait()
[t.join() for t in ts]
time.sleep(1)
print(f"{binary}: {n} x {mb} MB: RSS before the ends {before} MiB (peak so far {hwm_before}); peak after {status('VmHWM')} MiB; replies {sorted(set(r[:3] for r in replies))}")
p.terminate(); p.wait()
