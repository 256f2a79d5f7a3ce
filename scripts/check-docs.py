#!/usr/bin/env python3
"""Fails when something a user can set is not documented, or a documentation link is broken.

    python3 scripts/check-docs.py        (part of `make lint` and the lint stage of scripts/test.sh)

What it reads from the code (the whole `*/src` trees, so files may move):
  - every long flag and environment variable of the clap `#[arg(...)]` fields: a flag defined in
    gateway/ must be in docs/configuration.md, one in operator/ in docs/operator.md, one in a
    shared crate in some page of docs/;
  - every key of the gateway's configuration file: the serde fields (with rename_all, rename,
    flatten and skip) reachable from `ServerSettings` (under `server:`) and `GatewayConfig` (the
    top level), as dotted paths, each of which must be a key of the YAML example in
    docs/configuration.md;
  - every field of the custom resources (the `#[kube(...)]` spec structs and their `status`):
    each field name must appear in backquotes in docs/operator.md or docs/protection.md;
  - every leaf of charts/jets3/values.yaml (an empty map or a list is a leaf): each must appear as
    `key` in docs/ or in the chart's own README (its values table, which e2e/chart checks
    against values.yaml default by default).
And the other way round, so docs do not go stale: the flag tables (rows starting with a flag) of
docs/configuration.md and docs/operator.md name only flags that exist, and the YAML example of
docs/configuration.md only keys the configuration file has.
Then every relative markdown link of README.md, docs/, RELIABILITY.md, BENCHMARKS.md and the
chart README must name a file that exists, and an #anchor into a markdown file one of its
headings (GitHub's slugs). Standard library only.
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CHART = ROOT / "charts" / "jets3"

# Where each crate's flags must be documented (other crates: any page of docs/).
FLAG_PAGES = {"gateway": "configuration.md", "operator": "operator.md"}
# The configuration file: struct -> where its keys sit in the file.
CONFIG_ROOTS = {"ServerSettings": "server", "GatewayConfig": ""}
CONFIG_PAGE = "configuration.md"
CRD_PAGES = ("operator.md", "protection.md")
LINKED_FILES = ["README.md", "RELIABILITY.md", "BENCHMARKS.md", "charts/jets3/README.md"]

problems = []


def rust_files():
    for src in sorted(ROOT.glob("*/src")):
        yield from sorted(p for p in src.rglob("*.rs"))


def strip_comments(text):
    """Rust source without // comments (doc comments included) and /* */ blocks; strings kept."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i : i + 4]):
            m = re.match(r"'(\\.|[^\\'])'", text[i : i + 4])
            out.append(m.group(0))
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def balanced(text, start, open_="(", close=")"):
    """Index just past the bracket matching text[start] (which is `open_`)."""
    depth, i = 0, start
    while i < len(text):
        if text[i] == '"':
            i += 1
            while i < len(text) and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif text[i] == open_:
            depth += 1
        elif text[i] == close:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError("unbalanced")


# ---- Rust: attributes, structs, fields -----------------------------------------------------------

ATTR = re.compile(r"#\[\s*([A-Za-z_][\w:]*)\s*(?=\(|\])")
FIELD = re.compile(r"\s*(?:pub(?:\([^)]*\))?\s+)?(r#)?([a-z_][a-z0-9_]*)\s*:\s*")


def attributes(text, i):
    """Attributes starting at text[i] (whitespace first): [(name, args)], index after them."""
    attrs = []
    while True:
        m = re.compile(r"\s*#\[").match(text, i)
        if not m:
            return attrs, i
        start = m.end() - 1
        end = balanced(text, start, "[", "]")
        body = text[start + 1 : end - 1].strip()
        name = re.match(r"[\w:]+", body)
        attrs.append((name.group(0) if name else "", body[len(name.group(0)) :] if name else body))
        i = end


def type_end(text, i):
    """End of a field's type starting at i (up to the ',' or '}' at depth 0)."""
    depth = 0
    while i < len(text):
        c = text[i]
        if c in "<([":
            depth += 1
        elif c in ">)]":
            if depth == 0:
                return i
            depth -= 1
        elif c in ",}" and depth == 0:
            return i
        i += 1
    return i


class Struct:
    def __init__(self, name, path, attrs, fields):
        self.name, self.path, self.attrs, self.fields = name, path, attrs, fields


def external_imports(path, text):
    """Names a file imports from outside the workspace (`use k8s_openapi::...::Condition;`)."""
    out = set()
    for m in re.finditer(r"^\s*(?:pub(?:\([^)]*\))?\s+)?use\s+([\w:{}, \n*]+);", text, re.M):
        used = re.sub(r"\s", "", m.group(1))
        root = re.match(r"(?:::)?(\w+)", used).group(1)
        if root in ("crate", "super", "self") or root.startswith("jets3"):
            continue
        if (path.parent / f"{root}.rs").exists() or (path.parent / root).is_dir():
            continue  # a child module
        out.update(re.findall(r"\b([A-Z]\w*)\b", used))
    return out


def serde_args(attrs):
    return " ".join(a for n, a in attrs if n == "serde")


def parse_structs(path, text):
    structs = []
    for m in re.finditer(r"\bstruct\s+([A-Z]\w*)\s*(<[^{;]*>)?\s*\{", text):
        # The attributes right before `struct`: walk back over `pub` and attribute blocks.
        head = text[: m.start()]
        attr_start = len(head)
        while True:
            s = head[:attr_start].rstrip()
            s2 = re.sub(r"pub(\([^)]*\))?\s*$", "", s).rstrip()
            if s2.endswith("]"):
                depth, k = 0, len(s2) - 1
                while k >= 0:
                    if s2[k] == "]":
                        depth += 1
                    elif s2[k] == "[":
                        depth -= 1
                        if depth == 0:
                            break
                    k -= 1
                if k > 0 and s2[k - 1] == "#":
                    attr_start = k - 1
                    continue
            break
        attrs, _ = attributes(text[attr_start : m.start()], 0)
        body_start = m.end() - 1
        body_end = balanced(text, body_start, "{", "}")
        body = text[body_start + 1 : body_end - 1]
        fields, i = [], 0
        while i < len(body):
            fattrs, i = attributes(body, i)
            fm = FIELD.match(body, i)
            if not fm:
                break
            t_end = type_end(body, fm.end())
            fields.append((fm.group(2), body[fm.end() : t_end].strip(), fattrs))
            i = t_end + 1
        structs.append(Struct(m.group(1), path, attrs, fields))
    return structs


def rename(name, rule):
    words = name.split("_")
    return {
        "camelCase": words[0] + "".join(w.title() for w in words[1:]),
        "PascalCase": "".join(w.title() for w in words),
        "kebab-case": "-".join(words),
        "lowercase": name.lower(),
        "UPPERCASE": name.upper(),
        "SCREAMING_SNAKE_CASE": name.upper(),
        "SCREAMING-KEBAB-CASE": "-".join(words).upper(),
    }.get(rule, name)


def serde_name(field, struct):
    name, _, fattrs = field
    args = serde_args(fattrs)
    m = re.search(r'\brename\s*=\s*"([^"]+)"', args)
    if m:
        return m.group(1)
    m = re.search(r'rename_all\s*=\s*"([^"]+)"', serde_args(struct.attrs))
    return rename(name, m.group(1)) if m else name


def type_names(ty):
    return re.findall(r"\b([A-Z]\w*)\b", ty)


class Structs:
    def __init__(self, structs, sources):
        # Names a module (folder) imports or re-exports from crates outside the workspace, e.g.
        # `pub use k8s_openapi::...::Condition`: never resolved to a workspace struct.
        self.external = {}
        for path, text in sources:
            self.external.setdefault(path.parent, set()).update(external_imports(path, text))
        self.by_name = {}
        for s in structs:
            self.by_name.setdefault(s.name, []).append(s)

    def find(self, name, near=None):
        """The struct `name`, preferring one in the same file, then folder, then crate; none when
        `near`'s file imports the name from another crate."""
        if near is not None and name in self.external.get(near.path.parent, ()):
            return None
        cands = self.by_name.get(name, [])
        if near is not None and len(cands) > 1:
            for same in (
                lambda c: c.path == near.path,
                lambda c: c.path.parent == near.path.parent,
                lambda c: c.path.relative_to(ROOT).parts[0] == near.path.relative_to(ROOT).parts[0],
            ):
                hit = [c for c in cands if same(c)]
                if hit:
                    return hit[0]
        return cands[0] if cands else None

    def paths(self, struct, prefix="", seen=()):
        """Dotted serde paths of every field reachable from `struct` (lists and maps add no step)."""
        out = []
        for field in struct.fields:
            args = serde_args(field[2])
            if re.search(r"\bskip\b|\bskip_deserializing\b", args):
                continue
            child = None
            for t in type_names(field[1]):
                if t not in ("Option", "Vec", "Box", "BTreeMap", "HashMap", "String") and self.find(t, struct):
                    child = self.find(t, struct)
            if re.search(r"\bflatten\b", args):
                if child is not None and child.name not in seen:
                    out += self.paths(child, prefix, seen + (child.name,))
                continue
            path = f"{prefix}{serde_name(field, struct)}"
            out.append(path)
            if child is not None and child.name not in seen:
                out += self.paths(child, path + ".", seen + (child.name,))
        return out


# ---- a small YAML reader: the dotted keys of a document -------------------------------------------


def strip_yaml_comment(line):
    quote = None
    for i, c in enumerate(line):
        if quote:
            if c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i].rstrip()
    return line.rstrip()


def split_flow(s):
    """Items of a flow collection's inside, split at top-level commas."""
    items, depth, quote, cur = [], 0, None, ""
    for c in s:
        if quote:
            quote = None if c == quote else quote
        elif c in "\"'":
            quote = c
        elif c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
        elif c == "," and depth == 0:
            items.append(cur.strip())
            cur = ""
            continue
        cur += c
    if cur.strip():
        items.append(cur.strip())
    return items


KEY = re.compile(r"""^("[^"]*"|'[^']*'|[^\s:#\[\]{},][^:#]*?)\s*:(?:\s+(.*)|$)""")


def flow_keys(value, prefix, out, into_lists):
    value = value.strip()
    if value.startswith("{") and value.endswith("}"):
        for item in split_flow(value[1:-1]):
            m = KEY.match(item)
            if m:
                path = prefix + m.group(1).strip("\"'")
                out[path] = out.get(path, False) or False
                flow_keys(m.group(2) or "", path + ".", out, into_lists)
    elif into_lists and value.startswith("[") and value.endswith("]"):
        for item in split_flow(value[1:-1]):
            flow_keys(item, prefix, out, into_lists)


def yaml_keys(text, into_lists):
    """{dotted key: has children}. Items of lists count under the list's key when into_lists."""
    out = {}
    stack = []  # (indent, path, kind) with kind "key" or "item"
    lines = text.split("\n")
    block_indent = None
    for raw in lines:
        if block_indent is not None:
            if raw.strip() and len(raw) - len(raw.lstrip()) <= block_indent:
                block_indent = None
            else:
                continue
        line = strip_yaml_comment(raw)
        if not line.strip() or line.strip() in ("---", "..."):
            continue
        indent = len(line) - len(line.lstrip())
        content = line.strip()
        if content.startswith("- ") or content == "-":
            while stack and stack[-1][0] >= indent:
                stack.pop()
            parent = stack[-1][1] if stack else ""
            if not into_lists:
                block_indent = indent if content.endswith(("|", ">", "|-", ">-")) else None
                continue
            content = content[2:].strip()
            indent += 2
            stack.append((indent, parent, "item"))
            if content.startswith("{"):
                flow_keys(content, parent + "." if parent else "", out, into_lists)
                continue
            if not KEY.match(content):
                continue
        else:
            while stack and (stack[-1][0] > indent or (stack[-1][0] == indent and stack[-1][2] == "key")):
                stack.pop()
            parent = stack[-1][1] if stack else ""
        m = KEY.match(content)
        if not m:
            continue
        path = (parent + "." if parent else "") + m.group(1).strip("\"'")
        if parent:
            out[parent] = True
        value = (m.group(2) or "").strip()
        out.setdefault(path, False)
        if value == "":
            stack.append((indent, path, "key"))
        elif value[0] in "|>":
            block_indent = indent
        elif value[0] in "{[":
            if value[0] == "{" and value != "{}":
                out[path] = True
            flow_keys(value, path + ".", out, into_lists)
    return out


# ---- the checks -----------------------------------------------------------------------------------


def doc_text(*names):
    return "\n".join((DOCS / n).read_text() for n in names if (DOCS / n).exists())


def all_docs():
    return "\n".join(p.read_text() for p in sorted(DOCS.glob("*.md")))


def check_flags(sources):
    """Every clap flag and env var documented; returns the flags found."""
    flags = set()
    for path, text in sources:
        crate = path.relative_to(ROOT).parts[0]
        page = FLAG_PAGES.get(crate)
        docs = doc_text(page) if page else all_docs()
        where = f"docs/{page}" if page else "docs/"
        for m in re.finditer(r"#\[\s*(?:arg|clap)\s*\(", text):
            end = balanced(text, m.end() - 1)
            args = text[m.end() : end - 1]
            end = text.index("]", end) + 1
            fm = FIELD.match(text, end)
            while fm is None:  # other attributes between #[arg] and the field
                _, nxt = attributes(text, end)
                if nxt == end:
                    break
                end = nxt
                fm = FIELD.match(text, end)
            field = fm.group(2) if fm else None
            long = re.search(r'\blong\s*=\s*"([^"]+)"', args)
            if long:
                flag = long.group(1)
            elif re.search(r"\blong\b", args) and field:
                flag = field.replace("_", "-")
            else:
                flag = None
            env = re.search(r'\benv\s*=\s*"([^"]+)"', args)
            env = env.group(1) if env else (field.upper() if re.search(r"\benv\b", args) and field else None)
            rel = path.relative_to(ROOT)
            if flag:
                flags.add(flag)
                if not re.search(rf"--{re.escape(flag)}(?![\w-])", docs):
                    problems.append(f"flag --{flag} ({rel}) is not in {where}")
            if env and not re.search(rf"(?<![\w]){re.escape(env)}(?!\w)", docs):
                problems.append(f"environment variable {env} ({rel}) is not in {where}")
    if not flags:
        problems.append("found no clap flags in */src: has the #[arg(...)] syntax changed?")
    return flags


def check_flag_tables(flags):
    """The flag tables of the docs name no flag the code does not have."""
    for page in sorted(set(FLAG_PAGES.values())):
        for line in doc_text(page).split("\n"):
            m = re.match(r"\|\s*(`-[^|]*)\|", line)
            for flag in re.findall(r"--([a-z0-9][a-z0-9-]*)", m.group(1)) if m else ():
                if flag not in flags:
                    problems.append(f"docs/{page} lists flag --{flag}, which no #[arg] defines")


def config_yaml():
    """The YAML blocks of docs/configuration.md's configuration-file section."""
    text = doc_text(CONFIG_PAGE)
    return "\n".join(re.findall(r"```yaml\n(.*?)```", text, re.S))


def check_config(structs):
    keys = yaml_keys(config_yaml(), into_lists=True)
    real = {prefix for prefix in CONFIG_ROOTS.values() if prefix}
    for root, prefix in CONFIG_ROOTS.items():
        s = structs.find(root)
        if s is None:
            problems.append(f"struct {root} not found in */src: update CONFIG_ROOTS in scripts/check-docs.py")
            continue
        for path in structs.paths(s, prefix + "." if prefix else ""):
            real.add(path)
            if path not in keys:
                problems.append(f"config key {path} ({s.path.relative_to(ROOT)}) is not in the YAML of docs/{CONFIG_PAGE}")
    if all(structs.find(r) for r in CONFIG_ROOTS):
        for key in sorted(set(keys) - real):
            problems.append(f"docs/{CONFIG_PAGE} shows config key {key}, which the configuration file does not have")


def check_crds(structs):
    docs = doc_text(*CRD_PAGES)
    words = set()
    for span in re.findall(r"`([^`\n]+)`", docs):
        words.update(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", span))
    roots = []
    for group in structs.by_name.values():
        for s in group:
            kube = " ".join(a for n, a in s.attrs if n == "kube")
            if kube:
                roots.append((s, "spec"))
                st = re.search(r'status\s*=\s*"(\w+)"', kube)
                if st and structs.find(st.group(1), s):
                    roots.append((structs.find(st.group(1), s), "status"))
    if not roots:
        problems.append("found no #[kube(...)] spec struct in */src")
    for s, prefix in roots:
        for path in structs.paths(s, prefix + "."):
            name = path.rsplit(".", 1)[-1]
            if name not in words:
                problems.append(f"CRD field {path} ({s.path.relative_to(ROOT)}) is not in backquotes in docs/{' or docs/'.join(CRD_PAGES)}")


def check_chart_values():
    values = yaml_keys((CHART / "values.yaml").read_text(), into_lists=False)
    leaves = [k for k, has_children in values.items() if not has_children]
    docs = all_docs() + (CHART / "README.md").read_text()
    documented = set(re.findall(r"`([^`\n]+)`", docs))
    if not leaves:
        problems.append("found no values in charts/jets3/values.yaml")
    for key in leaves:
        if key not in documented:
            problems.append(f"chart value {key} is not in docs/ or charts/jets3/README.md")


def slug(heading):
    s = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading).strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def anchors(path):
    seen, out, fence = {}, set(), False
    for line in path.read_text().split("\n"):
        if line.startswith("```"):
            fence = not fence
        m = None if fence else re.match(r"#{1,6}\s+(.*?)\s*#*$", line)
        if m:
            s = slug(m.group(1))
            n = seen.get(s, 0)
            out.add(s if n == 0 else f"{s}-{n}")
            seen[s] = n + 1
    return out


def check_links():
    files = [ROOT / f for f in LINKED_FILES] + sorted(DOCS.glob("*.md"))
    for md in files:
        if not md.exists():
            continue
        text = re.sub(r"```.*?```", "", md.read_text(), flags=re.S)
        text = re.sub(r"`[^`\n]*`", "", text)
        for target in re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):
                continue
            path, _, frag = target.partition("#")
            dest = (md.parent / path).resolve() if path else md
            rel = md.relative_to(ROOT)
            if not dest.exists():
                problems.append(f"{rel}: link {target}: no such file")
            elif frag and dest.suffix == ".md" and frag not in anchors(dest):
                problems.append(f"{rel}: link {target}: no heading #{frag} in {dest.relative_to(ROOT)}")


def main():
    sources = [(p, strip_comments(p.read_text())) for p in rust_files()]
    structs = Structs([s for p, t in sources for s in parse_structs(p, t)], sources)
    check_flag_tables(check_flags(sources))
    check_config(structs)
    check_crds(structs)
    check_chart_values()
    check_links()
    for p in problems:
        print(f"check-docs: {p}", file=sys.stderr)
    if problems:
        print(f"check-docs: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print("check-docs: every flag, env var, config key, CRD field and chart value is documented; links resolve")
    return 0


if __name__ == "__main__":
    sys.exit(main())
