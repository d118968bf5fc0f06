"""Unit tests of scripts/check-modules.py and scripts/check-duplicates.py on small fake crates.

Run from the repository root: python3 -m unittest discover -s scripts/tests
"""

import contextlib
import importlib.util
import io
import os
import sys
import tempfile
import textwrap
import unittest

SCRIPTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, SCRIPTS)


def load(name):
    spec = importlib.util.spec_from_file_location(name.replace('-', '_'),
                                                  os.path.join(SCRIPTS, name + '.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


modules = load('check-modules')
duplicates = load('check-duplicates')


class FakeTree(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.root = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def write(self, rel, text):
        path = os.path.join(self.root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as f:
            f.write(textwrap.dedent(text))
        return path

    def quiet(self, fn, *args):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            result = fn(*args)
        return result, out.getvalue()


class ModuleCycles(FakeTree):
    def cycles(self, lib):
        return [[modules.fmt_mod(m) for m in cyc] for cyc, _ in modules.crate_cycles(lib)]

    def test_cycle_through_super_paths(self):
        lib = self.write('src/lib.rs', 'mod net;\n')
        self.write('src/net/mod.rs', 'mod handle;\nmod transport;\n')
        self.write('src/net/handle.rs', 'use super::transport::Link;\npub struct Handle;\n')
        self.write('src/net/transport.rs', 'pub struct Link(super::handle::Handle);\n')
        self.assertEqual(self.cycles(lib), [['net::handle', 'net::transport', 'net::handle']])
        ok, out = self.quiet(modules.report, [('fake', lib)], self.root)
        self.assertFalse(ok)
        self.assertIn('fake: net::handle -> net::transport -> net::handle', out)

    def test_cycle_through_a_grouped_use_and_a_root_reexport(self):
        lib = self.write('src/lib.rs', 'mod a;\nmod b;\nmod c;\npub use c::Gamma;\n')
        self.write('src/a.rs', 'use crate::{b::Beta, Gamma};\npub struct Alpha;\n')
        self.write('src/b.rs', 'pub struct Beta;\n')
        # c uses a only through the re-export-free path: a -> c (via Gamma) -> a.
        self.write('src/c.rs', 'pub struct Gamma(crate::a::Alpha);\n')
        self.assertEqual(self.cycles(lib), [['a', 'c', 'a']])

    def test_nested_grouped_use_collapses_to_siblings(self):
        lib = self.write('src/lib.rs', 'mod x;\nmod y;\n')
        self.write('src/x/mod.rs', 'mod inner;\n')
        self.write('src/x/inner.rs', 'use crate::{y::{deep::D, Y}};\n')
        self.write('src/y/mod.rs', 'pub mod deep;\npub struct Y;\nfn f() { let _ = crate::x::inner::g; }\n')
        self.write('src/y/deep.rs', 'pub struct D;\n')
        self.assertEqual(self.cycles(lib), [['x', 'y', 'x']])

    def test_parent_and_child_using_each_other_is_no_cycle(self):
        lib = self.write('src/lib.rs', 'mod session;\npub use session::Session;\n')
        self.write('src/session/mod.rs', 'mod wire;\npub struct Session(wire::Frame);\n'
                                         'pub use self::wire::Frame;\n')
        self.write('src/session/wire.rs', 'use super::Session;\nuse crate::Session as S;\n'
                                          'pub struct Frame;\n')
        self.assertEqual(self.cycles(lib), [])
        ok, out = self.quiet(modules.report, [('fake', lib)], self.root)
        self.assertTrue(ok)
        self.assertEqual(out.strip(), 'no module cycles in 1 crates')

    def test_test_code_and_comments_are_not_uses(self):
        lib = self.write('src/lib.rs', 'mod a;\nmod b;\n#[cfg(test)]\nmod a_tests;\n')
        self.write('src/a.rs', 'pub struct A;\n// crate::b::B in a comment\n'
                               'const S: &str = "crate::b::B";\n'
                               '#[cfg(test)]\nmod tests {\n    use crate::b::B;\n    fn f() { let _ = B; }\n}\n')
        self.write('src/b.rs', 'pub struct B(crate::a::A);\n')
        self.write('src/a_tests.rs', 'use crate::b::B;\nuse crate::a::A;\n')
        self.assertEqual(self.cycles(lib), [])
        self.assertNotIn(('a_tests',), modules.load_crate(lib))


class RepeatedBlocks(FakeTree):
    BLOCK = [f'let v{i} = compute({i}, &input);' for i in range(10)]

    def rust_fn(self, name, body, pad=0):
        lines = ['// padding'] * pad + [f'fn {name}() {{'] + ['    ' + b for b in body] + ['}', '']
        return '\n'.join(lines)

    def run_check(self, files):
        return self.quiet(duplicates.check, sorted(files), self.root)

    def test_ten_repeated_lines_are_found(self):
        self.write('src/a.rs', self.rust_fn('one', self.BLOCK))
        self.write('src/b.rs', self.rust_fn('two', ['// a comment', ''] + self.BLOCK + ['});'], pad=3))
        ok, out = self.run_check(['src/a.rs', 'src/b.rs'])
        self.assertFalse(ok)
        self.assertIn('10 lines: src/a.rs:2-11 and src/b.rs:7-16', out)

    def test_nine_repeated_lines_are_not_found(self):
        self.write('src/a.rs', self.rust_fn('one', self.BLOCK[:9]))
        self.write('src/b.rs', self.rust_fn('two', self.BLOCK[:9] + ['let other = 1;']))
        ok, out = self.run_check(['src/a.rs', 'src/b.rs'])
        self.assertTrue(ok)
        self.assertEqual(out.strip(), 'no repeated blocks of 10+ lines in 2 files')

    def test_punctuation_and_comment_lines_do_not_count(self):
        body = []
        for line in self.BLOCK[:9]:
            body += [line, '}', '// note', '', ');']
        self.write('src/a.rs', self.rust_fn('one', body))
        self.write('src/b.rs', self.rust_fn('two', self.BLOCK[:9]))
        ok, _ = self.run_check(['src/a.rs', 'src/b.rs'])
        self.assertTrue(ok)

    def test_test_code_is_excluded(self):
        self.write('src/lib.rs', 'mod a;\n#[cfg(test)]\nmod lib_tests;\n')
        self.write('src/a.rs', self.rust_fn('one', self.BLOCK)
                   + '#[cfg(test)]\nmod tests {\n' + self.rust_fn('t', self.BLOCK) + '}\n')
        self.write('src/lib_tests.rs', self.rust_fn('two', self.BLOCK))
        ok, out = self.run_check(['src/lib.rs', 'src/a.rs', 'src/lib_tests.rs'])
        self.assertTrue(ok, out)
        self.assertEqual(out.strip(), 'no repeated blocks of 10+ lines in 2 files')

    def test_excluded_directories(self):
        self.assertEqual(
            [f for f in ['a/src/x.rs', 'a/tests/x.rs', 'benches/y.rs', 'a/examples/e.rs',
                         'fuzz/f.rs', 'a/src/tests.rs']
             if not duplicates.EXCLUDED_DIRS & set(f.split('/')[:-1])],
            ['a/src/x.rs', 'a/src/tests.rs'])


if __name__ == '__main__':
    unittest.main()
