# path.sh: sourced by run.sh. Puts sltk's programs on PATH, installing sltk on first use.
# SLTK_ROOT may be set to run a copy of the recipe elsewhere (the tests do).
SLTK_ROOT=${SLTK_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)}
if ! "$SLTK_ROOT/tools/install.sh" --check; then
  echo "path.sh: tools/venv is missing or stale: running tools/install.sh" >&2
  "$SLTK_ROOT/tools/install.sh" || exit 1
fi
export PATH="$SLTK_ROOT/bin:$SLTK_ROOT/tools/venv/bin:$PATH"
export LC_ALL=C PYTHONUNBUFFERED=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
. "$SLTK_ROOT/egs/utils/lib.sh"
