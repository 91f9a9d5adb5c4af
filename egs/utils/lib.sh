# egs/utils/lib.sh: small functions shared by every recipe; sourced by each recipe's path.sh.
#
#   log MESSAGE...       "2024-05-01 12:00:00 [run.sh:42] MESSAGE" on stderr
#   die MESSAGE...       log the message, then exit 1
#   stage_in N           true when $stage <= N <= $stop_stage (both default to "all stages")
#   stage_done DIR/NAME  true when the marker DIR/.NAME.done exists
#   mark_done DIR/NAME   write the marker DIR/.NAME.done (atomically); call it last in a stage
#   link_from SRC DST NAME...  make DST/NAME a link to SRC/NAME for each NAME (another recipe's
#                        data: feature manifests name their storage relative to the recipe
#                        directory, so linking under the same names keeps them valid)
#   spawn CMD ARGS...    run CMD in the background, at most $nj (default 1) at a time
#   wait_all             wait for every spawned job; die naming how many failed
#
# A stage runs when it is in the selected range and its marker is absent, and it writes its
# marker as its last step, so a rerun after a failure skips what finished and resumes:
#
#     if stage_in 2 && ! stage_done data/train/fbank; then
#       log "Stage 2: features"
#       $train_cmd JOB=1:$nj exp/log/fbank.JOB.log compute-features ... JOB ...
#       mark_done data/train/fbank
#     fi
#
# Delete the marker (rm data/train/.fbank.done) to make a finished stage run again.
# Put the marker beside the stage's outputs: deleting the outputs then also deletes it.
# Everything here works under `set -euo pipefail`.

log() {
  local where=${BASH_SOURCE[1]:-${0}}
  printf '%s [%s:%s] %s\n' "$(date '+%Y-%m-%d %H:%M:%S')" "${where##*/}" \
    "${BASH_LINENO[0]:-0}" "$*" >&2
}

die() {
  local where=${BASH_SOURCE[1]:-${0}}
  printf '%s [%s:%s] error: %s\n' "$(date '+%Y-%m-%d %H:%M:%S')" "${where##*/}" \
    "${BASH_LINENO[0]:-0}" "$*" >&2
  exit 1
}

# require_positive_int NAME...: each variable NAME (an option's value) must be a positive
# integer; the error names the option as the user typed it (--num-utts for num_utts).
require_positive_int() {
  local v
  for v in "$@"; do
    [[ ${!v} =~ ^[0-9]+$ ]] && [ "${!v}" -gt 0 ] ||
      die "--${v//_/-} must be a positive integer, not '${!v}'"
  done
}

# The marker file of DIR/NAME: DIR/.NAME.done (NAME alone means ./.NAME.done).
__lib_marker() {
  local target=${1%/}
  [ -n "$target" ] || { echo "lib.sh: a stage marker needs a name (DIR/NAME)" >&2; return 2; }
  local dir=. name=$target
  case "$target" in
    */*) dir=${target%/*} name=${target##*/} ;;
  esac
  printf '%s/.%s.done\n' "${dir:-/}" "$name"
}

stage_in() {
  local n=${1:?stage_in needs a stage number}
  [[ $n =~ ^-?[0-9]+$ ]] || { echo "stage_in: '$n' is not a stage number" >&2; exit 1; }
  local first=${stage:-0} last=${stop_stage:-1000000}
  [[ $first =~ ^-?[0-9]+$ ]] || { echo "stage_in: stage='$first' is not a number" >&2; exit 1; }
  [[ $last =~ ^-?[0-9]+$ ]] || { echo "stage_in: stop_stage='$last' is not a number" >&2; exit 1; }
  [ "$first" -le "$n" ] && [ "$n" -le "$last" ]
}

stage_done() {
  local marker
  marker=$(__lib_marker "${1:-}") || exit 1
  [ -f "$marker" ]
}

mark_done() {
  local marker dir tmp
  marker=$(__lib_marker "${1:-}") || exit 1
  dir=${marker%/*}
  mkdir -p "$dir"
  tmp=$(mktemp "$dir/.tmp.XXXXXX")
  printf 'done %s by %s\n' "$(date '+%Y-%m-%d %H:%M:%S')" "${BASH_SOURCE[1]:-$0}" >"$tmp"
  mv -f "$tmp" "$marker"
}

# Each job writes its exit status to a file: `wait PID` alone is not reliable over a long run,
# where the polling below forks thousands of subshells, PIDs wrap around, and bash forgets the
# status of a finished job whose PID was reused (wait then says 127: a false failure).
__lib_pids=()
__lib_status=""
spawn() {
  while [ "$(jobs -rp | wc -l)" -ge "${nj:-1}" ]; do sleep 0.5; done
  [ -n "$__lib_status" ] || __lib_status=$(mktemp -d "${TMPDIR:-/tmp}/sltk-spawn.XXXXXX")
  local i=${#__lib_pids[@]}
  ( "$@"; echo $? > "$__lib_status/$i" ) &
  __lib_pids+=($!)
}

wait_all() {
  local p i failed=0
  for p in "${__lib_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for ((i = 0; i < ${#__lib_pids[@]}; i++)); do
    [ "$(cat "$__lib_status/$i" 2>/dev/null)" = 0 ] || failed=$((failed + 1))
  done
  __lib_pids=()
  [ -z "$__lib_status" ] || rm -rf "$__lib_status"
  __lib_status=""
  [ "$failed" -eq 0 ] || die "$failed job(s) failed; see the logs named above"
}

link_from() {
  local src=$1 dst=$2 x
  shift 2
  [ -d "$src" ] || die "no $src: run the recipe that makes it first"
  mkdir -p "$dst"
  for x in "$@"; do
    if [ ! -L "$dst/$x" ] || [ "$(readlink "$dst/$x")" != "$src/$x" ]; then
      log "link $dst/$x -> $src/$x"
      [ -e "$dst/$x" ] && [ ! -L "$dst/$x" ] && die "$dst/$x exists and is not a link; remove it"
      ln -sfn "$src/$x" "$dst/$x"
    fi
  done
}
