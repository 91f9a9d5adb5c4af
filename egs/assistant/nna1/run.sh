#!/usr/bin/env bash
# egs/assistant/nna1: the model of egs/assistant/asr1 on a neural-network accelerator (NNA).
#   Accelerator-aware training (AAT) against fixed-point NNA profiles (conf/nna/*.yaml), and
#   sub-8-bit weights: the General Quantizer (GQ) against uniform QAT and PTQ, packed models.
#
#   ../asr1/run.sh --size tiny && ./run.sh --size tiny     # a few minutes on 2 CPU cores (tests)
#   ./run.sh                                               # full size (RESULTS.md numbers)
#   ./run.sh --model lstm --profiles harsh --stage 3
#
# It reads asr1's data (data/<size>: features, lang, transcripts; linked here as data/<size>)
# and its float model (the newest avg-*.pt of exp/<size>/model_<model>, model_tiny at
# --size tiny), and writes exp/<size>/ here (exp/<size>_lstm/ with --model lstm).
# Stages (each item is skipped when its marker exists, so a rerun resumes; delete
# exp/<size>/.../.NAME.done to redo one):
#   0  link asr1's data/<size> as data/<size>; check the float model
#   1  float baseline: decode test and test_heldout_synth, score (compute-wer)
#   2  per NNA profile: PTQ, the float model on the NNA's integer path (activation ranges
#      calibrated on dev), decode + score                               -> exp/<size>/ptq_<p>
#   3  the same-budget control: float fine-tuning of the float model, --aat-steps steps with the
#      AAT settings but no NNA (asr1's model is not converged, so any fine-tuning helps; AAT is
#      compared with this, not with the model before fine-tuning)     -> exp/<size>/ft_float
#      per NNA profile: AAT fine-tuning of the float model (train-transducer --nna-config
#      --init-checkpoint, --aat-steps steps)                           -> exp/<size>/aat_<p>
#   4  the control decoded in float and, per profile, on the integer path (PTQ of the
#      fine-tuned float model)                         -> exp/<size>/ft_float{,/ptq_<p>}
#      per NNA profile: the AAT model on the integer path, decode + score; nna-report (the
#      operators that fall back to the CPU, conversions per frame)
#   5  quantizers (quantize-nna): uniform QAT at --qat-bits, uniform PTQ at each --ptq-bits
#      (of the stage-3 control, so that every arm has had the same fine-tuning steps),
#      GQ at each --gq-bits and the mixed allocation (conf/gq_mixed*.yaml); packed model, size
#      report against the 8-bit model, latency of packed vs 8-bit vs float (side by side)
#                                                                       -> exp/<size>/quant/<arm>
#   6  decode + score every packed model
#   7  exp/<size>/results.md (tables) and exp/<size>/wer_vs_bits.png
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

stage=0
stop_stage=100
size=full             # tiny | small | full: asr1's corpus and model size, and the step counts below
asr_dir=../asr1       # the ASR recipe whose data/<size> and exp/<size>/model_<model> are used
model=conformer       # conformer | lstm: asr1's model_<model> (--size tiny: model_tiny, a Conformer)
vocab_size=""         # asr1's BPE vocabulary (default: 100, as asr1)
profiles="int8 harsh harsh5"  # NNA profiles, conf/nna/<p>.yaml
aat_steps=""          # AAT fine-tuning steps per profile (default per size: tiny 30, small 200, full 500)
calib_steps=""        # AAT: steps calibrating activation ranges before they freeze (tiny 5, else 50)
calib_utts=200        # PTQ: dev utterances calibrating the activation ranges
qat_bits="8 4"        # uniform QAT bit widths
ptq_bits="8 5 4"      # uniform PTQ bit widths
gq_bits="5 4 3"       # GQ bit widths (uniform over the weights)
gq_mixed=""           # GQ bit allocation yaml (default conf/gq_mixed.yaml; --model lstm: conf/gq_mixed_lstm.yaml)
ft_steps=""           # QAT/GQ fine-tuning steps (default per size: tiny 30, small 200, full 200)
max_duration=""       # seconds of audio per fine-tuning batch (default: tiny 40, else 20, as asr1)
methods=greedy        # decoding methods (decode-transducer --method); tables and plot use the first
latency_utts=100      # utterances of test timed for the latency report
train_threads=""      # torch threads of each fine-tuning, run one at a time (default: 1 at tiny, else all cores)
nj=2                  # decoding jobs run at once (one thread each)
seed=0
help_message="Usage: $0 [options]   (stages 0-7, see the top of this file)"

. utils/parse_options.sh
. ./path.sh
. ./cmd.sh

case "$size" in
  tiny) def_steps=30; def_ft=30; def_calib=5; def_dur=40; def_vocab=100; model_name=model_tiny; enc=conformer ;;
  small) def_steps=200; def_ft=200; def_calib=50; def_dur=20; def_vocab=100; model_name=model_$model; enc=$model ;;
  full) def_steps=500; def_ft=200; def_calib=50; def_dur=20; def_vocab=100; model_name=model_$model; enc=$model ;;
  *) die "--size must be tiny, small or full, not '$size'" ;;
esac
case "$model" in conformer|lstm) ;; *) die "--model must be conformer or lstm, not '$model'" ;; esac
aat_steps=${aat_steps:-$def_steps}
ft_steps=${ft_steps:-$def_ft}
calib_steps=${calib_steps:-$def_calib}
max_duration=${max_duration:-$def_dur}
train_threads=${train_threads:-$([ "$size" = tiny ] && echo 1 || getconf _NPROCESSORS_ONLN)}
vocab_size=${vocab_size:-$def_vocab}
gq_mixed=${gq_mixed:-conf/gq_mixed$([ "$enc" = lstm ] && echo _lstm || true).yaml}
require_positive_int aat_steps ft_steps calib_steps calib_utts latency_utts train_threads nj
[ -n "$methods" ] || die "--methods is empty"
for p in $profiles; do [ -f "conf/nna/$p.yaml" ] || die "--profiles: no NNA profile conf/nna/$p.yaml"; done
for b in $qat_bits $ptq_bits $gq_bits; do
  [[ $b =~ ^[1-8]$ ]] || die "bit widths are 1..8, not '$b' (--qat-bits, --ptq-bits, --gq-bits)"
done
[ -f "$gq_mixed" ] || die "--gq-mixed: no bit allocation $gq_mixed"
[ -d "$asr_dir" ] || die "--asr-dir $asr_dir does not exist"

asr_exp=$asr_dir/exp/$size/$model_name
model_conf=$asr_dir/conf/$model_name.yaml
data=data/$size                # a link to $asr_dir/data/$size (stage 0)
fbank=$data/fbank
lang=$data/lang_bpe_$vocab_size
exp=exp/$size$([ "$enc" = lstm ] && echo _lstm || true)   # the Conformer in exp/<size>, the LSTM in exp/<size>_lstm
test_sets="test test_heldout_synth"
margs=""
for m in $methods; do margs="$margs --method $m"; done
arms=""
for b in $qat_bits; do arms="$arms qat$b"; done
for b in $ptq_bits; do arms="$arms ptq$b"; done
for b in $gq_bits; do arms="$arms gq$b"; done
arms="${arms# } gq_mixed"
mkdir -p "$exp"

# ---------------------------------------------------------------- helpers
decoded() {  # decoded DIR: every test set of DIR is decoded and scored
  local s
  for s in $test_sets; do stage_done "$1/decode_$s" || return 1; done
}
all_decoded() {  # all_decoded PREFIX P...: every PREFIX<P> is decoded
  local prefix=$1 p
  shift
  for p in "$@"; do decoded "$prefix$p" || return 1; done
}
decode_score() {  # decode_score DIR MODEL [decode-transducer options]: decode + score the test sets
  local dir=$1 mdl=$2 s m d
  shift 2
  for s in $test_sets; do
    stage_done "$dir/decode_$s" && continue
    rm -f "$exp/.results.done"
    $decode_cmd "$dir/log/decode_$s.log" \
      decode-transducer --checkpoint "$mdl" --cuts "$fbank/$s/cuts.jsonl.gz" --lang-dir "$lang" $margs \
        --out-dir "$dir/decode_$s" "$@"
    for m in $methods; do
      d=$dir/decode_$s/$m
      compute-wer --out-dir "$d/scoring" --group-by "$data/synth/$s/utt2synth" \
        --group-by "$data/synth/$s/utt2accent" "$data/synth/$s/text" "$d/hyp.txt" \
        > "$d/wer.txt" 2> "$dir/log/score_${s}_$m.log" || die "compute-wer failed: see $dir/log/score_${s}_$m.log"
    done
    mark_done "$dir/decode_$s"
  done
}
aat_model() {  # aat_model PROFILE|float: the AAT checkpoint (the last step's); float: the control's
  if [ "$1" = float ]; then echo "$exp/ft_float/checkpoint-$aat_steps.pt"; else echo "$exp/aat_$1/checkpoint-$aat_steps.pt"; fi
}

# ---------------------------------------------------------------- 0: asr1's data and model
if stage_in 0; then
  target=$(cd "$asr_dir" && pwd)/data/$size
  if [ ! -L "$data" ] || [ "$(readlink "$data")" != "$target" ]; then
    log "Stage 0: link $data -> $target"
    [ -d "$target" ] || die "no $target: run $asr_dir/run.sh --size $size first"
    [ -e "$data" ] && [ ! -L "$data" ] && die "$data exists and is not a link; remove it"
    mkdir -p data
    ln -sfn "$target" "$data"
  fi
fi
for f in "$lang/bpe.model" "$model_conf" $(for s in train dev $test_sets; do
    echo "$fbank/$s/cuts.jsonl.gz" "$data/synth/$s/text"; done); do
  [ -e "$f" ] || die "missing $f: run $asr_dir/run.sh --size $size (and stage 0 here)"
done
float_model=$(ls -t "$asr_exp"/avg-*.pt 2>/dev/null | head -1 || true)
[ -n "$float_model" ] || float_model=$(ls -t "$asr_exp"/epoch-*.pt 2>/dev/null | head -1 || true)
[ -n "$float_model" ] || die "no float model in $asr_exp: run $asr_dir/run.sh --size $size --stop-stage 3"

# ---------------------------------------------------------------- 1: float baseline
if stage_in 1 && ! decoded "$exp/float"; then
  log "Stage 1: float baseline $float_model: decode $test_sets ($methods)"
  decode_score "$exp/float" "$float_model"
fi

# ---------------------------------------------------------------- 2: PTQ on the NNA
if stage_in 2; then
  todo=""
  for p in $profiles; do decoded "$exp/ptq_$p" || todo="$todo $p"; done
  if [ -n "$todo" ]; then
    log "Stage 2: post-training quantization on the NNA's integer path, profiles:$todo"
    for p in $todo; do
      spawn decode_score "$exp/ptq_$p" "$float_model" --nna-config "conf/nna/$p.yaml" \
        --calib-cuts "$fbank/dev/cuts.jsonl.gz" --calib-utts "$calib_utts"
    done
    wait_all
  fi
fi

# ---------------------------------------------------------------- 3: AAT fine-tuning
if stage_in 3; then
  for p in float $profiles; do   # "float": the same-budget control, no NNA
    if [ "$p" = float ]; then
      dir=$exp/ft_float; nargs=""; what="float fine-tuning (the control, no NNA)"
    else
      dir=$exp/aat_$p; nargs="--nna-config conf/nna/$p.yaml --calib-steps $calib_steps"
      what="accelerator-aware fine-tuning for profile $p"
    fi
    stage_done "$dir" && continue
    log "Stage 3: $what, $aat_steps steps (log: $dir/log/train.log)"
    rm -f "$exp/.results.done"
    # Rerunning resumes from the newest checkpoint in $dir.
    $train_cmd --num-threads "$train_threads" "$dir/log/train.log" \
      train-transducer --config conf/aat.yaml --model-config "$model_conf" \
        --cuts-train "$fbank/train/cuts.jsonl.gz" --cuts-dev "$fbank/dev/cuts.jsonl.gz" --lang-dir "$lang" \
        --exp-dir "$dir" --init-checkpoint "$float_model" $nargs \
        --max-steps "$aat_steps" --max-duration "$max_duration" --seed "$seed"
    [ -f "$(aat_model "$p")" ] || die "$dir: training ended without $(aat_model "$p")"
    mark_done "$dir"
  done
fi

# ---------------------------------------------------------------- 4: AAT on the NNA
if stage_in 4; then
  ft=$(aat_model float)
  if ! decoded "$exp/ft_float" || ! all_decoded "$exp/ft_float/ptq_" $profiles; then
    [ -f "$ft" ] || die "no $ft: run stage 3"
    log "Stage 4: the float fine-tuned control, in float and on the integer path (PTQ) of:$profiles"
    spawn decode_score "$exp/ft_float" "$ft"
    for p in $profiles; do
      spawn decode_score "$exp/ft_float/ptq_$p" "$ft" --nna-config "conf/nna/$p.yaml" \
        --calib-cuts "$fbank/dev/cuts.jsonl.gz" --calib-utts "$calib_utts"
    done
    wait_all
  fi
  todo=""
  for p in $profiles; do
    decoded "$exp/aat_$p" && stage_done "$exp/aat_$p/nna_report" || todo="$todo $p"
  done
  if [ -n "$todo" ]; then
    log "Stage 4: accelerator-aware models on the NNA's integer path, profiles:$todo"
    for p in $todo; do
      dir=$exp/aat_$p
      [ -f "$(aat_model "$p")" ] || die "no $(aat_model "$p"): run stage 3"
      if ! stage_done "$dir/nna_report"; then
        mkdir -p "$dir/log"
        nna-report --checkpoint "$(aat_model "$p")" --json "$dir/nna_report.json" \
          > "$dir/nna_report.txt" 2> "$dir/log/nna_report.log" || die "nna-report failed: $dir/log/nna_report.log"
        mark_done "$dir/nna_report"
      fi
      # the checkpoint records its profile; --nna-config checks that it is this one
      spawn decode_score "$dir" "$(aat_model "$p")" --nna-config "conf/nna/$p.yaml"
    done
    wait_all
  fi
fi

# ---------------------------------------------------------------- 5: quantize-nna
if stage_in 5; then
  for arm in $arms; do
    dir=$exp/quant/$arm
    stage_done "$dir" && continue
    case "$arm" in
      qat*) qargs="--method qat --bits ${arm#qat}" ;;
      ptq*) qargs="--method ptq --bits ${arm#ptq}" ;;
      gq_mixed) qargs="--method gq --allocation $gq_mixed" ;;
      gq*) qargs="--method gq --bits ${arm#gq}" ;;
    esac
    src=$float_model
    case "$arm" in
      ptq*) src=$(aat_model float)   # PTQ of the same-budget float fine-tune (stage 3)
            [ -f "$src" ] || die "no $src (the float fine-tuned control): run stage 3" ;;
    esac
    log "Stage 5: quantize-nna $qargs -> $dir/model.packed (log: $dir/log/quantize.log)"
    rm -f "$exp/.results.done"
    # gq/qat fine-tune from the float model (rerunning resumes); ptq does not train.
    $train_cmd --num-threads "$train_threads" "$dir/log/quantize.log" \
      quantize-nna --config conf/quantize.yaml $qargs \
        --cuts-train "$fbank/train/cuts.jsonl.gz" --cuts-dev "$fbank/dev/cuts.jsonl.gz" --lang-dir "$lang" \
        --exp-dir "$dir/train" --max-steps "$ft_steps" --max-duration "$max_duration" --seed "$seed" \
        --report "$dir/size.json" --latency-cuts "$fbank/test/cuts.jsonl.gz" \
        --latency-utterances "$latency_utts" "$src" "$dir/model.packed"
    mark_done "$dir"
  done
fi

# ---------------------------------------------------------------- 6: decode the packed models
if stage_in 6; then
  todo=""
  for arm in $arms; do decoded "$exp/quant/$arm" || todo="$todo $arm"; done
  if [ -n "$todo" ]; then
    log "Stage 6: decode the packed models:$todo"
    for arm in $todo; do
      [ -f "$exp/quant/$arm/model.packed" ] || die "no $exp/quant/$arm/model.packed: run stage 5"
      spawn decode_score "$exp/quant/$arm" "$exp/quant/$arm/model.packed"
    done
    wait_all
  fi
fi

# ---------------------------------------------------------------- 7: tables and plot
if stage_in 7 && ! stage_done "$exp/results"; then
  log "Stage 7: $exp/results.md and $exp/wer_vs_bits.png"
  python3 local/results_table.py --exp "$exp" --asr-exp "$asr_exp" --float-model "$float_model" \
    --profiles "$profiles" --arms "$arms" --sets "$test_sets" --methods "$methods" \
    --json "$exp/results.json" --out "$exp/results.md"
  python3 local/plot_wer_vs_bits.py --json "$exp/results.json" --out "$exp/wer_vs_bits.png"
  mark_done "$exp/results"
  cat "$exp/results.md"
fi
log "Done: stages $stage..$stop_stage of $0 ($size)"
