"""Lexical helpers for the source checks (check-modules.py, check-duplicates.py).

Not a Rust parser: enough of the lexical structure (comments, strings, braces, attributes) to
find module declarations, `#[cfg(test)]` items and paths. Every transformation keeps offsets
and newlines, so line numbers stay those of the file.
"""

import os
import re


def blank_comments_and_strings(src, keep_strings=False):
    """`src` with comments (and unless keep_strings, string/char literal contents) replaced by
    spaces, newlines kept: braces and paths inside them no longer count."""
    out = list(src)
    i, n = 0, len(src)

    def blank(a, b):
        for k in range(a, b):
            if out[k] != '\n':
                out[k] = ' '

    while i < n:
        c = src[i]
        if c == '/' and src.startswith('//', i):
            j = src.find('\n', i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
        elif c == '/' and src.startswith('/*', i):
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith('/*', j):
                    depth, j = depth + 1, j + 2
                elif src.startswith('*/', j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(i, j)
            i = j
        elif c == 'r' and re.match(r'r#*"', src[i:i + 258]) and not (i and (src[i - 1].isalnum() or src[i - 1] == '_')):
            hashes = re.match(r'r(#*)"', src[i:]).group(1)
            end = src.find('"' + hashes, i + 2 + len(hashes))
            end = n if end < 0 else end + 1 + len(hashes)
            if not keep_strings:
                blank(i + 2 + len(hashes), end - 1 - len(hashes))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == '\\' else 1
            if not keep_strings:
                blank(i + 1, min(j, n))
            i = j + 1
        elif c == "'":
            # A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            m = re.match(r"'(\\(?:u\{[0-9a-fA-F]+\}|x[0-9a-fA-F]{2}|.)|[^\\'\n])'", src[i:i + 12])
            if m:
                if not keep_strings:
                    blank(i + 1, i + m.end() - 1)
                i += m.end()
            else:
                i += 1
        else:
            i += 1
    return ''.join(out)


def matching_brace(s, i):
    """Index just past the `}` closing the `{` at s[i] (s already blanked)."""
    depth = 0
    for j in range(i, len(s)):
        if s[j] == '{':
            depth += 1
        elif s[j] == '}':
            depth -= 1
            if depth == 0:
                return j + 1
    return len(s)


# `#[cfg(test)]`, `#[cfg(all(test, unix))]`: a cfg whose predicate requires `test`.
TEST_CFG = re.compile(r'#\[cfg\(\s*(?:all\((?:[^()]*,\s*)?)?test\b[^\]]*\]')
ATTR = re.compile(r'\s*#\[[^\]]*\]')
MOD_ITEM = re.compile(r'\s*(?:pub(?:\s*\([^)]*\))?\s+)?mod\s+(\w+)\s*([;{])')


def test_modules(blanked):
    """[(start, end, name, inline)] of the `mod` items annotated with a test cfg, in a blanked
    source: `start` at the attribute, `end` past the `;` or the closing `}`."""
    found = []
    for m in TEST_CFG.finditer(blanked):
        j = m.end()
        while True:  # further attributes between the cfg and the item
            a = ATTR.match(blanked, j)
            if not a:
                break
            j = a.end()
        item = MOD_ITEM.match(blanked, j)
        if not item:
            continue
        if item.group(2) == ';':
            found.append((m.start(), item.end(), item.group(1), False))
        else:
            found.append((m.start(), matching_brace(blanked, item.end() - 1), item.group(1), True))
    return found


def blank_ranges(s, ranges):
    out = list(s)
    for a, b in ranges:
        for k in range(a, b):
            if out[k] != '\n':
                out[k] = ' '
    return ''.join(out)


def strip_tests(blanked):
    """A blanked source without its test-cfg `mod` items (declarations and blocks)."""
    return blank_ranges(blanked, [(a, b) for a, b, _, _ in test_modules(blanked)])


def module_dir(path):
    """The directory holding the files of the submodules declared in the file at `path`."""
    base = os.path.basename(path)
    if base in ('lib.rs', 'main.rs', 'mod.rs'):
        return os.path.dirname(path)
    return os.path.join(os.path.dirname(path), base[:-3])


def module_file(parent_path, name, crate_root=False):
    """The file of module `name` declared by `mod name;` in the file at `parent_path`, or None."""
    d = os.path.dirname(parent_path) if crate_root else module_dir(parent_path)
    for cand in (os.path.join(d, name + '.rs'), os.path.join(d, name, 'mod.rs')):
        if os.path.isfile(cand):
            return cand
    return None


def declared_modules(blanked):
    """Names of the out-of-line modules (`mod x;`) declared in a blanked, test-stripped source."""
    return [m.group(1) for m in re.finditer(r'(?m)^\s*(?:pub(?:\s*\([^)]*\))?\s+)?mod\s+(\w+)\s*;', blanked)]


def read(path):
    with open(path, encoding='utf-8') as f:
        return f.read()
