#!/usr/bin/env bash
# egs/tts/prosody1: expressive TTS with prosody embeddings at utterance, word and phoneme
#   granularity (Babianski et al., SLT 2022), on an espeak-ng corpus whose focus words are
#   changed with SSML and marked in the text only half of the time.
#
#   ./run.sh --size tiny     # about a minute on 2 CPU cores (tests; the numbers mean nothing)
#   ./run.sh                 # full size (RESULTS.md numbers)
#
# Stages (each skipped when its marker exists, so a rerun resumes):
#   0  synthesize train and test (synth-prosody make-data; different seeds, so different sentences)
#   1  phonemize, log-mel and align train (training the aligner), then test with train's aligner
#   2  train one model per granularity (synth-prosody train: none utterance word phoneme)
#   3  evaluate each on test: oracle (reconstruction) and predicted embeddings; MCD, log-F0
#      RMSE/correlation, duration error (and the CER of sltk's ASR with --asr-model); contour
#      plots and sample wavs (synth-prosody eval)
#   4  exp/<size>/results.md (synth-prosody report: with the share of the none->oracle gap that
#      predicted embeddings close), and wavs of the first test sentence from its text and with the
#      prosody of its recording (synth-prosody synth; tiny: word level only) in exp/<size>/samples
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

stage=0
stop_stage=100
size=full
num_train=""          # utterances (default: tiny 24, full 1000)
num_test=""           # (default: tiny 3, full 50)
epochs=""             # (default: tiny 2, full 25)
dim=""                # model width (default: tiny 32, full 96)
gl_iters=""           # Griffin-Lim iterations in evaluation (default: tiny 8, full 32)
granularities="none utterance word phoneme"
voices=en-us+m3
asr_model=""          # optional: an sltk transducer (e.g. ../../assistant/asr1/exp/full/model_conformer/avg-4-5.pt)
asr_lang=""           #   its lang dir, and the features.json of its training features: adds the ASR CER
asr_features=""
nj=2
seed=0
help_message="Usage: $0 [options]   (stages 0-4, see the top of this file)"

. utils/parse_options.sh
. ./path.sh
. ./cmd.sh

case "$size" in
  tiny) num_train=${num_train:-24}; num_test=${num_test:-3}; epochs=${epochs:-2}; dim=${dim:-32}
        gl_iters=${gl_iters:-8} ;;
  full) num_train=${num_train:-1000}; num_test=${num_test:-50}; epochs=${epochs:-25}; dim=${dim:-96}
        gl_iters=${gl_iters:-32} ;;
  *) die "--size must be tiny or full, not '$size'" ;;
esac
require_positive_int num_train num_test epochs dim gl_iters nj
for g in $granularities; do
  case "$g" in none|utterance|word|phoneme) ;;
    *) die "--granularities: unknown granularity '$g' (none utterance word phoneme)" ;; esac
done
data=data/$size
exp=exp/$size
mkdir -p "$exp/log"

if stage_in 0; then
  for s in train test; do
    stage_done "$data/$s" && continue
    case "$s" in train) n=$num_train; sd=$seed; tag=tr ;; test) n=$num_test; sd=$((seed + 1)); tag=te ;; esac
    log "Stage 0: synthesize $s ($n utterances, $voices) -> $data/$s"
    synth-prosody make-data --num-utts "$n" --seed "$sd" --voices "$voices" --utt-tag "$tag" --nj "$nj" \
      "$data/$s" > "$exp/log/make_data_$s.log" 2>&1 || die "synth-prosody make-data failed: see $exp/log/make_data_$s.log"
    mark_done "$data/$s"
  done
fi

if stage_in 1; then
  if ! stage_done "$exp/align_train"; then
    log "Stage 1: align train -> $exp/align_train"
    $train_cmd "$exp/log/align_train.log" synth-prosody align "$data/train" "$exp/align_train"
    mark_done "$exp/align_train"
  fi
  if ! stage_done "$exp/align_test"; then
    log "Stage 1: align test with train's aligner -> $exp/align_test"
    $train_cmd "$exp/log/align_test.log" synth-prosody align --aligner "$exp/align_train/aligner.json" \
      "$data/test" "$exp/align_test"
    mark_done "$exp/align_test"
  fi
fi

if stage_in 2; then
  for g in $granularities; do
    stage_done "$exp/$g" && continue
    log "Stage 2: train granularity $g, $epochs epochs (log: $exp/$g/log/train.log)"
    $train_cmd "$exp/$g/log/train.log" synth-prosody train --granularity "$g" --epochs "$epochs" --dim "$dim" \
      --seed "$seed" "$exp/align_train" "$exp/$g"
    mark_done "$exp/$g"
  done
fi

if stage_in 3; then
  for g in $granularities; do
    stage_done "$exp/$g/eval" && continue
    log "Stage 3: evaluate granularity $g -> $exp/$g/eval"
    asr_opts=()
    [ -z "$asr_model" ] || asr_opts=(--asr-model "$asr_model" --asr-lang "$asr_lang" --asr-features "$asr_features")
    $decode_cmd "$exp/$g/eval/log/eval.log" synth-prosody eval --gl-iters "$gl_iters" "${asr_opts[@]}" \
      "$exp/$g/final.pt" "$exp/align_test" "$exp/$g/eval"
    mark_done "$exp/$g/eval"
  done
fi

if stage_in 4 && ! stage_done "$exp/results"; then
  log "Stage 4: $exp/results.md and samples in $exp/samples"
  synth-prosody report --utt2prosody "$exp/align_test/utt2prosody" "$exp" "$exp/results.md" > "$exp/log/report.log" 2>&1 ||
    die "synth-prosody report failed: see $exp/log/report.log"
  mkdir -p "$exp/samples"
  first=$(head -n 1 "$exp/align_test/text" | cut -d' ' -f1)
  first_text=$(head -n 1 "$exp/align_test/text" | cut -d' ' -f2-)
  first_wav=$(grep "^$first " "$exp/align_test/wav.scp" | cut -d' ' -f2-)
  for g in $granularities; do  # the text's own prediction, and the prosody of its test recording
    [ "$g" = word ] || [ "$size" = full ] || continue
    synth-prosody synth --granularity "$g" "$exp" "$first_text" -o "$exp/samples/${first}_${g}_predicted.wav" \
      >> "$exp/log/samples.log" 2>&1 || die "synth-prosody synth failed: see $exp/log/samples.log"
    [ "$g" = none ] && continue
    synth-prosody synth --granularity "$g" --reference "$first_wav" "$exp" "$first_text" \
      -o "$exp/samples/${first}_${g}_reference.wav" >> "$exp/log/samples.log" 2>&1 ||
      die "synth-prosody synth failed: see $exp/log/samples.log"
  done
  mark_done "$exp/results"
  cat "$exp/results.md"
fi
log "Done: stages $stage..$stop_stage of $0 ($size)"
