#!/usr/bin/env bash
# egs/assistant/adapters1: new words for a trained transducer with residual adapters, trained
#   independently (one per set of new words) and fused on the fly (sum, average, attention),
#   against the sequential fine-tuning of the whole model.
#
#   ../asr1/run.sh --size tiny && ./run.sh --size tiny     # a few minutes on 2 CPU cores (tests)
#   ./run.sh                                               # full size (RESULTS.md numbers)
#
# The base model is asr1's (the newest avg-*.pt of ../asr1/exp/<size>/model_conformer; model_tiny
# at --size tiny), with its lang directory and its general test set (../asr1/data/<size>).
# Stages (each item is skipped when its marker exists, so a rerun resumes):
#   0  link asr1's data/<size>/{fbank,synth,lang_bpe_N} into data/<size>; check the base model
#   1  K disjoint sets of new words (local/make_word_sets.py): invented names that are in no
#      transcript, name list or dictionary the base model's corpus drew from -> data/<size>/words
#   2  per set k, a corpus whose every utterance holds one of set k's words in a name slot
#      (make-synth-corpus --holdout-words, the base corpus's seed and voices: the test voices
#      are voices the base never heard) and its features          -> data/<size>/nw<k>
#   3  per set k, one adapter (train-adapter; the base frozen; set k's train utterances
#      mixed with a --mix-frac share of the base training data)   -> exp/<size>/adapters/set<k>.adapter
#   4  fusion (fuse-adapters) of adapters 1..K for K = 1..num_sets: sum, average, attention
#      (attention trains its fusion layer on sets 1..K plus general data); sum of all K in
#      reverse order (independence of the order)                 -> exp/<size>/fused/<method>_<K>.pt
#   5  the baseline: sequential fine-tuning of the whole model on set a, then b, then c, in
#      each order of --seq-orders (e.g. "123 321")                 -> exp/<size>/seq_<order>/step<i>.pt
#   6  decode every model on the general test set and on the new-word test sets; WER and
#      new-word recall per set (compute-wer --terms)
#   7  exp/<size>/results.md (tables) and exp/<size>/recall_vs_k.png
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

stage=0
stop_stage=100
size=full              # tiny | full: asr1's corpus and base model, and the defaults below
asr_dir=../asr1
num_sets=""            # new-word sets (default: tiny 2, full 5)
words_per_set=""       # new words per set (default: tiny 3, full 10)
num_utts=""            # utterances per set, all holding a new word (default: tiny 24, full 500)
test_frac=0.25         # share of each set's utterances for its test (voices the base never heard)
adapter_steps=""       # train-adapter steps per set (default: tiny 10, full 200)
fusion_steps=""        # attention fusion steps per K (default: tiny 5, full 100)
seq_steps=""           # sequential fine-tuning steps per set (default: the adapter steps)
seq_orders=""          # orders of the sequential baseline (default: tiny "12 21", full "123 321")
mix_frac=0.2           # share of general (base training) utterances mixed into adapter/fusion training
max_duration=""        # seconds of audio per batch (default: tiny 40, full 20)
methods=greedy         # decoding methods; tables use the first
train_threads=""       # torch threads of each training (default: 1 at tiny, else all cores)
nj=2                   # decoding jobs run at once
seed=0                 # asr1's corpus seed (the same voices; do not change)
help_message="Usage: $0 [options]   (stages 0-7, see the top of this file)"

. utils/parse_options.sh
. ./path.sh
. ./cmd.sh

case "$size" in
  tiny) d_sets=2; d_words=3; d_utts=24; d_steps=10; d_fsteps=5; d_orders="12 21"; d_dur=40; vocab=100
        model_name=model_tiny; corpus_size=tiny ;;
  full) d_sets=5; d_words=10; d_utts=500; d_steps=200; d_fsteps=100; d_orders="123 321"; d_dur=20; vocab=100
        model_name=model_conformer; corpus_size=full ;;
  *) die "--size must be tiny or full, not '$size'" ;;
esac
num_sets=${num_sets:-$d_sets}
words_per_set=${words_per_set:-$d_words}
num_utts=${num_utts:-$d_utts}
adapter_steps=${adapter_steps:-$d_steps}
fusion_steps=${fusion_steps:-$d_fsteps}
seq_steps=${seq_steps:-$adapter_steps}
seq_orders=${seq_orders:-$d_orders}
max_duration=${max_duration:-$d_dur}
train_threads=${train_threads:-$([ "$size" = tiny ] && echo 1 || getconf _NPROCESSORS_ONLN)}
require_positive_int num_sets words_per_set num_utts adapter_steps fusion_steps seq_steps train_threads nj
for o in $seq_orders; do
  [[ $o =~ ^[1-9]+$ ]] || die "--seq-orders: '$o' is not a string of set numbers (e.g. 123)"
  for ((i = 0; i < ${#o}; i++)); do
    [ "${o:$i:1}" -le "$num_sets" ] || die "--seq-orders: set ${o:$i:1} > --num-sets $num_sets"
  done
done
[ -n "$methods" ] || die "--methods is empty"
m0=${methods%% *}

data=data/$size
base_data=$data                            # fbank, synth and lang are links into $asr_dir/data/$size (stage 0)
lang=$base_data/lang_bpe_$vocab
exp=exp/$size
asr_exp=$asr_dir/exp/$size/$model_name
sets=$(seq 1 "$num_sets")
margs=""
for m in $methods; do margs="$margs --method $m"; done
mkdir -p "$exp/log"

# ---------------------------------------------------------------- helpers
score() {  # score DIR REF_TEXT [compute-wer options]: DIR/<method>/hyp.txt -> DIR/<method>/wer.txt (+scoring/)
  local dir=$1 ref=$2 m
  shift 2
  for m in $methods; do
    compute-wer --mode present --out-dir "$dir/$m/scoring" "$@" "$ref" "$dir/$m/hyp.txt" \
      > "$dir/$m/wer.txt" 2> "$dir/$m/score.log" || die "compute-wer failed: see $dir/$m/score.log"
  done
}
decode_model() {  # decode_model NAME CHECKPOINT: general test + new-word tests, scored -> $exp/decode/NAME
  local name=$1 mdl=$2 d=$exp/decode/$1 k
  stage_done "$d" && return 0
  rm -f "$exp/.results.done"
  mkdir -p "$d/log"
  $decode_cmd "$d/log/decode_general.log" \
    decode-transducer --checkpoint "$mdl" --cuts "$base_data/fbank/test/cuts.jsonl.gz" --lang-dir "$lang" \
      $margs --out-dir "$d/general"
  score "$d/general" "$base_data/synth/test/text"
  $decode_cmd "$d/log/decode_newwords.log" \
    decode-transducer --checkpoint "$mdl" --cuts "$data/nw_test/cuts.jsonl.gz" --lang-dir "$lang" \
      $margs --out-dir "$d/newwords"
  for k in $sets; do
    mkdir -p "$d/set$k"
    for m in $methods; do mkdir -p "$d/set$k/$m"; cp "$d/newwords/$m/hyp.txt" "$d/set$k/$m/hyp.txt"; done
    score "$d/set$k" "$data/nw$k/synth/test/text" --terms "$data/words/set$k.txt"
  done
  mark_done "$d"
}

mixed_train() {  # mixed_train K: set K's training cuts plus a --mix-frac share of general ones (made once)
  local out=$data/train_mix/set$1.jsonl.gz
  [ -f "$out" ] || python3 local/combine_cuts.py --out "$out" "$data/nw$1/fbank/train/cuts.jsonl.gz" \
    --mix "$base_data/fbank/train/cuts.jsonl.gz" --mix-frac "$mix_frac" --seed "$seed" >&2 \
    || die "combine_cuts.py failed"
  echo "$out"
}

# ---------------------------------------------------------------- 0: asr1's data and base model
if stage_in 0; then
  # asr1's features, transcripts and lang directory, linked into data/<size> under their own names
  link_from "$(cd "$asr_dir" && pwd)/data/$size" "$data" fbank synth "lang_bpe_$vocab"
fi
for f in "$lang/bpe.model" "$base_data/fbank/test/cuts.jsonl.gz" "$base_data/fbank/train/cuts.jsonl.gz" \
         "$base_data/synth/test/text" "$asr_dir/conf/fbank.yaml"; do
  [ -e "$f" ] || die "missing $f: run $asr_dir/run.sh --size $size (and stage 0 here)"
done
base_model=$(ls -t "$asr_exp"/avg-*.pt 2>/dev/null | head -1 || true)
[ -n "$base_model" ] || base_model=$(ls -t "$asr_exp"/epoch-*.pt 2>/dev/null | head -1 || true)
[ -n "$base_model" ] || die "no base model in $asr_exp: run $asr_dir/run.sh --size $size --stop-stage 3"

# ---------------------------------------------------------------- 1: new-word sets
if stage_in 1 && ! stage_done "$data/words"; then
  log "Stage 1: $num_sets sets of $words_per_set new words -> $data/words"
  python3 local/make_word_sets.py --base-synth "$base_data/synth" --num-sets "$num_sets" \
    --words-per-set "$words_per_set" --seed "$seed" --out-dir "$data/words"
  mark_done "$data/words"
fi

# ---------------------------------------------------------------- 2: new-word corpora
if stage_in 2; then
  for k in $sets; do
    d=$data/nw$k
    stage_done "$d" && continue
    log "Stage 2: corpus of set $k ($num_utts utterances, every one with a new word) -> $d"
    # the base corpus's seed and size: the same voice split, so test voices are unseen by the base
    make-synth-corpus --size "$corpus_size" --seed "$seed" --nj "$nj" --num-utts "$num_utts" \
      --holdout-words "$data/words/set$k.txt" --holdout-sets train,dev,test --holdout-rate 1.0 \
      --heldout-synth festival --heldout-frac 0 --num-rare-words 0 --plain-frac 0 --dev-frac 0.1 \
      --test-frac "$test_frac" --utt-tag "nw$k" "$d/synth" > "$exp/log/synth_nw$k.log" 2>&1 \
      || die "make-synth-corpus failed: see $exp/log/synth_nw$k.log"
    for s in train dev test; do
      validate-data-dir "$d/synth/$s" > /dev/null
      compute-features --config "$asr_dir/conf/fbank.yaml" --nj "$nj" "$d/synth/$s" "$d/fbank/$s" \
        > "$exp/log/fbank_nw${k}_$s.log" 2>&1 || die "compute-features failed: see $exp/log/fbank_nw${k}_$s.log"
    done
    mark_done "$d"
  done
  if ! stage_done "$data/nw_test"; then
    python3 local/combine_cuts.py --out "$data/nw_test/cuts.jsonl.gz" \
      $(for k in $sets; do echo "$data/nw$k/fbank/test/cuts.jsonl.gz"; done)
    mark_done "$data/nw_test"
  fi
fi

# ---------------------------------------------------------------- 3: one adapter per set
if stage_in 3; then
  mkdir -p "$exp/adapters"
  for k in $sets; do
    out=$exp/adapters/set$k.adapter
    [ -f "$out" ] && continue
    log "Stage 3: adapter for set $k, $adapter_steps steps (log: $exp/adapter_set$k/log/train.log)"
    rm -f "$exp/.results.done"
    mix=$(mixed_train "$k")
    $train_cmd --num-threads "$train_threads" "$exp/adapter_set$k/log/train.log" \
      train-adapter --config conf/train_adapter.yaml --adapter-config conf/adapter.yaml --base "$base_model" \
        --name "set$k" --cuts-train "$mix" --cuts-dev "$data/nw$k/fbank/dev/cuts.jsonl.gz" --lang-dir "$lang" \
        --exp-dir "$exp/adapter_set$k" --max-steps "$adapter_steps" --max-duration "$max_duration" \
        --seed "$seed" "$out"
    [ -f "$out" ] || die "train-adapter ended without $out"
  done
fi

# ---------------------------------------------------------------- 4: fusion
adapters_upto() {  # adapters_upto K: adapter files of sets 1..K
  local k
  for k in $(seq 1 "$1"); do echo "$exp/adapters/set$k.adapter"; done
}
if stage_in 4; then
  mkdir -p "$exp/fused"
  for k in $sets; do   # each adapter alone: the base plus that one adapter
    out=$exp/fused/alone_$k.pt
    [ -f "$out" ] || fuse-adapters --base "$base_model" --method sum "$exp/adapters/set$k.adapter" "$out" \
      > "$exp/log/fuse_alone_$k.log" 2>&1 || die "fuse-adapters failed: see $exp/log/fuse_alone_$k.log"
  done
  for K in $sets; do
    for method in sum average; do
      out=$exp/fused/${method}_$K.pt
      [ -f "$out" ] && continue
      fuse-adapters --base "$base_model" --method "$method" $(adapters_upto "$K") "$out" \
        > "$exp/log/fuse_${method}_$K.log" 2>&1 || die "fuse-adapters failed: see $exp/log/fuse_${method}_$K.log"
    done
    out=$exp/fused/attention_$K.pt
    if [ ! -f "$out" ]; then
      log "Stage 4: attention fusion of adapters 1..$K, $fusion_steps steps (log: $exp/fusion_$K/log/train.log)"
      rm -f "$exp/.results.done"
      cuts=$data/fusion_mix/upto$K.jsonl.gz   # sets 1..K and a share of general data
      [ -f "$cuts" ] || python3 local/combine_cuts.py --out "$cuts" \
        $(for k in $(seq 1 "$K"); do echo "$data/nw$k/fbank/train/cuts.jsonl.gz"; done) \
        --mix "$base_data/fbank/train/cuts.jsonl.gz" --mix-frac "$mix_frac" --seed "$seed"
      $train_cmd --num-threads "$train_threads" "$exp/fusion_$K/log/train.log" \
        fuse-adapters --base "$base_model" --method attention --config conf/train_fusion.yaml \
          --cuts-train "$cuts" --cuts-dev "$data/nw1/fbank/dev/cuts.jsonl.gz" --lang-dir "$lang" \
          --exp-dir "$exp/fusion_$K" --max-steps "$fusion_steps" --max-duration "$max_duration" --seed "$seed" \
          $(adapters_upto "$K") "$out"
      [ -f "$out" ] || die "fuse-adapters ended without $out"
    fi
  done
  out=$exp/fused/sum_${num_sets}_reversed.pt
  [ -f "$out" ] || fuse-adapters --base "$base_model" --method sum $(adapters_upto "$num_sets" | tac) "$out" \
    > "$exp/log/fuse_sum_reversed.log" 2>&1 || die "fuse-adapters failed: see $exp/log/fuse_sum_reversed.log"
fi

# ---------------------------------------------------------------- 5: sequential fine-tuning
if stage_in 5; then
  for o in $seq_orders; do
    prev=$base_model
    for ((i = 0; i < ${#o}; i++)); do
      k=${o:$i:1}
      dir=$exp/seq_$o/step$((i + 1))_set$k
      out=$exp/seq_$o/step$((i + 1)).pt
      if [ ! -f "$out" ]; then
        log "Stage 5: sequential fine-tuning, order $o, step $((i + 1)): set $k (log: $dir/log/train.log)"
        rm -f "$exp/.results.done"
        mix=$(mixed_train "$k")   # the same data as set k's adapter
        $train_cmd --num-threads "$train_threads" "$dir/log/train.log" \
          train-transducer --config conf/train_seq.yaml --model-config "$asr_dir/conf/$model_name.yaml" \
            --cuts-train "$mix" --cuts-dev "$data/nw$k/fbank/dev/cuts.jsonl.gz" --lang-dir "$lang" \
            --exp-dir "$dir" --init-checkpoint "$prev" --max-steps "$seq_steps" \
            --max-duration "$max_duration" --seed "$seed"
        [ -f "$dir/checkpoint-$seq_steps.pt" ] || die "$dir: training ended without checkpoint-$seq_steps.pt"
        cp "$dir/checkpoint-$seq_steps.pt" "$out.tmp" && mv "$out.tmp" "$out"
      fi
      prev=$out
    done
  done
fi

# ---------------------------------------------------------------- 6: decode and score
if stage_in 6; then
  models="base:$base_model"
  for k in $sets; do models="$models alone$k:$exp/fused/alone_$k.pt"; done
  for K in $sets; do
    for method in sum average attention; do models="$models ${method}_$K:$exp/fused/${method}_$K.pt"; done
  done
  models="$models sum_${num_sets}_reversed:$exp/fused/sum_${num_sets}_reversed.pt"
  for o in $seq_orders; do
    for ((i = 1; i <= ${#o}; i++)); do models="$models seq_${o}_step$i:$exp/seq_$o/step$i.pt"; done
  done
  todo=""
  for nm in $models; do stage_done "$exp/decode/${nm%%:*}" || todo="$todo $nm"; done
  if [ -n "$todo" ]; then
    log "Stage 6: decode $(echo $todo | wc -w) models on the general test and the new-word tests ($methods)"
    for nm in $todo; do
      [ -f "${nm#*:}" ] || die "no ${nm#*:}: run stages 3-5"
      spawn decode_model "${nm%%:*}" "${nm#*:}"
    done
    wait_all
  fi
fi

# ---------------------------------------------------------------- 7: tables and plot
if stage_in 7 && ! stage_done "$exp/results"; then
  log "Stage 7: $exp/results.md and $exp/recall_vs_k.png"
  python3 local/results_table.py --exp "$exp" --data "$data" --num-sets "$num_sets" --seq-orders "$seq_orders" \
    --method "$m0" --base-model "$base_model" --adapter-config conf/adapter.yaml \
    --json "$exp/results.json" --out "$exp/results.md" --plot "$exp/recall_vs_k.png"
  mark_done "$exp/results"
  cat "$exp/results.md"
fi
log "Done: stages $stage..$stop_stage of $0 ($size)"
