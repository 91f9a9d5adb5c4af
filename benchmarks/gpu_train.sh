#!/usr/bin/env bash
# train-transducer on CUDA with torch 2.x, no k2 and torchaudio's RNN-T loss (issue 4's GPU
# check), on the slice written by gpu_subset.py. Run from the repository root on the GPU
# machine; results in $OUT (default benchmarks/out/gpu_run): summary.txt, logs, amp_step.txt.
#   python benchmarks/gpu_subset.py                 # here, after asr1's full run
#   bash benchmarks/gpu_train.sh                    # there (WHEELS=dir installs lhotse & co. first)
# Runs: 40 steps of 200 s with and without AMP, no dev set (the same batches); greedy /
# modified-beam / CTC decoding on CUDA; benchmarks/amp_step.py; then 200 steps of 20 s batches
# (the CPU recipe's size), 100 of 100 s and of 200 s with AMP, 50 of 200 s in fp32, 100 of
# 200 s with AMP and 4 loader workers, and a resume (the 20 s run continued to 220 steps). Logs in $LOG_DIR (default $OUT).
set -uo pipefail
GPU_DIR=${GPU_DIR:-benchmarks/out/gpu}
OUT=${OUT:-benchmarks/out/gpu_run}; LOG_DIR=${LOG_DIR:-$OUT}; mkdir -p "$OUT" "$LOG_DIR"
PY=${PY:-python3}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
if [ -n "${WHEELS:-}" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PYTHONPATH
fi
$PY -c 'import sys, torch, torchaudio, torchaudio.functional as F; print("python", sys.version.split()[0], "torch", torch.__version__, "torchaudio", torchaudio.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "", "rnnt_loss", hasattr(F, "rnnt_loss"))' | tee "$OUT/summary.txt"
common="--config egs/assistant/asr1/conf/train.yaml --model-config egs/assistant/asr1/conf/model_conformer.yaml
  --cuts-train $GPU_DIR/data/train/cuts.jsonl.gz --lang-dir $GPU_DIR/lang --loss torchaudio --average-last 0
  --save-every-n 100000 --num-epochs 100"
train() {  # train NAME EXTRA-OPTIONS...
  local name=$1; shift
  echo "=== $name: $*" | tee -a "$OUT/summary.txt"
  $PY -m sltk.bin.train_transducer $common --exp-dir /tmp/gpu_exp_$name "$@" > "$LOG_DIR/train_$name.log" 2>&1
  echo "rc $?" | tee -a "$OUT/summary.txt"
  grep -E "resuming|frames/s|training done|rror" "$LOG_DIR/train_$name.log" | tail -3 | tee -a "$OUT/summary.txt"
  cat /tmp/gpu_exp_$name/train_summary.json >> "$OUT/summary.txt"
}
dev="--cuts-dev $GPU_DIR/data/dev/cuts.jsonl.gz --log-every 20"
train amp40 --max-duration 200 --amp --max-steps 40 --log-every 10
train fp32_40 --max-duration 200 --no-amp --max-steps 40 --log-every 10
echo "=== decoding dev on cuda" | tee -a "$OUT/summary.txt"
$PY -m sltk.bin.decode_transducer --checkpoint /tmp/gpu_exp_fp32_40/checkpoint-40.pt --device cuda \
  --cuts $GPU_DIR/data/dev/cuts.jsonl.gz --lang-dir $GPU_DIR/lang --method greedy --method modified_beam \
  --method ctc_greedy --out-dir /tmp/gpu_dec > "$OUT/decode.log" 2>&1
echo "rc $?" | tee -a "$OUT/summary.txt"; tail -4 "$OUT/decode.log" | tee -a "$OUT/summary.txt"
$PY benchmarks/amp_step.py > "$OUT/amp_step.txt" 2>&1; head -4 "$OUT/amp_step.txt" | tee -a "$OUT/summary.txt"
train b20 $dev --max-duration 20 --amp --max-steps 200
train b100 $dev --max-duration 100 --amp --max-steps 100
train b200 $dev --max-duration 200 --amp --max-steps 100
train b200fp32 $dev --max-duration 200 --no-amp --max-steps 50
train b200w4 $dev --max-duration 200 --amp --max-steps 100 --num-workers 4
train b20 $dev --max-duration 20 --amp --max-steps 220            # resumes from step 200
