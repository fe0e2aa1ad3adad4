"""The audit log: every key event is one JSON line with its actor, KEK version and result,
chained by keyed MACs; `kekfs audit verify` names an edited, deleted, inserted or reordered
line. No key material ever appears in it."""

import json
import os

from kekfs_harness import Volume, run_kekfs, make_key_file, read_file, assert_eq
from test_rotation import kekfs_ok, wait_rewrap_finished


def audit_path(v):
    return v.bpath(".kekfs", "audit.log")


def records(v):
    with open(audit_path(v)) as f:
        return [json.loads(line) for line in f]


def make_history(v):
    """init, a failed unlock, unlock, rotate, re-wrap, destroy: a log of several events."""
    v.umount()
    wrong = make_key_file(v.base, name="wrong")
    r = run_kekfs("mount", "--key-file", wrong, v.backing, v.mnt)
    assert r.returncode != 0
    v.mount()
    kekfs_ok("rotate", v.mnt)
    wait_rewrap_finished(v)
    kekfs_ok("keys", "destroy", "1", "--now", v.mnt)
    v.umount()


def verify(v):
    return run_kekfs("audit", "verify", *v.key_args(), v.backing)


def test_audit_records_every_key_event_and_verifies():
    """The events are there, in order, with actors; the chain verifies; no key bytes."""
    with Volume() as v:
        make_history(v)
        ops = [(r["op"], r["result"]) for r in records(v)]
        for want in [("init", "ok"), ("unlock", "failed"), ("unlock", "ok"), ("rotate", "ok"),
                     ("rewrap-start", "ok"), ("rewrap-done", "ok"), ("destroy", "ok")]:
            assert want in ops, "no %r in %r" % (want, ops)
        names = [op for op, _ in ops]
        assert names.index("rotate") < names.index("rewrap-start") < names.index("rewrap-done")
        start = [r for r in records(v) if r["op"] == "rewrap-start"][0]
        assert_eq(start["kek"], 2, "re-wrap start KEK")
        assert start["detail"].endswith(" files"), start
        assert [r["seq"] for r in records(v)] == list(range(1, len(ops) + 1))
        assert all(r["uid"] == 0 and r["program"] for r in records(v))
        r = verify(v)
        assert_eq(r.returncode, 0, "verify: %r" % r.stderr)
        assert b"chain intact" in r.stdout, r.stdout
        text = read_file(audit_path(v))
        key = read_file(v.key_file)
        assert key not in text and key.hex().encode() not in text, "key bytes in the audit log"


def _tampered(v, lines):
    with open(audit_path(v), "w") as f:
        f.writelines(lines)
    r = verify(v)
    assert r.returncode != 0, "tampering was not detected"
    return r.stderr.decode()


def test_audit_tampering_is_found_and_named():
    """Each kind of edit is detected, and the message says which line and what."""
    with Volume() as v:
        make_history(v)
        with open(audit_path(v)) as f:
            orig = f.readlines()
        assert len(orig) >= 5
        edited = list(orig)
        edited[2] = edited[2].replace('"uid":0', '"uid":7')
        assert "line 3" in _tampered(v, edited) and "edited" in _tampered(v, edited)
        assert "missing" in _tampered(v, orig[:2] + orig[3:])
        assert "out of order" in _tampered(v, orig[:2] + [orig[3], orig[2]] + orig[4:])
        assert "out of order" in _tampered(v, orig[:3] + [orig[1]] + orig[3:])
        forged = json.loads(orig[3])
        forged["seq"] = 4
        forged["op"] = "nothing-to-see"
        forged_line = json.dumps(forged, separators=(",", ":")) + "\n"
        assert "edited or inserted" in _tampered(v, orig[:3] + [forged_line] + orig[4:])
        # The documented limit: lines cut from the end go unnoticed.
        with open(audit_path(v), "w") as f:
            f.writelines(orig[:-1])
        assert_eq(verify(v).returncode, 0, "verify after dropping the last line")
