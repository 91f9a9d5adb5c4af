#!/usr/bin/env bash
# egs/sql/rerank1: N-best reranking for text-to-SQL with a query-plan model (coherence) and
#   schema/value linking with repair (correctness), plus an executability check, on a
#   synthetic Spider-style benchmark whose test databases are never seen in training.
#
#   ./run.sh --size tiny     # well under a minute on 2 CPU cores (tests; the numbers mean nothing)
#   ./run.sh                 # full size (RESULTS.md numbers; about 25 minutes on one core)
#
# Stages (each skipped when its marker exists, so a rerun resumes):
#   0  benchmark (sql-rerank make-data): SQLite databases of 11 domains, questions at every
#      Spider hardness level with values named by prefixes, initials, case and plural variants
#   1  train the seq2seq generator (sql-rerank train-generator)
#   2  10-best lists of the test questions (sql-rerank nbest) and their top-1 / oracle scores
#   3  train the query-plan model, with checkpoints at increasing steps (sql-rerank train-plan)
#   4  rerank (sql-rerank rerank): each reranker alone, plan + linking, all three; plan + linking
#      with each plan checkpoint and with a noised oracle plan at several accuracies
#   5  exp/<size>/results.md
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

stage=0
stop_stage=100
size=full
train_per_db=""       # questions per training database (default: tiny 20, full 400)
test_per_db=""        # per dev/test database (default: tiny 8, full 200)
epochs=""             # generator epochs (default: tiny 1, full 10)
plan_steps=""         # plan-model steps (default: tiny 30, full 800)
plan_save_steps=""    # checkpoints for the accuracy curve (default: tiny "10", full "5 15 40 100 300")
oracle_accs=""        # noised oracle plan accuracies (default: tiny "0.5", full "0.5 0.7 0.8 0.9 1.0")
beam=10
nj=2                  # rerank runs at a time (stage 4)
seed=0
help_message="Usage: $0 [options]   (stages 0-5, see the top of this file)"

. utils/parse_options.sh
. ./path.sh
. ./cmd.sh

case "$size" in
  tiny) train_per_db=${train_per_db:-20}; test_per_db=${test_per_db:-8}; epochs=${epochs:-1}
        plan_steps=${plan_steps:-30}; plan_save_steps=${plan_save_steps:-10}; oracle_accs=${oracle_accs:-0.5} ;;
  full) train_per_db=${train_per_db:-400}; test_per_db=${test_per_db:-200}; epochs=${epochs:-10}
        plan_steps=${plan_steps:-800}; plan_save_steps=${plan_save_steps:-5 15 40 100 300}
        oracle_accs=${oracle_accs:-0.5 0.7 0.8 0.9 1.0} ;;
  *) die "--size must be tiny or full, not '$size'" ;;
esac
require_positive_int train_per_db test_per_db epochs plan_steps beam nj
for s in $plan_save_steps; do
  [[ $s =~ ^[0-9]+$ ]] && [ "$s" -gt 0 ] && [ "$s" -lt "$plan_steps" ] ||
    die "--plan-save-steps: '$s' is not a step between 1 and $((plan_steps - 1))"
done
for a in $oracle_accs; do
  [[ $a =~ ^(0(\.[0-9]+)?|1(\.0+)?)$ ]] || die "--oracle-accs: '$a' is not an accuracy in [0, 1]"
done
data=data/$size
dbs=$data/databases
exp=exp/$size
mkdir -p "$exp/log"

if stage_in 0 && ! stage_done "$data/bench"; then
  log "Stage 0: benchmark -> $data ($train_per_db questions per training database, $test_per_db per test one)"
  $train_cmd "$exp/log/make_data.log" sql-rerank make-data --train-per-db "$train_per_db" \
    --dev-per-db "$test_per_db" --test-per-db "$test_per_db" --seed "$seed" "$data"
  mark_done "$data/bench"
fi

if stage_in 1 && ! stage_done "$exp/gen"; then
  log "Stage 1: train the generator, $epochs epochs (log: $exp/gen/log/train.log)"
  $train_cmd "$exp/gen/log/train.log" sql-rerank train-generator --epochs "$epochs" --seed "$seed" \
    "$data/train.jsonl" "$dbs" "$exp/gen"
  mark_done "$exp/gen"
fi

if stage_in 2 && ! stage_done "$exp/nbest"; then
  log "Stage 2: $beam-best lists of the test questions -> $exp/nbest_test.jsonl"
  $decode_cmd "$exp/log/nbest_test.log" sql-rerank nbest --beam "$beam" --nbest "$beam" \
    "$exp/gen/final.pt" "$data/test.jsonl" "$dbs" "$exp/nbest_test.jsonl"
  $decode_cmd "$exp/log/score_top1.log" sql-rerank score -o "$exp/top1/metrics.json" "$exp/nbest_test.jsonl" "$dbs"
  mark_done "$exp/nbest"
fi

if stage_in 3 && ! stage_done "$exp/plan"; then
  log "Stage 3: train the plan model, $plan_steps steps, checkpoints at $plan_save_steps"
  $train_cmd "$exp/plan/log/train.log" sql-rerank train-plan --steps "$plan_steps" \
    --save-steps "$(echo $plan_save_steps | tr ' ' ,)" --seed "$seed" "$data/train.jsonl" "$dbs" "$exp/plan"
  mark_done "$exp/plan"
fi

rerank() {  # rerank NAME OPTIONS...: exp/<size>/rerank/NAME/{reranked.jsonl,metrics.json}
  local name=$1
  shift
  stage_done "$exp/rerank/$name" && return 0
  log "Stage 4: rerank: $name ($*)"
  $decode_cmd "$exp/rerank/$name/log/rerank.log" sql-rerank rerank "$@" \
    "$exp/nbest_test.jsonl" "$dbs" "$exp/rerank/$name"
  mark_done "$exp/rerank/$name"
}

if stage_in 4; then
  pm=$exp/plan/final.pt
  spawn rerank plan --plan-model "$pm" --no-link --no-exec
  spawn rerank link --no-plan --no-exec
  spawn rerank exec --no-plan --no-link
  spawn rerank plan_link --plan-model "$pm" --no-exec
  spawn rerank all --plan-model "$pm"
  for s in $plan_save_steps; do
    spawn rerank "plan_link_step$s" --plan-model "$exp/plan/step-$s.pt" --no-exec
  done
  for a in $oracle_accs; do
    spawn rerank "plan_link_oracle$a" --plan-oracle-acc "$a" --no-exec --seed "$seed"
  done
  wait_all
fi

if stage_in 5 && ! stage_done "$exp/results"; then
  log "Stage 5: $exp/results.md"
  python3 local/results_table.py --exp "$exp" --data "$data" --out "$exp/results.md"
  mark_done "$exp/results"
  cat "$exp/results.md"
fi
log "Done: stages $stage..$stop_stage of $0 ($size)"
