#!/usr/bin/env bash
# egs/accent/vc1: non-parallel many-to-many accent conversion with a conditional normalizing
#   flow (PAPERS.md section 8): remap the phonetic conditioning to the target accent, warp the
#   durations with a per-accent duration model, attend from the target-length sequence to the
#   source latents, invert the flow with the target conditioning and the source speaker.
#
#   ./run.sh --size tiny     # about a minute on 2 CPU cores (tests)
#   ./run.sh                 # full size (RESULTS.md numbers; about 40 minutes on 2 loaded cores)
#
# Stages (each skipped when its marker exists, so a rerun resumes):
#   0  synthesize the corpus (convert-accent make-data): espeak-ng accents x voices; train is
#      non-parallel (every accent its own sentences), judge is held apart, eval is parallel
#      (every sentence by every voice in every accent) and never seen in training
#   1  train the flow, its aligner, duration model, phoneme-to-phoneme model and phone
#      recognizer on train (convert-accent train; resumes from exp/<size>/flow/last.pt)
#   2  train the accent-ID and speaker-ID judges on judge (convert-accent train-judges)
#   3  evaluate the five systems on eval (convert-accent eval): source, plain flow VC (accent
#      label swapped), remap, remap+warp, remap+warp+attend
#   4  exp/<size>/results.md
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

stage=0
stop_stage=100
size=full
accents=""            # (default: tiny en-us,en-gb-scotland; full en-us,en-gb-x-rp,en-gb-scotland,en-029)
voices=""             # (default: tiny m3,f2; full m1,m3:-1:1.05,f2,f4:1:0.95)
train_per_voice=""    # training sentences per accent and voice (default: tiny 6, full 30)
judge_per_voice=""    # (default: tiny 3, full 8)
eval_sentences=""     # (default: tiny 2, full 6)
epochs=""             # flow epochs (default: tiny 2, full 24)
judge_epochs=""       # (default: tiny 2, full 30)
targets=one           # eval: each utterance to one other accent (one) or to every other (all)
asr_model=""          # optional: an sltk transducer for CER, with --asr-lang and --asr-features
asr_lang=""
asr_features=""
nj=2
seed=0
help_message="Usage: $0 [options]   (stages 0-4, see the top of this file)"

. utils/parse_options.sh
. ./path.sh
. ./cmd.sh

case "$size" in
  tiny) accents=${accents:-en-us,en-gb-scotland}; voices=${voices:-m3,f2}; train_per_voice=${train_per_voice:-6}
        judge_per_voice=${judge_per_voice:-3}; eval_sentences=${eval_sentences:-2}; epochs=${epochs:-2}
        judge_epochs=${judge_epochs:-2}; extra_train="--aligner-iterations 2 --recognizer-epochs 1"
        extra_eval="--num-wavs 1 --max-pairs 4" ;;
  full) accents=${accents:-en-us,en-gb-x-rp,en-gb-scotland,en-029}; voices=${voices:-m1,m3:-1:1.05,f2,f4:1:0.95}
        train_per_voice=${train_per_voice:-30}; judge_per_voice=${judge_per_voice:-8}
        eval_sentences=${eval_sentences:-6}; epochs=${epochs:-24}; judge_epochs=${judge_epochs:-30}
        extra_train=""; extra_eval="--num-wavs 4" ;;
  *) die "--size must be tiny or full, not '$size'" ;;
esac
require_positive_int train_per_voice judge_per_voice eval_sentences epochs judge_epochs nj
case "$targets" in one|all) ;; *) die "--targets must be one or all, not '$targets'" ;; esac
asr_opts=()
if [ -n "$asr_model" ]; then
  [ -n "$asr_lang" ] && [ -n "$asr_features" ] || die "--asr-model needs --asr-lang and --asr-features"
  asr_opts=(--asr-model "$asr_model" --asr-lang "$asr_lang" --asr-features "$asr_features")
fi
data=data/$size
exp=exp/$size
mkdir -p "$exp/log"

if stage_in 0 && ! stage_done "$data/corpus"; then
  log "Stage 0: synthesize $accents x $voices -> $data (log: $exp/log/make_data.log)"
  convert-accent make-data --accents "$accents" --voices "$voices" --train-per-voice "$train_per_voice" \
    --judge-per-voice "$judge_per_voice" --eval-sentences "$eval_sentences" --seed "$seed" --nj "$nj" "$data" \
    > "$exp/log/make_data.log" 2>&1 || die "convert-accent make-data failed: see $exp/log/make_data.log"
  mark_done "$data/corpus"
fi

if stage_in 1 && ! stage_done "$exp/flow"; then
  log "Stage 1: train the flow, $epochs epochs (log: $exp/flow/log/train.log)"
  $train_cmd "$exp/flow/log/train.log" convert-accent train --epochs "$epochs" --seed "$seed" $extra_train \
    "$data/train" "$exp/flow"
  mark_done "$exp/flow"
fi

if stage_in 2 && ! stage_done "$exp/judges"; then
  log "Stage 2: train the accent-ID and speaker-ID judges (log: $exp/judges/log/train.log)"
  $train_cmd "$exp/judges/log/train.log" convert-accent train-judges --epochs "$judge_epochs" --seed "$seed" \
    "$data/judge" "$exp/judges"
  mark_done "$exp/judges"
fi

if stage_in 3 && ! stage_done "$exp/eval"; then
  log "Stage 3: evaluate the five systems on $data/eval (log: $exp/eval/log/eval.log)"
  $decode_cmd "$exp/eval/log/eval.log" convert-accent eval --targets "$targets" $extra_eval "${asr_opts[@]}" \
    "$exp/flow/final.pt" "$exp/judges/judges.pt" "$data/eval" "$exp/eval"
  mark_done "$exp/eval"
fi

if stage_in 4 && ! stage_done "$exp/results"; then
  log "Stage 4: $exp/results.md"
  {
    echo "## accent/vc1 ($size): $accents x $voices"
    echo
    cat "$exp/eval/results.md"
    echo
    echo "Judges (held-out accuracy): $(cat "$exp/judges/judges.json" | tr -d '\n' | sed 's/ \+/ /g' | cut -c1-200)"
  } > "$exp/results.md"
  mark_done "$exp/results"
  cat "$exp/results.md"
fi
log "Done: stages $stage..$stop_stage of $0 ($size)"
