#!/usr/bin/env bash
# Puts the stories260K model (checkpoint + tokenizer + licence) into models/stories260K/,
# a git-ignored folder where `sotto` looks by default.
#
#   MODEL_SRC=/path/to/folder scripts/fetch-model.sh   # copy from a local folder (CI uses ../shared)
#   scripts/fetch-model.sh                             # download the pinned upstream files
#
# Either way every file is checked against the sha256 pinned below before it is put in place.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest=${MODEL_DEST:-$root/models/stories260K}
# Pinned upstream revision (karpathy/tinyllamas); see models/README.md for provenance.
base_url="https://huggingface.co/karpathy/tinyllamas/resolve/0bd21da7698eaf29a0d7de3992de8a46ef624add/stories260K"
declare -A sha=(
  [stories260K.bin]=b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696
  [tok512.bin]=037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312
)

die() { echo "fetch-model: $*" >&2; exit 1; }
check() { # file expected-sha
  local got
  got=$(sha256sum "$1" | cut -d' ' -f1)
  [ "$got" = "$2" ] || die "$1: sha256 is $got, expected $2 (wrong or corrupted file)"
}

src=${MODEL_SRC:-}
if [ -z "$src" ] && [ -d "$root/../shared/models/stories260K" ]; then
  src="$root/../shared/models/stories260K"
fi

mkdir -p "$dest"
tmp=$(mktemp -d "$dest/.fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

for f in "${!sha[@]}"; do
  if [ -f "$dest/$f" ] && [ "$(sha256sum "$dest/$f" | cut -d' ' -f1)" = "${sha[$f]}" ]; then
    continue
  fi
  if [ -n "$src" ]; then
    [ -f "$src/$f" ] || die "$src/$f not found (MODEL_SRC must hold stories260K.bin and tok512.bin)"
    cp "$src/$f" "$tmp/$f"
  else
    command -v curl >/dev/null || die "curl is needed to download $f (or set MODEL_SRC to a folder holding it)"
    echo "downloading $f ..." >&2
    curl -fL --retry 3 -o "$tmp/$f" "$base_url/$f" || die "download of $f failed; set MODEL_SRC to a local copy instead"
  fi
  check "$tmp/$f" "${sha[$f]}"
  mv "$tmp/$f" "$dest/$f"
done

if [ -n "$src" ] && [ -f "$src/LICENSE" ]; then
  cp "$src/LICENSE" "$dest/LICENSE"
else
cat > "$dest/LICENSE" <<'LIC'
stories260K.bin and tok512.bin (karpathy/tinyllamas, stories260K) are distributed under the
MIT License.

Copyright (c) 2023 Andrej Karpathy

Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
associated documentation files (the "Software"), to deal in the Software without restriction,
including without limitation the rights to use, copy, modify, merge, publish, distribute,
sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT
NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT
OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
LIC
fi
echo "model ready in $dest" >&2
