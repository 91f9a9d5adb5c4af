#!/usr/bin/env bash
# egs/assistant/asr1: a voice-assistant ASR system on synthetic speech, end to end.
#
#   ./run.sh                      # full size (RESULTS.md numbers)
#   ./run.sh --size tiny          # a few minutes on 2 CPU cores (the tests run this)
#   ./run.sh --stage 3 --model lstm
#
# Stages:
#   0  synthesize the corpus (make-synth-corpus): train, dev (train voices), test (unseen
#      voices), test_heldout_synth (a synthesizer never used in training)
#   1  features (compute-features): 80-dim fbank; speed perturbation 0.9/1.1 on train (small/full)
#   2  lang (prepare-lang): BPE, lexicon, 3-gram LM, H, L, HLG; and <lang>_unk, the same with an
#      open vocabulary (--open-vocab: <unk> spelled by BPE pieces), for the methods ending in _unk;
#      and <lang>_lm, lexicon and LM also from domain text (make-lm-text: the corpus's templates
#      and catalogs, never a dev/test sentence), for the methods ending in _lm
#   3  train (train-transducer), then average the last epochs
#   4  decode dev, test and test_heldout_synth (--decode-sets; each set marked done on its own)
#      with every method (decode-transducer), after test-time VTLN (each
#      speaker's frequency warp chosen by the model's likelihood; --vtln-warps "" turns it off)
#   5  score (compute-wer, per voice/accent/synthesizer/intent) and write the results table
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

stage=0
stop_stage=100
size=full           # tiny | small | full (corpus size and training config)
nj=2                # parallel jobs for synthesis and features
train_threads=$(getconf _NPROCESSORS_ONLN)  # torch threads of the training process
model=conformer     # conformer | lstm (conf/model_<model>.yaml); tiny uses conf/model_tiny.yaml
vocab_size=100      # BPE vocabulary: 100 trains much faster than 500 on this corpus (RESULTS.md)
lm_order=3
seed=0
# decode-transducer's methods; a name ending in _unk: that method with the open-vocabulary lang,
# in _lm: with the domain-text lang
methods="greedy modified_beam fast_beam fast_beam_LG ctc_greedy ctc_H ctc_HLG ctc_HLG_nbest fast_beam_LG_unk ctc_HLG_unk ctc_HLG_lm ctc_HLG_rnnt_lm"
lm_sentences=""     # sentences of domain LM text for <lang>_lm (default: full 100000, tiny/small 5000)
num_utts=""         # utterances of the corpus (default: full 8000, the corpus RESULTS.md reports and
                    # conf/train.yaml's 5 epochs are timed for; tiny/small: make-synth-corpus's size)
exp_tag=""          # suffix of the experiment directory
data_tag=""         # suffix of data/<size> and exp/<size>: a corpus made with other options
                    # (e.g. --num-utts 20000 --data-tag _20k) lives beside the default one
speed_perturb=0.9,1.1  # speed perturbation of train (small/full; compute-features --speed-perturb); "": off
lm_scale=0.5        # n-gram LM scale in HLG (ctc_HLG*): 1 / 0.7 / 0.5 / 0.3 gave 24.2 / 22.8 / 22.2 / 23.5% on dev
vtln_warps=0.8,0.85,0.9,0.95,1,1.05,1.1  # test-time VTLN factors (decode-transducer --vtln-warps); "": off
ckpt=""             # the checkpoint stages 4-5 decode (default: the newest avg-*.pt of the experiment)
decode_sets="dev test test_heldout_synth"  # the sets stages 4 and 5 decode and score
train_opts=""       # more train-transducer options, e.g. "--freq-warp 0.9 1.1" (VTLP; with --exp-tag)
help_message="Usage: $0 [options]   (stages 0-5, see the top of this file)"

. utils/parse_options.sh
. ./path.sh
. ./cmd.sh

case "$size" in
  tiny) train_conf=conf/train_tiny.yaml; model_conf=conf/model_tiny.yaml ;;
  small|full) train_conf=conf/train.yaml; model_conf=conf/model_$model.yaml ;;
  *) die "--size must be tiny, small or full" ;;
esac
[ -f "$model_conf" ] || die "no model config $model_conf (--model conformer|lstm)"
[ "$size" != full ] || num_utts=${num_utts:-8000}
[ "$size" = full ] && lm_sentences=${lm_sentences:-100000} || lm_sentences=${lm_sentences:-5000}

data=data/$size$data_tag
fbank=$data/fbank
lang=$data/lang_bpe_$vocab_size
exp=exp/$size$data_tag/$(basename "$model_conf" .yaml)$exp_tag
sets="train dev test test_heldout_synth"
mkdir -p "$exp/log"

if stage_in 0 && ! stage_done "$data/synth"; then
  log "Stage 0: synthesize the $size corpus into $data/synth"
  make-synth-corpus --size "$size" --seed "$seed" --nj "$nj" ${num_utts:+--num-utts $num_utts} "$data/synth"
  for s in $sets; do validate-data-dir "$data/synth/$s"; done
  mark_done "$data/synth"
fi

if stage_in 1 && ! stage_done "$fbank/all"; then
  log "Stage 1: features"
  for s in $sets; do
    sp=""
    if [ "$s" = train ] && [ "$size" != tiny ] && [ -n "$speed_perturb" ]; then sp="--speed-perturb $speed_perturb"; fi
    compute-features --config conf/fbank.yaml --nj "$nj" $sp $([ "$s" = train ] && echo --cmvn-stats) \
      "$data/synth/$s" "$fbank/$s"
  done
  mark_done "$fbank/all"
fi

if stage_in 2 && ! stage_done "$lang/lang"; then
  log "Stage 2: lang directory $lang"
  prepare-lang --vocab-size "$vocab_size" --lm-order "$lm_order" "$data/synth/train" "$lang"
  mark_done "$lang/lang"
fi
if stage_in 2 && ! stage_done "${lang}_unk/lang"; then
  log "Stage 2: open-vocabulary lang directory ${lang}_unk"
  prepare-lang --bpe-model "$lang/bpe.model" --open-vocab --lm-order "$lm_order" "$data/synth/train" "${lang}_unk"
  mark_done "${lang}_unk/lang"
fi
if stage_in 2 && ! stage_done "${lang}_lm/lang"; then
  log "Stage 2: lang directory ${lang}_lm with $lm_sentences sentences of domain text"
  make-lm-text --num-sentences "$lm_sentences" --seed "$seed" --exclude "$data/synth/dev" \
    --exclude "$data/synth/test" --exclude "$data/synth/test_heldout_synth" "$data/lm/text.txt"
  prepare-lang --bpe-model "$lang/bpe.model" --lm-order "$lm_order" "$data/synth/train" "$data/lm/text.txt" "${lang}_lm"
  mark_done "${lang}_lm/lang"
fi

if stage_in 3 && ! stage_done "$exp/train"; then
  log "Stage 3: train $exp (log: $exp/log/train.log)"
  # Rerunning resumes from the newest checkpoint in $exp.
  $train_cmd --num-threads "$train_threads" "$exp/log/train.log" \
    train-transducer --config "$train_conf" --model-config "$model_conf" \
      --cuts-train "$fbank/train/cuts.jsonl.gz" --cuts-dev "$fbank/dev/cuts.jsonl.gz" \
      --lang-dir "$lang" --exp-dir "$exp" --seed "$seed" $train_opts
  mark_done "$exp/train"
fi

[ -n "$ckpt" ] || ckpt=$(ls -t "$exp"/avg-*.pt 2>/dev/null | head -1 || true)
[ -n "$ckpt" ] || ckpt=$(ls -t "$exp"/epoch-*.pt 2>/dev/null | head -1 || true)
[ -z "$ckpt" ] || [ -f "$ckpt" ] || die "--ckpt $ckpt: no such checkpoint"

todo=""  # the sets not decoded yet (each set's decoding is marked done on its own)
for s in $decode_sets; do stage_done "$exp/decode_$s" || todo="$todo $s"; done
if stage_in 4 && [ -n "$todo" ]; then
  [ -n "$ckpt" ] || die "no checkpoint in $exp (run stage 3)"
  log "Stage 4: decode$todo with $ckpt: $methods"
  variant() { case "$1" in *_unk) echo _unk ;; *_lm) echo _lm ;; *) echo "" ;; esac; }
  for s in $todo; do
    w2f=""  # the set's VTLN factors: estimated by its first decoding, reused by the others
    for v in "" _unk _lm; do  # the methods of each lang: <lang>, <lang>_unk, <lang>_lm
      margs=""
      for m in $methods; do
        if [ "$(variant "$m")" = "$v" ]; then margs="$margs --method ${m%$v}"; fi
      done
      [ -n "$margs" ] || continue
      vt=""
      if [ -n "$vtln_warps" ]; then
        if [ -n "$w2f" ]; then vt="--spk2warp $w2f"; else vt="--vtln-warps $vtln_warps"; w2f=$exp/decode_$s$v/spk2warp; fi
      fi
      $decode_cmd "$exp/log/decode_$s$v.log" \
        decode-transducer --checkpoint "$ckpt" --cuts "$fbank/$s/cuts.jsonl.gz" --lang-dir "$lang$v" \
          $margs $vt --lm-scale "$lm_scale" --out-dir "$exp/decode_$s$v"
      [ -n "$v" ] || continue
      for m in $methods; do  # decode_<set>/<method>_unk -> decode_<set>_unk/<method>
        if [ "$(variant "$m")" = "$v" ]; then mkdir -p "$exp/decode_$s"; ln -sfn "../decode_$s$v/${m%$v}" "$exp/decode_$s/$m"; fi
      done
    done
    mark_done "$exp/decode_$s"
  done
fi

if stage_in 5; then
  log "Stage 5: score"
  for s in $decode_sets; do
    for m in $methods; do
      d=$exp/decode_$s/$m
      [ -f "$d/hyp.txt" ] || { log "no $d/hyp.txt (method not decoded on $s): not scored"; continue; }
      compute-wer --out-dir "$d/scoring" --group-by "$data/synth/$s/utt2voice" \
        --group-by "$data/synth/$s/utt2accent" --group-by "$data/synth/$s/utt2synth" \
        --group-by "$data/synth/$s/utt2intent" "$data/synth/$s/text" "$d/hyp.txt" > "$d/wer.txt"
    done
  done
  python3 local/results_table.py --exp "$exp" --sets "$decode_sets" --methods "$methods" \
    > "$exp/results.md"
  # how much of the error is words never seen in training, per set and method
  dirs=""
  for s in $decode_sets; do
    for m in $methods; do [ -f "$exp/decode_$s/$m/hyp.txt" ] && dirs="$dirs $exp/decode_$s/$m"; done
  done
  [ -z "$dirs" ] || { echo; echo "Out-of-vocabulary words:"; echo;
    python3 local/oov_breakdown.py --train-text "$data/synth/train/text" --json "$exp/oov.json" $dirs | sed 's/^/- /'; } \
    >> "$exp/results.md"
  cat "$exp/results.md"
fi
log "Done: stages $stage..$stop_stage of $0 ($size)"
