"""The layout keeps its layers (docs/ARCHITECTURE.md): includes point one way, from crypto/
up through backing/, format/, keyring/ and volume/ to fs/ and cli/, and only fs/ includes
FUSE. A checker that found nothing because it read nothing would pass vacuously, so it is
first run on a small tree with a forbidden edge and must name it."""

import os
import re
import tempfile

from kekfs_harness import assert_eq

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The layers, lowest first. A file may include its own layer and those below it; cli/ is the
# top and may include fs/ (kekfs mount starts the daemon).
LAYERS = ["crypto", "backing", "format", "keyring", "volume", "fs", "cli"]
FUSE_ALLOWED = {"fs"}
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)


def sources(root):
    for layer in LAYERS:
        d = os.path.join(root, layer)
        for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
            if name.endswith((".c", ".h")):
                yield layer, os.path.join(d, name)


def violations(root):
    """Every include across a forbidden edge, as 'file: includes target (why)'."""
    found = []
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    for layer, path in sources(root):
        with open(path) as f:
            text = f.read()
        rel = os.path.relpath(path, root)
        for kind, target in INCLUDE.findall(text):
            if kind == "<":
                if target.startswith("fuse") and layer not in FUSE_ALLOWED:
                    found.append("%s: includes <%s> (only fs/ talks to FUSE)" % (rel, target))
                continue
            dest = os.path.relpath(os.path.normpath(os.path.join(os.path.dirname(path),
                                                                 target)), root)
            top = dest.split(os.sep)[0]
            if top not in rank:
                found.append("%s: includes %s, outside the layers" % (rel, dest))
            elif rank[top] > rank[layer]:
                found.append("%s: includes %s (%s/ is above %s/)" % (rel, dest, top, layer))
    return found


def fuse_reached(root):
    """Files outside fs/ that reach <fuse...> through the headers they include (transitively):
    a FUSE type in an fs/ header that cli/ uses would make cli/ depend on libfuse."""
    cache = {}

    def reaches(path, seen):
        if path in cache:
            return cache[path]
        if path in seen or not os.path.isfile(path):
            return False
        seen.add(path)
        with open(path) as f:
            text = f.read()
        found = False
        for kind, target in INCLUDE.findall(text):
            if kind == "<" and target.startswith("fuse"):
                found = True
            elif kind == '"' and reaches(os.path.normpath(os.path.join(os.path.dirname(path),
                                                                     target)), seen):
                found = True
        cache[path] = found
        return found

    return ["%s: reaches FUSE through its includes (only fs/ may)" % os.path.relpath(p, root)
            for layer, p in sources(root) if layer not in FUSE_ALLOWED and reaches(p, set())]


def test_checker_finds_a_forbidden_edge():
    """The checker reads a tree and names an upward include and a FUSE include below fs/."""
    with tempfile.TemporaryDirectory() as root:
        for layer in ("format", "volume"):
            os.mkdir(os.path.join(root, layer))
        with open(os.path.join(root, "volume", "ops.h"), "w") as f:
            f.write("#pragma once\n")
        with open(os.path.join(root, "format", "header.c"), "w") as f:
            f.write('#include "../volume/ops.h"\n#include <fuse_lowlevel.h>\n')
        found = violations(root)
        assert_eq(len(found), 2, "violations in the planted tree: %r" % found)
        assert "volume/ is above format/" in found[0], found
        os.mkdir(os.path.join(root, "cli"))
        with open(os.path.join(root, "volume", "ops.h"), "w") as f:
            f.write("#include <fuse_lowlevel.h>\n")
        with open(os.path.join(root, "cli", "main.c"), "w") as f:
            f.write('#include "../volume/ops.h"\n')
        reached = fuse_reached(root)
        assert any(r.startswith(os.path.join("cli", "main.c")) for r in reached), reached


def test_includes_point_one_way():
    files = list(sources(REPO))
    assert len(files) > 100, "the checker found only %d sources under %s" % (len(files), REPO)
    found = violations(REPO) + fuse_reached(REPO)
    assert not found, "%d includes cross a forbidden edge:\n  %s" % (len(found),
                                                                     "\n  ".join(found))


FILE_MAX_LINES = 900
FUSE_OPS_MAX_LINES = 600  # fs/fuse_ops.c and the op families split from it (fs/ops_*.c)


def test_no_source_file_is_too_long():
    """Files of a few hundred lines, as gocryptfs keeps them: none over 900 lines, and the
    FUSE op handlers, split by family, under 600 each."""
    long = []
    checked = 0
    for layer, path in sources(REPO):
        with open(path) as f:
            n = sum(1 for _ in f)
        checked += 1
        name = os.path.basename(path)
        limit = FUSE_OPS_MAX_LINES if layer == "fs" and (
            name == "fuse_ops.c" or name.startswith("ops_")) else FILE_MAX_LINES
        if n > limit:
            long.append("%s: %d lines (at most %d)" % (os.path.relpath(path, REPO), n, limit))
    assert checked > 100, "only %d sources were measured" % checked
    assert not long, "files too long:\n  " + "\n  ".join(long)
