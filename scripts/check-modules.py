#!/usr/bin/env python3
"""No cycles between the modules of any crate of the workspace.

For every lib and bin target (`cargo metadata --no-deps`), the modules are the files reached
from the target's root file through `mod x;` declarations (x.rs or x/mod.rs), without the ones
declared under `#[cfg(test)]`. Module M uses module N when M's code (without `//` comments and
`#[cfg(test)]` mod items) names a path into N: `crate::a::b::Item`, `super::x::Item` (relative
to M), the paths of grouped uses (`use crate::{a::X, b::{Y, Z}}`) and names the crate root
re-exports (`pub use a::{X, Y};`, so `crate::X` is module a). A path counts for the deepest
module it names. Uses between a module and its ancestors or descendants are ignored; any other
use is an edge between the two siblings under the modules' common ancestor, and a cycle among
siblings is a failure: printed with one use per edge as evidence, exit status 1.

Usage, from the repository root: python3 scripts/check-modules.py
"""

import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rust_source as rs  # noqa: E402


def crate_targets(root='.'):
    """[(label, root file)] of the workspace's lib and bin targets."""
    meta = json.loads(subprocess.run(
        ['cargo', 'metadata', '--no-deps', '--format-version', '1'],
        cwd=root, check=True, capture_output=True, text=True).stdout)
    out = []
    for pkg in meta['packages']:
        for t in pkg['targets']:
            kinds = set(t['kind'])
            if 'bin' in kinds:
                out.append((pkg['name'] + '/' + t['name'], t['src_path']))
            elif kinds & {'lib', 'rlib', 'dylib', 'cdylib', 'staticlib', 'proc-macro'}:
                out.append((pkg['name'], t['src_path']))
    return sorted(out)


def load_crate(root_file):
    """{module path tuple: (file, cleaned source)}: cleaned is without comments, strings and
    test-cfg mod items, same offsets as the file."""
    mods = {}

    def visit(path, file, is_root):
        src = rs.read(file)
        clean = rs.strip_tests(rs.blank_comments_and_strings(src))
        mods[path] = (file, clean)
        for name in rs.declared_modules(clean):
            child = rs.module_file(file, name, crate_root=is_root)
            if child is not None and path + (name,) not in mods:
                visit(path + (name,), child, False)

    visit((), root_file, True)
    return mods


def split_top(s, sep=','):
    """Split at `sep` outside braces."""
    parts, depth, cur = [], 0, ''
    for c in s:
        if c == '{':
            depth += 1
        elif c == '}':
            depth -= 1
        if c == sep and depth == 0:
            parts.append(cur)
            cur = ''
        else:
            cur += c
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def expand_use_tree(tree):
    """`a::{b, c::{d, self}}` -> [['a','b'], ['a','c','d'], ['a','c']] (aliases and globs
    dropped to their path)."""
    tree = re.sub(r'\s+', ' ', tree).strip()
    if '{' not in tree:
        tree = re.sub(r'\s+as\s+\w+$', '', tree)
        segs = [x.strip() for x in tree.split('::') if x.strip() not in ('', '*')]
        return [segs]
    i = tree.index('{')
    prefix = [x.strip() for x in tree[:i].split('::') if x.strip()]
    inner = tree[i + 1:rs.matching_brace(tree, i) - 1]
    out = []
    for item in split_top(inner):
        for sub in expand_use_tree(item):
            if sub[:1] == ['self']:
                sub = sub[1:]
            out.append(prefix + sub)
    return out


USE = re.compile(r'\buse\s+([^;]*);')
PATH = re.compile(r'(?<![\w:])((?:crate|super|self)(?:\s*::\s*\w+)+)')


def resolve(segs, module):
    """Absolute module-relative segments of a `crate::`/`super::`/`self::` path used in
    `module`, or None for another crate's path."""
    if not segs:
        return None
    if segs[0] == 'crate':
        return list(segs[1:])
    if segs[0] in ('super', 'self'):
        base = list(module)
        rest = list(segs)
        if rest[0] == 'self':
            rest = rest[1:]
        while rest and rest[0] == 'super':
            if not base:
                return None
            base.pop()
            rest = rest[1:]
        return base + rest
    return None


def root_reexports(mods):
    """{name: module tuple} of the names the crate root re-exports from its modules."""
    _, clean = mods[()]
    names = {}
    for m in re.finditer(r'\bpub(?:\s*\([^)]*\))?\s+use\s+([^;]*);', clean):
        tree = m.group(1)
        for segs in expand_use_tree(tree):
            alias = re.search(r'\bas\s+(\w+)\s*$', tree) if '{' not in tree else None
            if not segs:
                continue
            if segs[0] in ('crate', 'self'):
                segs = segs[1:]
            if len(segs) < 2 or (segs[0],) not in mods:
                continue
            target = deepest(mods, segs[:-1])
            if target:
                names[alias.group(1) if alias else segs[-1]] = target
    # `pub use a::{X as Y}` aliases inside groups
    for m in re.finditer(r'\bpub(?:\s*\([^)]*\))?\s+use\s+(\w+(?:::\w+)*)::\{([^}]*)\}', clean):
        for item in m.group(2).split(','):
            a = re.match(r'\s*(\w+)\s+as\s+(\w+)', item)
            if a and (m.group(1).split('::')[0],) in mods:
                t = deepest(mods, m.group(1).split('::'))
                if t:
                    names[a.group(2)] = t
    return names


def deepest(mods, segs):
    for k in range(len(segs), 0, -1):
        if tuple(segs[:k]) in mods:
            return tuple(segs[:k])
    return ()


def line_of(text, offset):
    return text.count('\n', 0, offset) + 1


def module_uses(mods):
    """[(from module, to module, file, line, path text)] for every path into another module."""
    reexp = root_reexports(mods)
    uses = []
    for module, (file, clean) in mods.items():
        found = []  # (offset, segs, text)
        rest = clean
        for m in USE.finditer(clean):
            for segs in expand_use_tree(m.group(1)):
                found.append((m.start(), segs, re.sub(r'\s+', ' ', m.group(0))))
            rest = rs.blank_ranges(rest, [(m.start(), m.end())])
        for m in PATH.finditer(rest):
            segs = [x.strip() for x in m.group(1).split('::')]
            found.append((m.start(), segs, m.group(1)))
        for off, segs, text in found:
            abs_segs = resolve(segs, module)
            if abs_segs is None:
                continue
            if abs_segs and abs_segs[0] in reexp and (abs_segs[0],) not in mods:
                abs_segs = list(reexp[abs_segs[0]]) + abs_segs[1:]
            target = deepest(mods, abs_segs)
            uses.append((module, target, file, line_of(clean, off), text))
    return uses


def sibling_edges(uses):
    """{(parent, a, b): first evidence} for the uses not between ancestor and descendant."""
    edges = {}
    for frm, to, file, line, text in uses:
        c = 0
        while c < min(len(frm), len(to)) and frm[c] == to[c]:
            c += 1
        if c == len(frm) or c == len(to):
            continue  # same module, ancestor or descendant
        key = (frm[:c], frm[c], to[c])
        edges.setdefault(key, (frm, to, file, line, text))
    return edges


def simple_cycles(graph):
    """Elementary cycles of {node: set(nodes)}, each starting at its smallest node."""
    cycles = []
    nodes = sorted(graph)
    for s in nodes:
        stack = [(s, [s])]
        while stack:
            v, path = stack.pop()
            for w in sorted(graph.get(v, ()), reverse=True):
                if w == s:
                    cycles.append(path + [s])
                elif w > s and w not in path:
                    stack.append((w, path + [w]))
    return sorted(cycles, key=lambda c: (len(c), c))


def crate_cycles(root_file):
    """[(cycle as module tuples, [evidence per edge])] of one crate."""
    mods = load_crate(root_file)
    edges = sibling_edges(module_uses(mods))
    by_parent = {}
    for (parent, a, b) in edges:
        by_parent.setdefault(parent, {}).setdefault(a, set()).add(b)
    out = []
    for parent in sorted(by_parent):
        for cyc in simple_cycles(by_parent[parent]):
            ev = [edges[(parent, cyc[i], cyc[i + 1])] for i in range(len(cyc) - 1)]
            out.append(([parent + (x,) for x in cyc], ev))
    return out


def fmt_mod(m):
    return '::'.join(m) or 'crate'


def report(crates, root='.'):
    """Print the cycles of [(label, root file)]; True when there are none."""
    ok = True
    for label, root_file in crates:
        for cyc, evidence in crate_cycles(root_file):
            ok = False
            print(f'{label}: ' + ' -> '.join(fmt_mod(m) for m in cyc))
            for frm, to, file, line, text in evidence:
                print(f'    {fmt_mod(frm)} uses {fmt_mod(to)}: '
                      f'{os.path.relpath(file, root)}:{line}: {text}')
    if ok:
        print(f'no module cycles in {len(crates)} crates')
    return ok


def main():
    crates = crate_targets('.')
    sys.exit(0 if report(crates, os.getcwd()) else 1)


if __name__ == '__main__':
    main()
