#!/usr/bin/env python3
"""No block of 10 or more lines repeated in the non-test Rust code.

Over `git ls-files '*.rs'`, without paths with a tests/, benches/, examples/ or fuzz/ component,
files that are test-only modules (declared under `#[cfg(test)]`, e.g. mesh/src/privacy_tests.rs)
and `#[cfg(test)] mod ... { ... }` blocks, lines are normalized: stripped; blank lines, comment
lines (`//`, `///`, `//!`) and lines with no letter, digit or `_` (`}`, `);`, `},`) dropped.
Every run of >= 10 consecutive normalized lines found at two places is printed with both
places' files and line ranges, exit status 1.

Usage, from the repository root: python3 scripts/check-duplicates.py
"""

import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rust_source as rs  # noqa: E402

MIN_LINES = 10
EXCLUDED_DIRS = {'tests', 'benches', 'examples', 'fuzz'}


def candidate_files(root='.'):
    files = subprocess.run(['git', 'ls-files', '*.rs'], cwd=root, check=True,
                           capture_output=True, text=True).stdout.split()
    return sorted(f for f in files if not EXCLUDED_DIRS & set(f.split('/')[:-1]))


def test_only_files(files, root='.'):
    """The files of the modules declared under a test cfg (`#[cfg(test)] mod x;`) by any of
    `files`, and the files below their directories."""
    roots = []
    for f in files:
        blanked = rs.blank_comments_and_strings(rs.read(os.path.join(root, f)))
        for _, _, name, inline in rs.test_modules(blanked):
            if inline:
                continue
            path = os.path.join(root, f)
            is_root = os.path.basename(f) in ('lib.rs', 'main.rs')
            child = rs.module_file(path, name, crate_root=is_root)
            if child is not None:
                roots.append(os.path.relpath(child, root))
    out = set(roots)
    for r in roots:
        d = r[:-len('/mod.rs')] if r.endswith('/mod.rs') else r[:-3]
        out |= {f for f in files if f.startswith(d + '/')}
    return out


def normalized_lines(src):
    """[(line number, normalized line)] of a source, without its test-cfg mod blocks."""
    blanked = rs.blank_comments_and_strings(src)
    tests = [(a, b) for a, b, _, inline in rs.test_modules(blanked) if inline]
    kept = rs.blank_ranges(src, tests)
    out = []
    for n, line in enumerate(kept.split('\n'), 1):
        s = line.strip()
        if not s or s.startswith('//') or not re.search(r'\w', s):
            continue
        out.append((n, s))
    return out


def repeated_runs(sources, min_lines=MIN_LINES):
    """[(length, (file, first, last), (file, first, last))] of the maximal runs of >= min_lines
    normalized lines found at two places of {file: [(line number, text)]}."""
    windows = {}
    for f in sorted(sources):
        lines = sources[f]
        for i in range(len(lines) - min_lines + 1):
            key = tuple(t for _, t in lines[i:i + min_lines])
            windows.setdefault(key, []).append((f, i))

    def same(a, b):
        (fa, ia), (fb, ib) = a, b
        la, lb = sources[fa], sources[fb]
        return 0 <= ia < len(la) and 0 <= ib < len(lb) and la[ia][1] == lb[ib][1]

    runs = []
    for occ in windows.values():
        for x in range(len(occ)):
            for y in range(x + 1, len(occ)):
                a, b = occ[x], occ[y]
                if same((a[0], a[1] - 1), (b[0], b[1] - 1)):
                    continue  # not the start of the run
                n = min_lines
                while same((a[0], a[1] + n), (b[0], b[1] + n)):
                    n += 1
                if a[0] == b[0] and b[1] < a[1] + n:
                    continue  # a run overlapping itself
                la, lb = sources[a[0]], sources[b[0]]
                runs.append((n, (a[0], la[a[1]][0], la[a[1] + n - 1][0]),
                             (b[0], lb[b[1]][0], lb[b[1] + n - 1][0])))
    return sorted(runs, key=lambda r: (r[1], r[2]))


def check(files, root='.'):
    """Print the repeated runs among `files` (paths relative to root); True when none."""
    skip = test_only_files(files, root)
    kept = [f for f in files if f not in skip]
    sources = {f: normalized_lines(rs.read(os.path.join(root, f))) for f in kept}
    runs = repeated_runs(sources)
    for n, (fa, a1, a2), (fb, b1, b2) in runs:
        print(f'{n} lines: {fa}:{a1}-{a2} and {fb}:{b1}-{b2}')
        print(f'    {sources[fa][[l for l, _ in sources[fa]].index(a1)][1]}')
    if not runs:
        print(f'no repeated blocks of {MIN_LINES}+ lines in {len(kept)} files')
    return not runs


def main():
    sys.exit(0 if check(candidate_files('.'), '.') else 1)


if __name__ == '__main__':
    main()
