#!/usr/bin/env python3
"""check-conf-man.py: checks mtastsd.conf(5) against the daemon's option table.

Every option of the schema must be documented in the man page, once, in its section, with
the schema's type, default, integer range and unit and enum values; the page may document
nothing the schema does not know. Exit status 0 when they agree, 1 with one line per
difference, 2 on a usage or input error.

The schema comes from one of:
  --dump FILE      the tab-separated dump of config_dump_schema() ("-" for stdin)
  --mtastsd PATH   run "PATH -S", which prints that dump
  --source FILE    src/config/config.c, its config_sections[] and config_options[] read as
                   text (the default; no build needed)
With --mtastsd or --dump and --source together, the two schemas are also compared, which
checks this script's reading of the C table.

The page is written so that each option is one item of a tag list under ".Ss SECTION":

  .It Cm KEY Pq TYPE
  Description ...
  Range: MIN to MAX UNIT.          (integers)
  Default:
  .Li VALUE .                      (or the line "Required." for keys without default)

Enum values are checked by their appearance as ".Cm VALUE" (or "Cm VALUE") in the item.
"""

import argparse
import re
import subprocess
import sys


class Option:
    def __init__(self, section, name):
        self.section = section
        self.name = name
        self.type = None  # "integer", "string", "boolean", "array of strings"
        self.default = None  # the libconfig text, such as '"info"' or '2000'; None: required
        self.min = self.max = self.unit = None
        self.values = None  # enum values, in order

    @property
    def key(self):
        return f"{self.section}.{self.name}"

    def compare(self, other):
        """The fields in which two descriptions of one option differ."""
        fields = ("type", "default", "min", "max", "unit", "values")
        return [f for f in fields if getattr(self, f) != getattr(other, f)]


# The user agent's default embeds the package version; the page writes VERSION.
VERSION_RE = re.compile(r"^\"mtastsd/[0-9][0-9A-Za-z.~+-]*\"$")


def normalise_default(text):
    if text is not None and VERSION_RE.match(text):
        return '"mtastsd/VERSION"'
    return text


# ---- the schema from config_dump_schema() ----


def schema_from_dump(text):
    sections, options = {}, []
    for n, line in enumerate(text.splitlines(), 1):
        if not line or line.startswith("#"):
            continue
        f = line.split("\t")
        if len(f) != 5:
            raise ValueError(f"dump line {n}: {len(f)} fields, want 5: {line!r}")
        path, typ, default, accepted, _doc = f
        if "." not in path:
            sections[path] = typ == "list of groups"
            continue
        sec, name = path.split(".", 1)
        sec = sec.removesuffix("[]")
        o = Option(sec, name)
        o.type = typ
        o.default = None if default == "(required)" else normalise_default(default)
        m = re.fullmatch(r"(-?\d+)\.\.(-?\d+) \((.+)\)", accepted)
        if typ == "integer" and m:
            o.min, o.max, o.unit = int(m[1]), int(m[2]), m[3]
        if accepted.startswith("one of "):
            o.values = re.findall(r'"([^"]*)"', accepted)
        options.append(o)
    return sections, options


# ---- the schema from src/config/config.c, read as text ----

C_STRING_RE = re.compile(r'"((?:[^"\\]|\\.)*)"')


def c_unescape(s):
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m[1], m[1]), s)


def c_strings(expr):
    """The value of a C string expression: adjacent literals, PACKAGE_VERSION as VERSION."""
    out, pos = "", 0
    expr = expr.strip()
    while pos < len(expr):
        if expr[pos].isspace():
            pos += 1
            continue
        m = C_STRING_RE.match(expr, pos)
        if m:
            out += c_unescape(m[1])
            pos = m.end()
            continue
        m = re.compile(r"PACKAGE_VERSION").match(expr, pos)
        if m:
            out += "VERSION"
            pos = m.end()
            continue
        raise ValueError(f"cannot read the C string expression {expr!r}")
    return out


def strip_comments(src):
    """C source without comments; string literals are kept as they are."""
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if c == '"':
            m = C_STRING_RE.match(src, i)
            out.append(m[0])
            i = m.end()
        elif src.startswith("/*", i):
            i = src.index("*/", i) + 2
            out.append(" ")
        elif src.startswith("//", i):
            i = src.index("\n", i)
        else:
            out.append(c)
            i += 1
    return "".join(out)


def table_body(src, name):
    """The text between the braces of "NAME[] = { ... };"."""
    m = re.search(r"\b" + re.escape(name) + r"\s*\[\s*\]\s*=\s*\{", src)
    if m is None:
        raise ValueError(f"no table {name}[] in the source")
    depth, i = 1, m.end()
    start = i
    while depth > 0:
        c = src[i]
        if c == '"':
            i = C_STRING_RE.match(src, i).end()
            continue
        depth += c == "{"
        depth -= c == "}"
        i += 1
    return src[start : i - 1]


def split_entries(body):
    """The top-level "{ ... }" entries of a table body."""
    entries, depth, start, i = [], 0, None, 0
    while i < len(body):
        c = body[i]
        if c == '"':
            i = C_STRING_RE.match(body, i).end()
            continue
        if c == "{":
            if depth == 0:
                start = i + 1
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                entries.append(body[start:i])
        i += 1
    return entries


def designated(entry, field):
    """The text of ".FIELD = value" up to the next top-level comma, or None."""
    m = re.search(r"\.\s*" + field + r"\s*=\s*", entry)
    if m is None:
        return None
    i, depth = m.end(), 0
    while i < len(entry):
        c = entry[i]
        if c == '"':
            i = C_STRING_RE.match(entry, i).end()
            continue
        if c in "({":
            depth += 1
        elif c in ")}":
            if depth == 0:
                break
            depth -= 1
        elif c == "," and depth == 0:
            break
        i += 1
    return entry[m.end() : i].strip()


def schema_from_source(text):
    src = strip_comments(text)
    sections = {}
    for e in split_entries(table_body(src, "config_sections")):
        name = c_strings(designated(e, "name"))
        sections[name] = designated(e, "list") == "true"
    types = {}
    for m in re.finditer(r"\[\s*CONFIG_KIND_(\w+)\s*\]\s*=\s*\{\s*" + C_STRING_RE.pattern, src):
        types[m[1]] = c_unescape(m[2])
    if not types:
        raise ValueError("no config_kinds[] rows (\"[CONFIG_KIND_X] = { \"type\", ...\")")
    arrays = {}
    for m in re.finditer(r"static const char \*const (\w+)\[\]\s*=\s*\{(.*?)\};", src, re.S):
        arrays[m[1]] = [c_unescape(s) for s in C_STRING_RE.findall(m[2])]
    options = []
    for e in split_entries(table_body(src, "config_options")):
        m = re.match(r"\s*(IN_CONFIG|IN_LISTENER|IN_MAP)\s*\((.*?)\)", e, re.S)
        if m is None:
            raise ValueError(f"an option row without IN_CONFIG/IN_LISTENER/IN_MAP: {e!r}")
        args = C_STRING_RE.findall(m[2])
        if m[1] == "IN_CONFIG":
            sec, name = c_unescape(args[0]), c_unescape(args[1])
        else:
            sec = "listen" if m[1] == "IN_LISTENER" else "maps"
            name = c_unescape(args[0])
        o = Option(sec, name)
        kind = designated(e, "kind").removeprefix("CONFIG_KIND_")
        if kind not in types:
            raise ValueError(f"{o.key}: unknown kind {kind}")
        o.type = types[kind]
        d = designated(e, "def")
        o.default = None if d is None else normalise_default(c_strings(d))
        if kind == "INT":
            o.min, o.max = int(designated(e, "min")), int(designated(e, "max"))
            o.unit = c_strings(designated(e, "unit"))
        if kind == "ENUM":
            arr = designated(e, "values")
            if arr not in arrays:
                raise ValueError(f"{o.key}: values array {arr} not found")
            o.values = arrays[arr]
        options.append(o)
    return sections, options


# ---- the man page ----


def roff_text(s):
    """Roff escapes in a macro argument, as the reader sees them."""
    s = s.replace("\\(dq", '"').replace("\\(en", "-").replace("\\&", "").replace("\\e", "\\")
    return s.strip()


def page_options(text):
    """(sections, options) documented in the page, with the problems found reading it."""
    problems, options, sections = [], [], []
    section, item, in_options, depth = None, None, False, 0
    lines = text.splitlines()

    def finish(item):
        if item is not None:
            options.append(item)

    for n, line in enumerate(lines, 1):
        if line.startswith(".Sh "):
            finish(item)
            item = None
            in_options = line.strip() == ".Sh OPTIONS"
            section = None
            continue
        if not in_options:
            continue
        if line.startswith(".Ss "):
            finish(item)
            item, depth = None, 0
            section = line[4:].strip()
            sections.append(section)
            continue
        if line.startswith(".Bl"):
            depth += 1
        elif line.startswith(".El"):
            depth -= 1
            if depth == 0:
                finish(item)
                item = None
            continue
        m = re.match(r"\.It Cm (\S+)(?: Pq (.+))?$", line)
        if m and depth == 1:
            finish(item)
            if section is None:
                problems.append(f"line {n}: option {m[1]} outside any .Ss section")
            item = Option(section, m[1])
            item.type = m[2].strip() if m[2] else None
            item.line = n
            item.body = []
            item.has_default = item.required = False
            continue
        if item is None:
            continue
        item.body.append(line)
        if line.strip() == "Required.":
            item.required = True
        if line.strip().startswith("Range:"):
            r = re.fullmatch(r"Range: (-?\d+) to (-?\d+) (.+)\.", line.strip())
            if r is None:
                problems.append(f"line {n}: {item.key}: write the range as "
                                "\"Range: MIN to MAX UNIT.\"")
            else:
                item.min, item.max, item.unit = int(r[1]), int(r[2]), r[3]
    finish(item)
    for o in options:
        for i, line in enumerate(o.body):
            if line.strip() != "Default:":
                continue
            nxt = o.body[i + 1] if i + 1 < len(o.body) else ""
            d = re.fullmatch(r"\.Li (.+?)(?: [.,;:])?", nxt.strip())
            if d is None:
                problems.append(f"line {o.line}: {o.key}: \"Default:\" must be followed by "
                                "\".Li VALUE\"")
            else:
                o.default = roff_text(d[1])
                o.has_default = True
        body = "\n".join(o.body)
        o.cm_words = set(re.findall(r"(?:^\.|\s)Cm ([^\s]+)", body, re.M))
        o.cm_words |= {w for ws in re.findall(r"^\.Cm (.+)$", body, re.M) for w in ws.split()}
    return sections, options, problems


def check_page(sections, schema, page_text):
    problems = []
    page_sections, documented, read_problems = page_options(page_text)
    problems += read_problems
    if page_sections != list(sections):
        problems.append(f"sections: the page has {page_sections}, the schema "
                        f"{list(sections)} (same names, same order)")
    want = {o.key: o for o in schema}
    seen = {}
    for o in documented:
        if o.key in seen:
            problems.append(f"line {o.line}: {o.key} documented twice (first on line "
                            f"{seen[o.key].line})")
            continue
        seen[o.key] = o
        s = want.get(o.key)
        if s is None:
            problems.append(f"line {o.line}: {o.key} is not an option of the schema; remove it "
                            "or add it to config_options[]")
            continue
        if o.type != s.type:
            problems.append(f"line {o.line}: {o.key}: type \"{o.type}\", schema \"{s.type}\" "
                            f"(write .It Cm {o.name} Pq {s.type})")
        if s.default is None:
            if not o.required or o.has_default:
                problems.append(f"line {o.line}: {o.key} has no default: say \"Required.\" "
                                "and no \"Default:\"")
        elif not o.has_default:
            problems.append(f"line {o.line}: {o.key}: no \"Default:\" line; schema default "
                            f"{s.default}")
        elif o.default != s.default:
            problems.append(f"line {o.line}: {o.key}: default {o.default}, schema {s.default}")
        if s.type == "integer" and (o.min, o.max, o.unit) != (s.min, s.max, s.unit):
            problems.append(f"line {o.line}: {o.key}: range {o.min} to {o.max} {o.unit}, "
                            f"schema \"Range: {s.min} to {s.max} {s.unit}.\"")
        for v in s.values or []:
            if v not in o.cm_words:
                problems.append(f"line {o.line}: {o.key}: value {v} not described (as .Cm {v})")
    for key, s in want.items():
        if key not in seen:
            problems.append(f"{key}: in the schema but not in the page (add .It Cm {s.name} "
                            f"under .Ss {s.section})")
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("page", help="doc/man/mtastsd.conf.5")
    ap.add_argument("--source", help="src/config/config.c")
    ap.add_argument("--dump", help="output of config_dump_schema(), - for stdin")
    ap.add_argument("--mtastsd", help="an mtastsd binary that prints the dump with -S")
    a = ap.parse_args()
    if a.dump and a.mtastsd:
        ap.error("give --dump or --mtastsd, not both")
    try:
        schemas = []
        if a.mtastsd:
            out = subprocess.run([a.mtastsd, "-S"], check=True, capture_output=True, text=True)
            schemas.append((f"{a.mtastsd} -S", schema_from_dump(out.stdout)))
        elif a.dump:
            f = sys.stdin if a.dump == "-" else open(a.dump, encoding="utf-8")
            schemas.append((a.dump, schema_from_dump(f.read())))
        if a.source or not schemas:
            src = a.source or "src/config/config.c"
            with open(src, encoding="utf-8") as f:
                schemas.append((src, schema_from_source(f.read())))
        with open(a.page, encoding="utf-8") as f:
            page = f.read()
    except (OSError, ValueError, subprocess.CalledProcessError) as e:
        print(f"check-conf-man: {e}", file=sys.stderr)
        return 2
    problems = []
    if len(schemas) == 2:
        (na, (sa, oa)), (nb, (sb, ob)) = schemas
        if sa != sb:
            problems.append(f"schema: sections differ between {na} and {nb}: {sa} / {sb}")
        ia, ib = {o.key: o for o in oa}, {o.key: o for o in ob}
        for k in sorted(set(ia) | set(ib)):
            if k not in ia or k not in ib:
                problems.append(f"schema: {k} only in {nb if k not in ia else na}")
            elif ia[k].compare(ib[k]):
                problems.append(f"schema: {k} differs between {na} and {nb} in "
                                f"{', '.join(ia[k].compare(ib[k]))}")
    sections, options = schemas[0][1]
    problems += check_page(sections, options, page)
    for p in problems:
        print(f"{a.page}: {p}", file=sys.stderr)
    if problems:
        print(f"check-conf-man: {len(problems)} problem(s); {a.page} and the option table of "
              f"{schemas[0][0]} disagree", file=sys.stderr)
        return 1
    print(f"check-conf-man: {a.page} documents all {len(options)} options of "
          f"{schemas[0][0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
