"""Everyday command-line polish: 'kekfs help [COMMAND]', a 'kekfs --help' that lists every
command and keys subcommand the code dispatches (read from cli/ so it cannot go stale), and
'kekfs --version' with the on-disk formats and the library versions."""

import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from kekfs_harness import run_kekfs, kekfs_fails, assert_eq, REPO_ROOT  # noqa


def source(name):
    with open(os.path.join(REPO_ROOT, "cli", name)) as f:
        return f.read()


def dispatched_commands():
    """The command names in main.c's table of commands."""
    table = source("main.c").split("commands[] = {", 1)[1].split("};", 1)[0]
    names = re.findall(r'\{"([a-z-]+)",\s*cmd_', table)
    assert len(names) >= 10, "cannot read main.c's command table: %r" % names
    return names


def dispatched_keys_subcommands():
    """Every keys subcommand cmd_keys() compares argv[1] with, and the verbs table."""
    body = source("cmd_keys.c").split("int cmd_keys(int argc", 1)[1]
    names = set(re.findall(r'strcmp\(argv\[1\], "([a-z-]+)"\)', body))
    names |= set(re.findall(r'\{"([a-z-]+)", KEK_', body))
    names = {n for n in names if not n.startswith("-")}
    assert len(names) >= 12, "cannot read cmd_keys's subcommands: %r" % names
    return names


def help_text():
    r = run_kekfs("--help")
    assert_eq(r.returncode, 0, "kekfs --help: %r" % r)
    return r.stdout.decode()


def test_help_lists_every_command():
    text = help_text()
    for name in dispatched_commands():
        assert re.search(r"(^|\W)%s(\W|$)" % re.escape(name), text), \
            "kekfs --help does not list the command %r" % name
    assert "rotate --data" in text, "kekfs --help does not list rotate --data"
    assert re.search(r"^  help \[COMMAND\]", text, re.M), "kekfs --help omits help"


def test_help_lists_every_keys_subcommand():
    keys_lines = "\n".join(l for l in help_text().splitlines() if l.startswith("  keys "))
    for name in dispatched_keys_subcommands():
        assert re.search(r"[ |]%s[ |]" % re.escape(name), keys_lines), \
            "kekfs --help does not list 'keys %s'" % name


def test_help_command_is_command_help():
    for name in dispatched_commands():
        own = run_kekfs(name, "--help")
        via = run_kekfs("help", name)
        assert_eq(own.returncode, 0, "kekfs %s --help: %r" % (name, own))
        assert_eq(via.returncode, 0, "kekfs help %s: %r" % (name, via))
        assert_eq(via.stdout, own.stdout, "kekfs help %s differs from --help" % name)
        assert own.stdout.startswith(b"Usage: kekfs "), "kekfs %s --help: %r" % (name, own)
    r = run_kekfs("help")
    assert_eq((r.returncode, r.stdout), (0, help_text().encode()), "kekfs help: %r" % r)


def test_help_unknown_command_is_one_line():
    line = kekfs_fails("help", "frobnicate")
    assert "frobnicate" in line and "kekfs --help" in line, line
    assert_eq(run_kekfs("help", "frobnicate").returncode, 2, "exit status of help frobnicate")


def test_version_names_formats_and_libraries():
    r = run_kekfs("--version")
    assert_eq(r.returncode, 0, "kekfs --version: %r" % r)
    out = r.stdout.decode()
    assert re.match(r"kekfs \d+\.\d+\.\d+\n", out), out
    m = re.search(r"file header (\d+), volume config (\d+), keyring (\d+)", out)
    assert m, "no format versions in %r" % out
    docs = open(os.path.join(REPO_ROOT, "docs", "FORMAT.md")).read()
    assert "format version = %s" % m.group(2) in docs, "config version not FORMAT.md's"
    assert "format u16 = %s" % m.group(3) in docs, "keyring version not FORMAT.md's"
    assert re.search(r"^libfuse 3\.\d+", out, re.M), out
    assert re.search(r"^OpenSSL \d+\.\d+", out, re.M), out
    assert re.search(r"^libsodium \d+\.\d+", out, re.M), out
    assert_eq(run_kekfs("-V").stdout, r.stdout, "kekfs -V differs from --version")
