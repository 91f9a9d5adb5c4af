#!/usr/bin/env bash
# egs/kws/aec1: keyword spotting ("computer") and device-directed speech detection while the
#   device plays audio: microphone-only detector, implicit echo cancellation (the loudspeaker
#   reference as a second input: early and mid fusion) and a classical adaptive filter (PBFDAF)
#   in front of the microphone-only detector.
#
#   ./run.sh --size tiny     # a few minutes on 2 CPU cores (tests)
#   ./run.sh                 # full size (RESULTS.md numbers)
#
# Stages (each skipped when its marker exists, so a rerun resumes):
#   0  simulate train, dev and test (kws-aec simulate): near-end speech from several synthesizers,
#      playback (speech, synthetic music) through a loudspeaker nonlinearity, 0-100 ms delay and a
#      room impulse response, at signal-to-echo ratios of -10..+10 dB, and clean utterances;
#      test uses the synthesizers the training never heard (--test-synths)
#   1  train the four variants (kws-aec train)
#   2  evaluate each on test: FRR at --far false accepts per SER bin and clean, DET curves; the
#      fusion models also with a shuffled (wrong) reference (the ablation)
#   3  exp/<size>/results.md
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

stage=0
stop_stage=100
size=full
num_train=""          # utterances (default: tiny 48, full 4000)
num_test=""           # (default: tiny 24, full 1000)
train_synths=espeak,piper
test_synths=flite     # never in training (empty: the same as training)
epochs=""             # (default: tiny 2, full 15)
variants="mic early mid aec"
far=0.05              # false-accept rate at which the false-reject rate is reported
nj=2
seed=0
help_message="Usage: $0 [options]   (stages 0-3, see the top of this file)"

. utils/parse_options.sh
. ./path.sh
. ./cmd.sh

case "$size" in
  tiny) num_train=${num_train:-48}; num_test=${num_test:-24}; epochs=${epochs:-2} ;;
  full) num_train=${num_train:-4000}; num_test=${num_test:-1000}; epochs=${epochs:-15} ;;
  *) die "--size must be tiny or full, not '$size'" ;;
esac
require_positive_int num_train num_test epochs nj
for v in $variants; do
  case "$v" in mic|early|mid|aec) ;; *) die "--variants: unknown variant '$v' (mic early mid aec)" ;; esac
done
data=data/$size
exp=exp/$size
mkdir -p "$exp/log"

if stage_in 0; then
  for s in train dev test; do
    stage_done "$data/$s" && continue
    case "$s" in
      train) n=$num_train; sy=$train_synths; sd=$seed ;;
      dev) n=$(( num_test / 2 > 0 ? num_test / 2 : 1 )); sy=$train_synths; sd=$((seed + 1)) ;;
      test) n=$num_test; sy=${test_synths:-$train_synths}; sd=$((seed + 2)) ;;
    esac
    log "Stage 0: simulate $s ($n utterances, $sy) -> $data/$s"
    kws-aec simulate --num-utts "$n" --seed "$sd" --synths "$sy" --utt-tag "$s" --nj "$nj" "$data/$s" \
      > "$exp/log/simulate_$s.log" 2>&1 || die "kws-aec simulate failed: see $exp/log/simulate_$s.log"
    mark_done "$data/$s"
  done
fi

if stage_in 1; then
  for v in $variants; do
    stage_done "$exp/$v" && continue
    log "Stage 1: train the $v detector, $epochs epochs (log: $exp/$v/log/train.log)"
    $train_cmd "$exp/$v/log/train.log" kws-aec train --variant "$v" --epochs "$epochs" --seed "$seed" \
      "$data/train" "$exp/$v"
    mark_done "$exp/$v"
  done
fi

if stage_in 2; then
  for v in $variants; do
    for shuf in no yes; do
      [ "$shuf" = yes ] && { [ "$v" = early ] || [ "$v" = mid ]; } || [ "$shuf" = no ] || continue
      d=$exp/$v/eval$([ "$shuf" = yes ] && echo _shuffled_ref || true)
      stage_done "$d" && continue
      log "Stage 2: evaluate $v$([ "$shuf" = yes ] && echo ' with a shuffled reference' || true) -> $d"
      $decode_cmd "$d/log/eval.log" kws-aec eval --model "$exp/$v/final.pt" --far "$far" \
        $([ "$shuf" = yes ] && echo --shuffle-ref) "$data/test" "$d"
      mark_done "$d"
    done
  done
fi

if stage_in 3 && ! stage_done "$exp/results"; then
  log "Stage 3: $exp/results.md"
  python3 local/results_table.py --exp "$exp" --variants "$variants" --far "$far" --out "$exp/results.md"
  mark_done "$exp/results"
  cat "$exp/results.md"
fi
log "Done: stages $stage..$stop_stage of $0 ($size)"
