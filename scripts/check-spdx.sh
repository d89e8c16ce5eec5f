#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Every source, build and script file the project ships names its licence on one of its first
# lines (`SPDX-License-Identifier: Apache-2.0`, README "Licence"). Exit status 1 lists the files
# without it. Run by ctest (`spdx-headers`) and by hand: scripts/check-spdx.sh [ROOT].
set -euo pipefail
root="${1:-$(cd "$(dirname "$0")/.." && pwd)}"
cd "$root"
if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  echo "check-spdx: $root is not a git checkout; it lists the shipped files with git ls-files" >&2
  exit 2
fi
missing=0
while IFS= read -r -d '' file; do
  if ! head -n 3 "$file" | grep -q 'SPDX-License-Identifier: Apache-2.0'; then
    echo "no SPDX-License-Identifier line in the first 3 lines: $file" >&2
    missing=$((missing + 1))
  fi
done < <(git ls-files -z -- '*.cpp' '*.hpp' '*.h' '*.proto' '*.cmake' '*CMakeLists.txt' '*.sh' '*.py' \
           '*.in' '*.cfg' '*.cmd' '.ci/run' 'fuzz/*.c' 2>/dev/null)
if [[ $missing -gt 0 ]]; then
  echo "$missing file(s) without a licence line: add '// SPDX-License-Identifier: Apache-2.0' (C++," \
       "proto) or '# SPDX-License-Identifier: Apache-2.0' (CMake, shell, after a #! line)" >&2
  exit 1
fi
echo "every shipped source file names its licence (Apache-2.0)"
