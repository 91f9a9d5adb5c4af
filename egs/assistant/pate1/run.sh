#!/usr/bin/env bash
# egs/assistant/pate1: PATE for ASR (private aggregation of teacher ensembles) against DP-SGD,
#   on asr1's synthetic voice-assistant corpus, with the speaker as the privacy unit.
#
#   ../asr1/run.sh --size tiny && ./run.sh --size tiny     # a few minutes on 2 CPU cores (tests)
#   ./run.sh                                               # full size (see RESULTS.md)
#
# asr1's training set is the data: its speakers are split into private speakers (n disjoint
# shards, one teacher each) and public speakers (a small labelled seed plus unlabelled queries).
# Every model starts from the public-only model (trained on the labelled public seed alone: the
# lower bound, what is learnt without private data). Tested on asr1's test set (unseen voices).
#
# --setting farfield (RESULTS.md): the private domain is a new far-field corpus (every utterance
# reverberated and noisy, SNR 5-20 dB; four synthesizers, festival among them) and the public
# side also holds asr1's trained model (--base-checkpoint; public data of another domain, as in
# practice). The far-field speakers are split as above; the public-only model is the base
# fine-tuned on the labelled far-field seed, and every other model starts from it as above.
# Tested on the far-field corpus' test set (unseen voices). data/<size>_farfield, exp/<size>_farfield.
# Stages (each item is skipped when its output exists, so a rerun resumes):
#   0  link asr1's data/<size>/{fbank,synth,lang_bpe_N} into data/<size>; farfield: synthesize
#      the far-field corpus (make-synth-corpus) and its features, link asr1's lang only
#   1  split by speaker (local/split_private_public.py): shard1..n, private, public_seed,
#      public_queries                                                    -> data/<size>/split
#   2  the public-only model (train-transducer on public_seed)           -> exp/<size>/public
#   3  one teacher per shard (through spawn: parallel, or a cluster via cmd.sh) and the
#      non-private model on all private data (both fine-tune the public-only model)
#   4  pate-aggregate of the teachers on the public queries, per mechanism (GNMax,
#      Confident-GNMax) and eps in --eps-list at --delta: sigma from local/pate_plan.py (the
#      data-independent RDP accountant; with --max-sigma-frac fewer queries where eps is
#      small); a pseudo-labelled data dir + privacy.json each, validated; the labels scored
#      against the held-back transcripts                              -> data/<size>/pate/<mech>_eps<e>
#   5  a student per aggregation: the public-only model fine-tuned on public seed + labels; two
#      controls with the same training: seed alone (no labels) and seed + true query transcripts
#   6  DP-SGD on all private data at each eps (--dp-target-eps, --dp-unit speaker)
#   7  decode every model on the test set and score (decode-transducer, compute-wer)
#   8  exp/<size>/results.md and results.json (local/results_table.py)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

stage=0
stop_stage=100
size=full              # tiny | full: asr1's corpus, and the defaults below
setting=within         # within: asr1's corpus, models from scratch; farfield: a far-field corpus, models from asr1's
base_checkpoint=""     # farfield: the public model to start from (default: newest avg-*.pt of asr1's exp/<size>/model_*)
asr_dir=../asr1
num_teachers=""        # private shards = teachers (default: tiny 3, full 45, farfield full 40)
num_public_spk=""      # public speakers (default: tiny 1, full 20, farfield full 40)
seed_utts=""           # labelled public utterances (default: tiny 2, full 160)
num_queries=""         # unlabelled public utterances to query at most (default: all the rest)
eps_list="1 2 4 8"
delta=1e-5
mechanisms="gnmax confident-gnmax"
max_sigma_frac=""      # ask fewer queries so that sigma <= this x teachers (default: tiny 0 = off, full 0.25)
sigma1_ratio=2         # Confident-GNMax: sigma1 / sigma
threshold_frac=0.6     # Confident-GNMax: threshold / teachers
public_steps=""        # training steps (default: tiny 4 each; full 2000, 1500, 3000, 1000, 1000; farfield full 200, 100, 600, 200, 60)
teacher_steps=""
nonprivate_steps=""
student_steps=""
dp_steps=""
dp_unit=speaker        # DP-SGD privacy unit: speaker (as PATE's shards) or utterance
dp_max_grad_norm=1.0
dp_max_utts=""         # DP-SGD: utterances of a sampled speaker per step (default: tiny 4, full 8)
dp_max_duration=""     # DP-SGD: expected seconds of audio per batch (default: tiny 40, full 320)
max_duration=""        # seconds of audio per batch of the other trainings (default: tiny 40, full 20)
methods=greedy         # decoding methods; tables use the first
train_threads=""       # torch threads of each training (default: 1 at tiny, else all cores)
nj=2                   # trainings, aggregations and decodings run at once
seed=0
help_message="Usage: $0 [options]   (stages 0-8, see the top of this file)"

. utils/parse_options.sh
. ./path.sh
. ./cmd.sh

train_conf=conf/train.yaml
case "$setting-$size" in
  within-tiny) d_n=3; d_pub=1; d_seed=2; d_frac=0; d_steps="4 4 4 4 4"; d_dpu=4; d_dpdur=40; d_dur=40; vocab=100
        model_conf=$asr_dir/conf/model_tiny.yaml ;;
  within-full) d_n=45; d_pub=20; d_seed=160; d_frac=0.25; d_steps="2000 1500 3000 1000 1000"; d_dpu=8; d_dpdur=320
        d_dur=20; vocab=100; model_conf=conf/model_small.yaml ;;
  # the far-field corpus: make-synth-corpus options of stage 0 (its own seed, so other texts than asr1's)
  farfield-tiny) d_n=3; d_pub=1; d_seed=2; d_frac=0; d_steps="4 4 4 4 4"; d_dpu=4; d_dpdur=40; d_dur=40; vocab=100
        model_conf=$asr_dir/conf/model_tiny.yaml; asr_model=model_tiny
        corpus_opts="--size tiny --num-utts 60 --test-frac 0.2" ;;
  farfield-full) d_n=40; d_pub=40; d_seed=160; d_frac=0.25; d_steps="200 100 600 200 60"; d_dpu=8; d_dpdur=320
        d_dur=20; vocab=100; model_conf=$asr_dir/conf/model_conformer.yaml; asr_model=model_conformer
        corpus_opts="--size full --num-utts 5000 --dev-frac 0.04 --test-frac 0.08"
        train_conf=conf/train_finetune.yaml ;;
  *) die "--setting must be within or farfield and --size tiny or full, not '$setting' and '$size'" ;;
esac
read -r s_pub s_teach s_np s_stud s_dp <<< "$d_steps"
num_teachers=${num_teachers:-$d_n}
num_public_spk=${num_public_spk:-$d_pub}
seed_utts=${seed_utts:-$d_seed}
num_queries=${num_queries:-0}
max_sigma_frac=${max_sigma_frac:-$d_frac}
public_steps=${public_steps:-$s_pub}
teacher_steps=${teacher_steps:-$s_teach}
nonprivate_steps=${nonprivate_steps:-$s_np}
student_steps=${student_steps:-$s_stud}
dp_steps=${dp_steps:-$s_dp}
dp_max_utts=${dp_max_utts:-$d_dpu}
dp_max_duration=${dp_max_duration:-$d_dpdur}
max_duration=${max_duration:-$d_dur}
train_threads=${train_threads:-$([ "$size" = tiny ] && echo 1 || getconf _NPROCESSORS_ONLN)}
require_positive_int num_teachers num_public_spk seed_utts public_steps teacher_steps nonprivate_steps \
  student_steps dp_steps dp_max_utts train_threads nj
[[ $num_queries =~ ^[0-9]+$ ]] || die "--num-queries must be a non-negative integer, not '$num_queries'"
[ "$num_teachers" -ge 2 ] || die "--num-teachers must be at least 2 (PATE votes), not $num_teachers"
[ -n "$eps_list" ] || die "--eps-list is empty"
for e in $eps_list; do
  [[ $e =~ ^[0-9]*\.?[0-9]+$ ]] && awk "BEGIN{exit !($e > 0)}" || die "--eps-list: '$e' is not a positive number"
done
for m in $mechanisms; do
  case "$m" in gnmax|confident-gnmax) ;; *) die "--mechanisms: unknown mechanism '$m' (gnmax, confident-gnmax)" ;; esac
done
case "$dp_unit" in speaker|utterance) ;; *) die "--dp-unit must be speaker or utterance, not '$dp_unit'" ;; esac
[ -n "$methods" ] || die "--methods is empty"
m0=${methods%% *}

tag=$size
[ "$setting" = within ] || tag=${size}_$setting
data=data/$tag
lang=$data/lang_bpe_$vocab
split=$data/split
exp=exp/$tag
margs=""
for m in $methods; do margs="$margs --method $m"; done
mkdir -p "$exp/log"

# ---------------------------------------------------------------- helpers
train_model() {  # train_model DIR STEPS CUTS [train-transducer options]: DIR/final.pt (the checkpoint of step STEPS)
  local dir=$1 steps=$2 cuts=$3
  shift 3
  [ -f "$dir/final.pt" ] && return 0
  rm -f "$exp/.results.done"
  $train_cmd --num-threads "$train_threads" "$dir/log/train.log" \
    train-transducer --config "$train_conf" --model-config "$model_conf" --cuts-train "$cuts" --lang-dir "$lang" \
      --exp-dir "$dir" --max-steps "$steps" --max-duration "$max_duration" --seed "$seed" "$@"
  [ -f "$dir/checkpoint-$steps.pt" ] || die "$dir: training ended without checkpoint-$steps.pt (see $dir/log/train.log)"
  cp "$dir/checkpoint-$steps.pt" "$dir/final.pt.tmp" && mv "$dir/final.pt.tmp" "$dir/final.pt"
}
decode_model() {  # decode_model NAME CHECKPOINT: the test set (asr1's, or far-field), scored -> $exp/decode/NAME
  local name=$1 mdl=$2 d=$exp/decode/$1 m
  stage_done "$d" && return 0
  rm -f "$exp/.results.done"
  mkdir -p "$d/log"
  $decode_cmd "$d/log/decode.log" \
    decode-transducer --checkpoint "$mdl" --cuts "$data/fbank/test/cuts.jsonl.gz" --lang-dir "$lang" \
      $margs --out-dir "$d"
  for m in $methods; do
    compute-wer --out-dir "$d/$m/scoring" "$data/synth/test/text" "$d/$m/hyp.txt" > "$d/$m/wer.txt" \
      2> "$d/$m/score.log" || die "compute-wer failed: see $d/$m/score.log"
  done
  mark_done "$d"
}
aggregate() {  # aggregate MECHANISM EPS: pate-aggregate of the teachers -> $data/pate/<mech>_eps<e>
  local mech=$1 e=$2 d=$data/pate/$1_eps$2 plan q opts k nq
  stage_done "$d" && return 0
  rm -f "$exp/.results.done"
  mkdir -p "$d"
  nq=$num_queries
  [ "$nq" -gt 0 ] || nq=$(wc -l < "$split/public_queries/ref_text")
  plan=$(python3 local/pate_plan.py sigma --mechanism "$mech" --teachers "$num_teachers" --queries "$nq" --eps "$e" \
    --delta "$delta" --max-sigma-frac "$max_sigma_frac" --sigma1-ratio "$sigma1_ratio" \
    --threshold-frac "$threshold_frac") || die "pate_plan.py failed for $mech at eps $e"
  q=${plan%% *} opts=${plan#* }
  log "Stage 4: $mech at eps $e (delta $delta): $q queries, $opts"
  if [ "$q" -lt "$(wc -l < "$split/public_queries/ref_text")" ]; then   # the first q: a random subset (stage 1)
    lhotse subset --first "$q" "$split/public_queries/cuts.jsonl.gz" "$d/queries.jsonl.gz"
  else
    cp "$split/public_queries/cuts.jsonl.gz" "$d/queries.jsonl.gz"
  fi
  $decode_cmd "$d/log/aggregate.log" \
    pate-aggregate $(for k in $(seq 1 "$num_teachers"); do echo "$exp/teacher$k/final.pt"; done) \
      --cuts "$d/queries.jsonl.gz" --lang-dir "$lang" --mechanism "$mech" $opts --delta "$delta" \
      --seed "$seed" --decode-method "$m0" --out-dir "$d"
  if [ -s "$d/text" ]; then
    validate-data-dir "$d" > "$d/log/validate.log" 2>&1 || die "$d does not validate: see $d/log/validate.log"
    # the labels against the transcripts held back from the public queries
    compute-wer --mode present --out-dir "$d/label_scoring" "$split/public_queries/ref_text" "$d/text" \
      > "$d/label_wer.txt" 2> "$d/log/label_score.log" || die "compute-wer failed: see $d/log/label_score.log"
  else
    log "warning: $mech at eps $e answered no query: its student trains on the public seed alone"
  fi
  mark_done "$d"
}

# ---------------------------------------------------------------- 0: data
if [ "$setting" = within ]; then
  stage_in 0 && link_from "$(cd "$asr_dir" && pwd)/data/$size" "$data" fbank synth "lang_bpe_$vocab"
else
  if stage_in 0 && ! stage_done "$data/synth"; then
    log "Stage 0: the far-field corpus (reverberation, noise at 5-20 dB SNR) -> $data/synth"
    make-synth-corpus $corpus_opts --seed 1 --nj "$nj" --heldout-synth none --noise-prob 1 --reverb-prob 1 \
      --snr-range 5,20 --utt-tag ff "$data/synth"
    for s in train test; do validate-data-dir "$data/synth/$s" > /dev/null || die "$data/synth/$s does not validate"; done
    mark_done "$data/synth"
  fi
  if stage_in 0 && ! stage_done "$data/fbank/all"; then
    log "Stage 0: features of the far-field train and test sets (asr1's fbank config) -> $data/fbank"
    for s in train test; do
      compute-features --config "$asr_dir/conf/fbank.yaml" --nj "$nj" "$data/synth/$s" "$data/fbank/$s"
    done
    mark_done "$data/fbank/all"
  fi
  stage_in 0 && link_from "$(cd "$asr_dir" && pwd)/data/$size" "$data" "lang_bpe_$vocab"
  if [ -z "$base_checkpoint" ]; then
    base_checkpoint=$(ls -t "$asr_dir/exp/$size/$asr_model"/avg-*.pt 2>/dev/null | head -1 || true)
  fi
  [ -n "$base_checkpoint" ] && [ -f "$base_checkpoint" ] || \
    die "no base model '$base_checkpoint': run $asr_dir/run.sh --size $size, or give --base-checkpoint"
fi
for f in "$lang/bpe.model" "$data/fbank/train/cuts.jsonl.gz" "$data/fbank/test/cuts.jsonl.gz" \
         "$data/synth/train/utt2spk" "$data/synth/test/text" "$model_conf"; do
  [ -e "$f" ] || die "missing $f: run $asr_dir/run.sh --size $size (and stage 0 here)"
done

# ---------------------------------------------------------------- 1: split by speaker
if stage_in 1 && ! stage_done "$split"; then
  log "Stage 1: $num_teachers private shards, $num_public_spk public speakers (privacy unit: the speaker) -> $split"
  python3 local/split_private_public.py --data-dir "$data/synth/train" --cuts "$data/fbank/train/cuts.jsonl.gz" \
    --num-shards "$num_teachers" --num-public-spk "$num_public_spk" --seed-utts "$seed_utts" \
    --num-queries "$num_queries" --seed "$seed" "$split"
  for p in private public_seed public_queries $(for k in $(seq 1 "$num_teachers"); do echo "shard$k"; done); do
    validate-data-dir "$split/$p" > /dev/null || die "$split/$p does not validate"
  done
  mark_done "$split"
fi
stage_done "$split" || die "no $split: run stage 1"
public=$exp/public/final.pt

# ---------------------------------------------------------------- 2: public-only model
if stage_in 2 && [ ! -f "$public" ]; then
  log "Stage 2: the public-only model on $seed_utts labelled public utterances, $public_steps steps"
  if [ "$setting" = within ]; then
    train_model "$exp/public" "$public_steps" "$split/public_seed/cuts.jsonl.gz"
  else   # the public model of the other domain, fine-tuned on the labelled far-field seed
    train_model "$exp/public" "$public_steps" "$split/public_seed/cuts.jsonl.gz" --init-checkpoint "$base_checkpoint"
  fi
fi

# ---------------------------------------------------------------- 3: teachers and the non-private model
if stage_in 3; then
  [ -f "$public" ] || die "no $public: run stage 2"
  todo=""
  for k in $(seq 1 "$num_teachers"); do [ -f "$exp/teacher$k/final.pt" ] || todo="$todo $k"; done
  [ -f "$exp/nonprivate/final.pt" ] || todo="$todo nonprivate"
  [ -n "$todo" ] && log "Stage 3: teachers$todo ($teacher_steps steps; logs: $exp/teacher<k>/log/train.log)"
  for k in $todo; do
    if [ "$k" = nonprivate ]; then
      spawn train_model "$exp/nonprivate" "$nonprivate_steps" "$split/private/cuts.jsonl.gz" --init-checkpoint "$public"
    else
      spawn train_model "$exp/teacher$k" "$teacher_steps" "$split/shard$k/cuts.jsonl.gz" --init-checkpoint "$public"
    fi
  done
  wait_all
fi

# ---------------------------------------------------------------- 4: noisy aggregation
if stage_in 4; then
  for k in $(seq 1 "$num_teachers"); do [ -f "$exp/teacher$k/final.pt" ] || die "no teacher $k: run stage 3"; done
  for mech in $mechanisms; do
    for e in $eps_list; do spawn aggregate "$mech" "$e"; done
  done
  wait_all
fi

# ---------------------------------------------------------------- 5: students
if stage_in 5; then
  for mech in $mechanisms; do
    for e in $eps_list; do
      d=$data/pate/${mech}_eps$e
      [ -f "$exp/student_${mech}_eps$e/final.pt" ] && continue
      stage_done "$d" || die "no $d: run stage 4"
      if [ ! -f "$d/train.jsonl.gz" ]; then
        if [ -s "$d/text" ]; then
          lhotse combine "$split/public_seed/cuts.jsonl.gz" "$d/cuts.jsonl.gz" "$d/train.jsonl.gz"
        else   # no query answered: the student is trained on the public seed alone
          cp "$split/public_seed/cuts.jsonl.gz" "$d/train.jsonl.gz"
        fi
      fi
      log "Stage 5: student of $mech at eps $e: seed + $(wc -l < "$d/text") labelled queries, $student_steps steps"
      spawn train_model "$exp/student_${mech}_eps$e" "$student_steps" "$d/train.jsonl.gz" --init-checkpoint "$public"
    done
  done
  # two controls with the students' training: on the seed alone (what the extra steps give without
  # any label: eps = 0), and on the seed plus every query with its true transcript (perfect labels,
  # no privacy: the ceiling of any labelling mechanism)
  if [ ! -f "$exp/student_seed_only/final.pt" ]; then
    log "Stage 5: control student on the public seed alone, $student_steps steps"
    spawn train_model "$exp/student_seed_only" "$student_steps" "$split/public_seed/cuts.jsonl.gz" --init-checkpoint "$public"
  fi
  if [ ! -f "$exp/student_oracle/final.pt" ]; then
    o=$data/pate/oracle
    mkdir -p "$o"
    if [ ! -f "$o/train.jsonl.gz" ]; then
      python3 local/oracle_cuts.py "$split/public_queries/cuts.jsonl.gz" "$split/public_queries/ref_text" "$o/queries.jsonl.gz"
      lhotse combine "$split/public_seed/cuts.jsonl.gz" "$o/queries.jsonl.gz" "$o/train.jsonl.gz"
    fi
    log "Stage 5: oracle student on the seed + all $(wc -l < "$split/public_queries/ref_text") queries with true transcripts"
    spawn train_model "$exp/student_oracle" "$student_steps" "$o/train.jsonl.gz" --init-checkpoint "$public"
  fi
  wait_all
fi

# ---------------------------------------------------------------- 6: DP-SGD
if stage_in 6; then
  for e in $eps_list; do
    [ -f "$exp/dpsgd_eps$e/final.pt" ] && continue
    log "Stage 6: DP-SGD at eps $e (delta $delta, unit $dp_unit), $dp_steps steps"
    spawn train_model "$exp/dpsgd_eps$e" "$dp_steps" "$split/private/cuts.jsonl.gz" --init-checkpoint "$public" \
      --dp-target-eps "$e" --dp-delta "$delta" --dp-unit "$dp_unit" --dp-max-grad-norm "$dp_max_grad_norm" \
      --dp-max-utts "$dp_max_utts" --max-duration "$dp_max_duration"
  done
  wait_all
fi

# ---------------------------------------------------------------- 7: decode and score
if stage_in 7; then
  models="public nonprivate $(for k in $(seq 1 "$num_teachers"); do echo "teacher$k"; done)"
  [ "$setting" = within ] || models="base $models"   # asr1's model itself, before any far-field data
  models="$models student_seed_only student_oracle"
  for e in $eps_list; do
    for mech in $mechanisms; do models="$models student_${mech}_eps$e"; done
    models="$models dpsgd_eps$e"
  done
  todo=""
  for nm in $models; do stage_done "$exp/decode/$nm" || todo="$todo $nm"; done
  if [ -n "$todo" ]; then
    log "Stage 7: decode $(echo $todo | wc -w) models on the test set of $data ($methods)"
    for nm in $todo; do
      mdl=$exp/$nm/final.pt
      [ "$nm" = base ] && mdl=$base_checkpoint
      [ -f "$mdl" ] || die "no $mdl: run stages 2-6"
      spawn decode_model "$nm" "$mdl"
    done
    wait_all
  fi
fi

# ---------------------------------------------------------------- 8: tables
if stage_in 8 && ! stage_done "$exp/results"; then
  log "Stage 8: $exp/results.md"
  python3 local/results_table.py --exp "$exp" --data "$data" --num-teachers "$num_teachers" --eps-list "$eps_list" \
    --mechanisms "$mechanisms" --method "$m0" --delta "$delta" --setting "$setting" --json "$exp/results.json" --out "$exp/results.md"
  mark_done "$exp/results"
  cat "$exp/results.md"
fi
log "Done: stages $stage..$stop_stage of $0 ($size, $setting)"
