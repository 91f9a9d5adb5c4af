#!/usr/bin/env bash
# tools/test.sh: the test command. Installs (tools/install.sh) when tools/venv is missing or
# stale, then runs the whole pytest suite. Extra arguments go to pytest:
#   tools/test.sh                  # everything
#   tools/test.sh tests/data -x    # one folder, stop at the first failure
set -euo pipefail
tools=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$tools")
if ! "$tools/install.sh" --check; then
  "$tools/install.sh"
fi
cd "$root"
export PATH="$tools/venv/bin:$PATH"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec "$tools/venv/bin/python" -m pytest "$@"
