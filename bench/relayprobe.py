"""What the probe scripts in bench/ share: a relay started on loopback with its own
configuration and data directory, and the small pieces of an SMTP client."""

import os
import shutil
import socket
import subprocess
import tempfile

# The start of every probe's configuration: listeners on loopback, the data directory, and no
# TLS out. `port` and `data` are filled in by `start`; the rest of the file follows.
HEAD = """
[smtp]
relay_listen = "127.0.0.1:{port}"
submission_listen = "127.0.0.1:0"
hostname = "relayward.probe"
[http]
listen = "127.0.0.1:0"
[storage]
data_dir = "{data}"
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reply(f):
    """The last line of an SMTP reply read from file `f`."""
    while True:
        line = f.readline().decode(errors="replace")
        if len(line) < 4 or line[3] == " ":
            return line.strip()


class Relay:
    """`relay serve` with HEAD plus `rest` as its configuration, until `stop`."""

    def __init__(self, binary, rest, prefix="rw-probe-"):
        self.work = tempfile.mkdtemp(prefix=prefix)
        self.port = free_port()
        config = os.path.join(self.work, "relayward.toml")
        with open(config, "w") as f:
            f.write(HEAD.format(port=self.port, data=os.path.join(self.work, "data")) + rest)
        env = dict(os.environ, RELAYWARD_LOG="error")
        self.proc = subprocess.Popen([binary, "serve", "--config", config],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        for _ in range(100):
            if b"ready" in self.proc.stdout.readline():
                break

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.work, ignore_errors=True)
