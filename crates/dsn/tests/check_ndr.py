#!/usr/bin/env python3
"""Reads an NDR with Python's own email package (an independent parser) and prints what it
found as JSON, for crates/dsn/tests/reports.rs to check field by field.

    python3 check_ndr.py FILE
"""
import email
import email.policy
import json
import sys


def main() -> None:
    with open(sys.argv[1], "rb") as f:
        msg = email.message_from_binary_file(f, policy=email.policy.default)
    out = {
        "defects": [type(d).__name__ for d in msg.defects],
        "content_type": msg.get_content_type(),
        "report_type": msg.get_param("report-type"),
        "subject": str(msg["subject"]),
        "to": str(msg["to"]),
        "from": str(msg["from"]),
        "auto_submitted": str(msg["auto-submitted"]),
        "language": str(msg["content-language"]),
        "parts": [],
    }
    parts = msg.get_payload()
    out["parts"] = [p.get_content_type() for p in parts]
    human = parts[0]
    out["human_parts"] = [p.get_content_type() for p in human.get_payload()]
    for p in human.get_payload():
        if p.get_content_type() == "text/plain":
            out["plain"] = p.get_content()
        if p.get_content_type() == "text/html":
            out["html"] = p.get_content()
    status = parts[1]
    # message/delivery-status: a list of header blocks, the per-message one first.
    blocks = status.get_payload()
    out["per_message"] = {k: str(v) for k, v in blocks[0].items()}
    out["per_recipient"] = [{k: str(v) for k, v in b.items()} for b in blocks[1:]]
    returned = parts[2]
    out["returned_type"] = returned.get_content_type()
    if returned.get_content_type() == "message/rfc822":
        inner = returned.get_payload()[0]
        out["returned_subject"] = str(inner["subject"])
        out["returned_body"] = inner.get_content()
    else:
        out["returned_text"] = returned.get_content()
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
