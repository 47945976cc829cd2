"""Checks a message's DKIM signatures and ARC chain with dkimpy, an implementation independent
of ours. Usage: dkimpy_check.py MESSAGE RECORDS_JSON; RECORDS_JSON maps DNS names to the TXT
record published there. Prints one JSON object: each signature's verdict and the ARC result."""
import json
import re
import sys

import dkim

message = open(sys.argv[1], "rb").read()
records = json.load(open(sys.argv[2]))


def dnsfunc(name, timeout=5):
    record = records.get(name.decode().rstrip("."))
    return record.encode() if record else None


signatures = [v for (k, v) in dkim.DKIM(message).headers if k.lower() == b"dkim-signature"]
out = {"dkim": [], "arc": None}
for i, value in enumerate(signatures):
    tags = dict(
        (m.group(1), m.group(2))
        for m in re.finditer(rb"(\w+)\s*=\s*([^;]*)", value)
    )
    ok = dkim.DKIM(message).verify(idx=i, dnsfunc=dnsfunc)
    out["dkim"].append({
        "ok": bool(ok),
        "d": tags.get(b"d", b"").decode().strip(),
        "a": tags.get(b"a", b"").decode().strip(),
    })
cv, _results, comment = dkim.arc_verify(message, dnsfunc=dnsfunc)
out["arc"] = {"cv": cv.decode(), "comment": comment}
print(json.dumps(out))
