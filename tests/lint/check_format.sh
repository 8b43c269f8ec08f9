#!/usr/bin/env bash
# The formatting gate: every C source and header of the tree is as clang-format (with the
# .clang-format at the root) writes it. usage: check_format.sh SOURCE_ROOT
# Lists the files git tracks (or, outside a git checkout, every .c/.h outside build
# directories) and runs clang-format --dry-run -Werror on them: a file that needs
# reformatting fails the test with clang-format's report (file:line: what changes).
# Fix with: clang-format -i FILE (or over $(git ls-files '*.c' '*.h')).
set -uo pipefail
root=${1:?usage: check_format.sh SOURCE_ROOT}
cd "$root" || exit 1
if ! command -v clang-format >/dev/null 2>&1; then
  echo "clang-format is not installed (.ci/install-deps installs it)"; exit 1
fi
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files '*.c' '*.h')
else
  mapfile -t files < <(find . -path './build*' -prune -o \( -name '*.c' -o -name '*.h' \) -print)
fi
[ "${#files[@]}" -gt 0 ] || { echo "no C files found under $root"; exit 1; }
if clang-format --dry-run -Werror "${files[@]}"; then
  echo "clang-format: ${#files[@]} files formatted ($(clang-format --version))"
else
  echo "clang-format: files above need 'clang-format -i'"; exit 1
fi
