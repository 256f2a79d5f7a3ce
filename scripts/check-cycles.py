#!/usr/bin/env python3
"""Import cycles between the files of each crate's src/ (issue 16: no cycle larger than two files).

Reads every .rs file under <crate>/src, resolves the `crate::` paths it names (in `use` trees
and in expressions) to the file that defines the module, follows `pub use` re-exports to the
file that defines the item, and computes the strongly connected components of the file graph.
A re-export itself is not an edge (a facade such as lib.rs does not depend on what it
re-exports). Relative paths (`super::`, child modules) are the business of one folder and are
left out unless --relative: a folder's mod.rs and its files may use each other (impl blocks of
one type split over files). --depth 1 makes each top-level module (a folder) one node.

Usage: check-cycles.py [--enforce gateway,operator,crds] [--max 2] [--depth 0] [--relative]
                       [-v] [crate ...]
Prints every component of more than one node (-v: with its edges); exits 1 when an enforced
crate has a component larger than --max nodes. Crates default to gateway, operator, crds, nats and
testkit; enforced defaults to all of them. Python 3 standard library only.
"""

import argparse
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CRATES = ["gateway", "operator", "crds", "nats", "testkit"]

TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<lcomment>//[^\n]*)
  | (?P<bcomment>/\*)
  | (?P<rawstr>b?r\#*")
  | (?P<str>b?")
  | (?P<char>b?'(?:\\.|[^\\'])')
  | (?P<lifetime>'[A-Za-z_][A-Za-z0-9_]*)
  | (?P<ident>\$?[A-Za-z_][A-Za-z0-9_]*)
  | (?P<path>::)
  | (?P<punct>.)
    """,
    re.VERBOSE | re.DOTALL,
)


def tokens(src):
    """Identifiers, `::` and punctuation, without comments, strings and chars."""
    out = []
    i, n = 0, len(src)
    while i < n:
        m = TOKEN.match(src, i)
        kind = m.lastgroup
        if kind == "bcomment":
            depth, j = 1, m.end()
            while j < n and depth:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            i = j
            continue
        if kind == "rawstr":
            hashes = m.group().count("#")
            end = src.find('"' + "#" * hashes, m.end())
            i = n if end < 0 else end + 1 + hashes
            continue
        if kind == "str":
            j = m.end()
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            i = j + 1
            continue
        if kind not in ("ws", "lcomment", "char", "lifetime"):
            out.append(m.group())
        i = m.end()
    return out


def is_ident(t):
    return t[0].isalpha() or t[0] == "_"


class File:
    def __init__(self, path, module):
        self.path = path
        self.module = module  # tuple of segments from the crate root
        self.children = set()  # `mod x;` declared here (out-of-line)
        self.refs = []  # (module path of the scope, absolute path) named here
        self.reexports = {}  # name -> absolute path (`pub use` in this file's module)


def module_of(src_dir, path):
    rel = os.path.relpath(path, src_dir)[: -len(".rs")].split(os.sep)
    if rel[-1] == "mod":
        rel = rel[:-1]
    if rel in (["lib"], ["main"]):
        return ()
    return tuple(rel)


def parse_tree(toks, i):
    """A use tree at toks[i]; returns (list of (segments, alias), next index)."""
    if toks[i] == "{":
        out, i = [], i + 1
        while i < len(toks) and toks[i] != "}":
            sub, i = parse_tree(toks, i)
            out += sub
            if i < len(toks) and toks[i] == ",":
                i += 1
        return out, i + 1
    if toks[i] == "*":
        return [(["*"], None)], i + 1
    segs = []
    while i < len(toks) and is_ident(toks[i]):
        segs.append(toks[i])
        i += 1
        if i < len(toks) and toks[i] == "::":
            i += 1
            if i < len(toks) and toks[i] in ("{", "*"):
                sub, i = parse_tree(toks, i)
                return [(segs + s, a) for s, a in sub], i
            continue
        break
    alias = None
    if i + 1 < len(toks) and toks[i] == "as":
        alias, i = toks[i + 1], i + 2
    return [(segs, alias)], i


RELATIVE = False  # --relative: `super::`, `self::` and child-module paths are edges too


def absolute(scope, segs, children):
    """Absolute path of `segs` named in module `scope`, or None when it is not a crate path."""
    if not segs or not RELATIVE and segs[0] != "crate":
        return None
    head = segs[0]
    if head == "crate":
        return tuple(segs[1:])
    if head == "self":
        return scope + tuple(segs[1:])
    if head == "super":
        base = list(scope)
        while segs and segs[0] == "super":
            if base:
                base.pop()
            segs = segs[1:]
        return tuple(base) + tuple(segs)
    if head in children:
        return scope + tuple(segs)
    return None


def scan(f, src):
    toks = tokens(src)
    for i in range(len(toks) - 2):
        if toks[i] == "mod" and is_ident(toks[i + 1]) and toks[i + 2] == ";":
            f.children.add(toks[i + 1])
    scopes = [(f.module, 0)]  # (module path, brace depth at which it closes)
    depth = 0
    i = 0
    while i < len(toks):
        t = toks[i]
        scope = scopes[-1][0]
        if t == "{":
            depth += 1
        elif t == "}":
            depth -= 1
            if len(scopes) > 1 and depth < scopes[-1][1]:
                scopes.pop()
        elif t == "mod" and i + 2 < len(toks) and is_ident(toks[i + 1]) and toks[i + 2] == "{":
            depth += 1
            scopes.append((scope + (toks[i + 1],), depth))
            i += 3
            continue
        elif t == "use":
            public = i > 0 and (toks[i - 1] == "pub" or toks[i - 1] == ")")
            j = i + 1
            if j < len(toks) and toks[j] == "::":
                j += 1
            tree, j = parse_tree(toks, j)
            for segs, alias in tree:
                path = absolute(scope, segs, f.children if scope == f.module else ())
                if path is None:
                    continue
                if public and scope == f.module and segs[-1] != "*":
                    f.reexports[alias or segs[-1]] = path
                else:
                    f.refs.append(path)
            i = j
            continue
        elif (
            t in ("crate", "self", "super") or (t in f.children and scope == f.module)
        ) and i + 1 < len(toks) and toks[i + 1] == "::" and (i == 0 or toks[i - 1] != "::"):
            segs = [t]
            j = i + 1
            while j + 1 < len(toks) and toks[j] == "::" and is_ident(toks[j + 1]):
                segs.append(toks[j + 1])
                j += 2
            path = absolute(scope, segs, f.children if scope == f.module else ())
            if path is not None:
                f.refs.append(path)
            i = j
            continue
        i += 1


def resolve(files, path, seen=0):
    """The file that defines `path` (following re-exports), or None."""
    for k in range(len(path), -1, -1):
        f = files.get(path[:k])
        if f is None:
            continue
        rest = path[k:]
        if rest and rest[0] in f.reexports and seen < 8:
            target = resolve(files, f.reexports[rest[0]] + rest[1:], seen + 1)
            if target is not None:
                return target
        return f
    return None


def sccs(nodes, edges):
    """Tarjan's strongly connected components (iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter[0]
                    counter[0] += 1
                    stack.append(nxt)
                    on.add(nxt)
                    work.append((nxt, iter(sorted(edges[nxt]))))
                elif nxt in on:
                    low[v] = min(low[v], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                out.append(sorted(comp))
    return out


def node(path, module, depth):
    """The graph node of a file: itself (depth 0) or its module path cut to `depth` segments."""
    if depth == 0 or len(module) <= depth and not path.endswith("mod.rs"):
        return path if depth == 0 else "::".join(module) or "lib"
    return "::".join(module[:depth]) or "lib"


def crate_graph(crate, depth):
    src_dir = os.path.join(ROOT, crate, "src")
    files = {}
    for dirpath, _, names in os.walk(src_dir):
        for name in names:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, src_dir)
            if rel.startswith("bin" + os.sep) or rel == "main.rs":
                continue  # binaries are crates of their own
            f = File(rel, module_of(src_dir, path))
            with open(path, encoding="utf-8") as fh:
                scan(f, fh.read())
            files[f.module] = f
    name = {f.path: node(f.path, f.module, depth) for f in files.values()}
    members = {}
    for f in files.values():
        members.setdefault(name[f.path], []).append(f.path)
    edges = {n: set() for n in members}
    for f in files.values():
        for ref in f.refs:
            target = resolve(files, ref)
            if target is not None and name[target.path] != name[f.path]:
                edges[name[f.path]].add(name[target.path])
    return edges, members


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("crates", nargs="*", default=CRATES)
    ap.add_argument("--enforce", default=",".join(CRATES), help="crates whose cycles fail the check")
    ap.add_argument("--max", type=int, default=2, help="largest allowed component (nodes)")
    ap.add_argument(
        "--depth",
        type=int,
        default=0,
        help="a node is a module path cut to this many segments (0: every file; 1: the crate's "
        "top-level modules, a folder counting as one)",
    )
    ap.add_argument(
        "--relative",
        action="store_true",
        help="count `super::`, `self::` and child-module paths too (a folder's files and its "
        "mod.rs, e.g. impl blocks of one type split over files)",
    )
    ap.add_argument("-v", "--verbose", action="store_true", help="print the edges inside each cycle")
    args = ap.parse_args()
    global RELATIVE
    RELATIVE = args.relative
    enforce = {c for c in args.enforce.split(",") if c}
    failed = False
    for crate in args.crates:
        edges, members = crate_graph(crate, args.depth)
        comps = [c for c in sccs(sorted(edges), edges) if len(c) > 1]
        largest = max((len(c) for c in comps), default=1)
        bad = largest > args.max
        mark = "FAIL" if bad and crate in enforce else ("report" if bad else "ok")
        unit = "files" if args.depth == 0 else "modules"
        print(f"{crate}: {len(edges)} {unit}, largest cycle {largest} [{mark}]")
        for comp in sorted(comps, key=len, reverse=True):
            files = sum(len(members[n]) for n in comp)
            print(f"  {len(comp)} {unit} ({files} files): {' '.join(comp)}")
            for n in comp if args.verbose else ():
                print(f"    {n} -> {' '.join(sorted(edges[n] & set(comp)))}")
        failed |= bad and crate in enforce
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
