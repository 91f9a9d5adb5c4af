#!/usr/bin/env bash
# egs/assistant/bias1: personalizing CTC recognition (asr1's model, its CTC head) with personal
#   catalogs of rare names: encoder biasing (a catalog encoder + cross-attention adapter before
#   the CTC head), decoder biasing (a context graph with failure arcs, in a CTC prefix beam
#   search and as a k2 graph for lattice decoding), and adaptive boosting (the boost gated by the
#   adapter's attention on the catalog).
#
#   ../asr1/run.sh --size tiny && ./run.sh --size tiny     # a few minutes on 2 CPU cores (tests)
#   ./run.sh                                               # full size (RESULTS.md numbers)
#
# Stages (each skipped when its marker exists, so a rerun resumes):
#   0  link asr1's data/<size>/{fbank,synth,lang_bpe_N} into data/<size>; check the base model
#   1  names: test names (the catalog entries that are spoken in test) and a pool of distractor
#      names, all invented and never in the base corpus (local/make_word_sets.py)
#   2  a corpus with the base corpus's voices (make-synth-corpus): training utterances with its
#      own invented rare names (the context adapter learns from them), test utterances of which
#      --name-rate hold a test name (the others none: WER without catalog words); features;
#      a personal catalog per test utterance: its names + distractors (local/make_catalogs.py)
#   3  train the context adapter (train-context-adapter; the base frozen)
#   4  bias-decode the test set: baseline, encoder bias, decoder bias, both, both + adaptive
#      (k2 lattice: adaptive boosting rescores the lattice's paths with the gated boost); score
#      WER (with / without catalog words) and catalog-word precision, recall, F1 (compute-wer --utt2terms)
#   5  catalog size: the full system (encoder + decoder + adaptive) with catalogs of --scale-sizes entries on --scale-utts
#      test utterances: F1 and decoding time
#   6  exp/<size>/results.md
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

stage=0
stop_stage=100
size=full              # tiny | full: asr1's corpus and base model, and the defaults below
asr_dir=../asr1
num_utts=""            # utterances of the biasing corpus (default: tiny 40, full 2400)
num_test_names=""      # names that may be spoken in test (default: tiny 6, full 200)
name_rate=0.5          # share of test utterances made to hold a test name
catalog_size=20        # entries of each test utterance's personal catalog
adapter_steps=""       # train-context-adapter steps (default: tiny 10, full 600)
boost=""               # decoder-biasing bonus per token (default: conf/bias.yaml's)
scale_sizes=""         # catalog sizes of stage 5 (default: tiny "10 100", full "10 100 1000 10000")
scale_utts=""          # test utterances decoded per size in stage 5 (default: tiny 8, full 100)
methods="prefix-beam k2-lattice"
max_duration=""        # seconds of audio per training batch (default: tiny 40, full 20)
train_threads=""
nj=2
seed=0                 # asr1's corpus seed (the same voices; do not change)
help_message="Usage: $0 [options]   (stages 0-6, see the top of this file)"

. utils/parse_options.sh
. ./path.sh
. ./cmd.sh

case "$size" in
  tiny) d_utts=40; d_names=6; d_steps=10; d_scale="10 100"; d_sutts=8; d_dur=40; vocab=100
        model_name=model_tiny; corpus_size=tiny; d_pool=200 ;;
  full) d_utts=2400; d_names=200; d_steps=600; d_scale="10 100 1000 10000"; d_sutts=100; d_dur=20; vocab=100
        model_name=model_conformer; corpus_size=full; d_pool=10000 ;;
  *) die "--size must be tiny or full, not '$size'" ;;
esac
num_utts=${num_utts:-$d_utts}
num_test_names=${num_test_names:-$d_names}
adapter_steps=${adapter_steps:-$d_steps}
scale_sizes=${scale_sizes:-$d_scale}
scale_utts=${scale_utts:-$d_sutts}
max_duration=${max_duration:-$d_dur}
train_threads=${train_threads:-$([ "$size" = tiny ] && echo 1 || getconf _NPROCESSORS_ONLN)}
require_positive_int num_utts num_test_names catalog_size adapter_steps scale_utts train_threads nj
for m in $methods; do
  case "$m" in prefix-beam|k2-lattice) ;; *) die "--methods: unknown method '$m' (prefix-beam, k2-lattice)" ;; esac
done
bargs=""
[ -n "$boost" ] && bargs="--boost $boost"

data=data/$size
lang=$data/lang_bpe_$vocab
exp=exp/$size
asr_exp=$asr_dir/exp/$size/$model_name
corpus=$data/corpus
mkdir -p "$exp/log"

# ---------------------------------------------------------------- 0: asr1's data and base model
if stage_in 0; then
  # asr1's features, transcripts and lang directory, linked into data/<size> under their own names
  link_from "$(cd "$asr_dir" && pwd)/data/$size" "$data" fbank synth "lang_bpe_$vocab"
fi
base_model=$(ls -t "$asr_exp"/avg-*.pt 2>/dev/null | head -1 || true)
[ -n "$base_model" ] || base_model=$(ls -t "$asr_exp"/epoch-*.pt 2>/dev/null | head -1 || true)
[ -n "$base_model" ] || die "no base model in $asr_exp: run $asr_dir/run.sh --size $size --stop-stage 3"
[ -f "$lang/bpe.model" ] || die "no $lang/bpe.model: run $asr_dir/run.sh --size $size"

# ---------------------------------------------------------------- 1: names
if stage_in 1 && ! stage_done "$data/names"; then
  log "Stage 1: $num_test_names test names and $d_pool distractor names -> $data/names"
  n=$(( num_test_names > d_pool ? num_test_names : d_pool ))
  python3 local/make_word_sets.py --base-synth "$data/synth" --num-sets 2 --words-per-set "$n" \
    --seed "$seed" --out-dir "$data/names/sets"
  head -n "$num_test_names" "$data/names/sets/set1.txt" > "$data/names/test.txt"
  head -n "$d_pool" "$data/names/sets/set2.txt" > "$data/names/distractors.txt"
  mark_done "$data/names"
fi

# ---------------------------------------------------------------- 2: corpus, features, catalogs
if stage_in 2 && ! stage_done "$corpus"; then
  log "Stage 2: biasing corpus ($num_utts utterances) -> $corpus"
  make-synth-corpus --size "$corpus_size" --seed "$seed" --nj "$nj" --num-utts "$num_utts" --utt-tag bias \
    --num-rare-words "$(( num_test_names ))" --rare-rate 0.4 --plain-frac 0.1 \
    --holdout-words "$data/names/test.txt" --holdout-sets test --holdout-rate "$name_rate" \
    --heldout-synth festival --heldout-frac 0 --dev-frac 0.05 --test-frac 0.2 \
    "$corpus/synth" > "$exp/log/synth.log" 2>&1 || die "make-synth-corpus failed: see $exp/log/synth.log"
  for s in train dev test; do
    compute-features --config "$asr_dir/conf/fbank.yaml" --nj "$nj" "$corpus/synth/$s" "$corpus/fbank/$s" \
      > "$exp/log/fbank_$s.log" 2>&1 || die "compute-features failed: see $exp/log/fbank_$s.log"
  done
  python3 local/make_catalogs.py --text "$corpus/synth/test/text" --names "$data/names/test.txt" \
    --distractors "$data/names/distractors.txt" --size "$catalog_size" --seed "$seed" \
    --out-dir "$corpus/catalogs/test_$catalog_size"
  mark_done "$corpus"
fi

# ---------------------------------------------------------------- 3: context adapter
model=$exp/context_adapter/final.pt
if stage_in 3 && [ ! -f "$model" ]; then
  log "Stage 3: train the context adapter, $adapter_steps steps (log: $exp/context_adapter/log/train.log)"
  $train_cmd --num-threads "$train_threads" "$exp/context_adapter/log/train.log" \
    train-context-adapter --config conf/train_context_adapter.yaml --base "$base_model" \
      --rare-words "$corpus/synth/rare_words.txt" --cuts-train "$corpus/fbank/train/cuts.jsonl.gz" \
      --cuts-dev "$corpus/fbank/dev/cuts.jsonl.gz" --lang-dir "$lang" --exp-dir "$exp/context_adapter" \
      --max-steps "$adapter_steps" --max-duration "$max_duration" --seed "$seed" "$model"
  [ -f "$model" ] || die "train-context-adapter ended without $model"
fi

# ---------------------------------------------------------------- 4: decode
configs="baseline encoder decoder both both_adaptive"
cfg_args() {  # cfg_args CONFIG: bias-decode options of a configuration
  case "$1" in
    baseline) echo "--encoder-bias off --boost 0" ;;
    encoder) echo "--encoder-bias on --boost 0" ;;
    decoder) echo "--encoder-bias off $bargs" ;;
    both) echo "--encoder-bias on $bargs" ;;
    both_adaptive) echo "--encoder-bias on --adaptive on $bargs" ;;
  esac
}
decode_score() {  # decode_score DIR UTT2CATALOG CUTS [bias-decode options]
  local dir=$1 cat=$2 cuts=$3
  shift 3
  stage_done "$dir" && return 0
  rm -f "$exp/.results.done"
  mkdir -p "$dir/log"
  $decode_cmd "$dir/log/decode.log" \
    bias-decode --config conf/bias.yaml --checkpoint "$model" --cuts "$cuts" --lang-dir "$lang" \
      --utt2catalog "$cat" --out-dir "$dir" "$@"
  compute-wer --mode present --out-dir "$dir/scoring" --utt2terms "$cat" \
    --group-by "$(dirname "$cat")/utt2hascat" "$corpus/synth/test/text" "$dir/hyp.txt" \
    > "$dir/wer.txt" 2> "$dir/log/score.log" || die "compute-wer failed: see $dir/log/score.log"
  mark_done "$dir"
}
if stage_in 4; then
  [ -f "$model" ] || die "no $model: run stage 3"
  todo=""
  for m in $methods; do
    for c in $configs; do
      stage_done "$exp/decode/$m/$c" || todo="$todo $m/$c"
    done
  done
  [ -n "$todo" ] && log "Stage 4: bias-decode test:$todo"
  for mc in $todo; do
    m=${mc%/*} c=${mc#*/}
    spawn decode_score "$exp/decode/$m/$c" "$corpus/catalogs/test_$catalog_size/utt2catalog" \
        "$corpus/fbank/test/cuts.jsonl.gz" --method "$m" $(cfg_args "$c")
  done
  wait_all
fi

# ---------------------------------------------------------------- 5: catalog size
if stage_in 5; then
  [ -f "$model" ] || die "no $model: run stage 3"
  sub=$corpus/fbank/test_first$scale_utts.jsonl.gz
  [ -f "$sub" ] || python3 local/combine_cuts.py --out "$sub" --first "$scale_utts" "$corpus/fbank/test/cuts.jsonl.gz"
  for n in $scale_sizes; do
    cats=$corpus/catalogs/test_$n
    if ! stage_done "$cats"; then
      python3 local/make_catalogs.py --text "$corpus/synth/test/text" --names "$data/names/test.txt" \
        --distractors "$data/names/distractors.txt" --size "$n" --seed "$seed" --out-dir "$cats"
      mark_done "$cats"
    fi
    for m in $methods; do
      stage_done "$exp/scale/$m/$n" && continue
      log "Stage 5: catalogs of $n entries, $m, $scale_utts utterances"
      # one at a time: the timing is part of the result
      decode_score "$exp/scale/$m/$n" "$cats/utt2catalog" "$sub" --method "$m" $(cfg_args both_adaptive)
    done
  done
fi

# ---------------------------------------------------------------- 6: tables
if stage_in 6 && ! stage_done "$exp/results"; then
  log "Stage 6: $exp/results.md"
  python3 local/results_table.py --exp "$exp" --methods "$methods" --configs "$configs" \
    --scale-sizes "$scale_sizes" --json "$exp/results.json" --out "$exp/results.md"
  mark_done "$exp/results"
  cat "$exp/results.md"
fi
log "Done: stages $stage..$stop_stage of $0 ($size)"
