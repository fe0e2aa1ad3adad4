"""The audit log: every key event is one JSON line with its actor, KEK version and result,
chained by keyed MACs; `kekfs audit verify` names an edited, deleted, inserted or reordered
line. No key material ever appears in it."""

import json
import os
import stat

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


AUDIT_KEYS = {"seq", "time", "uid", "pid", "program", "op", "kek", "generation", "detail",
              "result", "note", "mac"}


def strict_records(v):
    """Every line as JSON with no repeated key and no key outside the format."""
    def no_repeats(pairs):
        keys = [k for k, _ in pairs]
        assert len(keys) == len(set(keys)), "a key appears twice: %r" % keys
        return dict(pairs)
    out = []
    with open(audit_path(v)) as f:
        for line in f:
            rec = json.loads(line, object_pairs_hook=no_repeats)
            assert set(rec) <= AUDIT_KEYS, "keys outside the format: %r" % (set(rec) - AUDIT_KEYS)
            out.append(rec)
    return out


def test_audit_pending_forgery_is_not_chained():
    """Issue 14, attack 5: whoever writes the backing directory puts a `time` field with JSON
    keys in it into audit.pending. It is dropped and counted, never chained; a real note is
    chained marked unauthenticated, and `audit verify` says how many such notes there are."""
    with Volume() as v:
        v.umount()
        forged = 'X","kek":9,"op":"init","x":"'  # at most 31 bytes: 0daec58 read %31s
        with open(v.bpath(".kekfs", "audit.pending"), "w") as f:
            f.write("%s 0 1 kekfs\n" % forged)
            f.write("2026-11-22T13:18:58Z 1000 4242 kekfs\n")
        v.mount()
        recs = strict_records(v)
        notes = [r for r in recs if r.get("note") == "unauthenticated"]
        assert_eq(len(notes), 1, "unauthenticated notes in %r" % recs)
        assert_eq((notes[0]["time"], notes[0]["uid"], notes[0]["pid"], notes[0]["op"]),
                  ("2026-11-22T13:18:58Z", 1000, 4242, "unlock"), "the note")
        assert not any(r["kek"] == 9 or r["time"] == "X" for r in recs), recs
        refused = [r for r in recs if r["op"] == "note-refused"]
        assert_eq([r["detail"] for r in refused], ["1 lines of audit.pending dropped"], "refused")
        assert not os.path.exists(v.bpath(".kekfs", "audit.pending"))
        out = kekfs_ok("audit", "verify", v.mnt)
        assert "chain intact; 1 of them unauthenticated notes" in out, out


def test_audit_files_fifo_and_symlink_neither_hang_nor_are_followed():
    """Issue 14, attacks 2 and 4 for audit.log and audit.pending: a FIFO there does not hang
    `kekfs mount` (right key or wrong), and a symlink to a file outside is not written."""
    with Volume() as v:
        v.umount()
        pending = v.bpath(".kekfs", "audit.pending")
        os.mkfifo(pending)
        try:
            _fifo_and_symlink(v, pending)
        finally:
            if os.path.lexists(pending) and stat.S_ISFIFO(os.lstat(pending).st_mode):
                os.close(os.open(pending, os.O_RDWR | os.O_NONBLOCK))  # frees a blocked opener


def _fifo_and_symlink(v, pending):
    wrong = make_key_file(v.base, name="wrong")
    r = run_kekfs("mount", "--key-file", wrong, v.backing, v.mnt, timeout=20)
    assert r.returncode != 0 and b"cannot unlock" in r.stderr, r
    v.mount()  # run_kekfs's timeout fails the test if the FIFO is opened blocking
    assert not os.path.exists(pending), "the FIFO is still there"
    v.umount()
    outside = os.path.join(v.base, "outside")
    with open(outside, "w") as f:
        f.write("outside the volume\n")
    os.symlink(outside, pending)
    r = run_kekfs("mount", "--key-file", wrong, v.backing, v.mnt, timeout=20)
    assert r.returncode != 0, r
    os.rename(audit_path(v), audit_path(v) + ".saved")
    os.symlink(outside, audit_path(v))
    v.mount()
    assert_eq(read_file(outside), b"outside the volume\n", "the file outside the volume")
    r = run_kekfs("audit", "verify", v.mnt)
    assert r.returncode != 0 and b"is not a regular file" in r.stderr, r
