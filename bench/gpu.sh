#!/usr/bin/env bash
# The whole accelerator check in one script, meant to finish in under 8 minutes on one H100 or
# H200: train-step tokens/s and MFU (against the datasheet peak) of the gpt2 and llama families
# at 125m and 350m in bfloat16, a short sweep over both families (train, evaluate, collect,
# report), and the data loader's throughput where bench/data.py exists. Every figure goes to
# one directory: the first argument, else $OUT, else bench-gpu/; gpu.txt there holds the
# device, the tables and each stage's wall time.
#
#   bench/gpu.sh [DIR]
#   GPU_SH_TINY=1 bench/gpu.sh /tmp/gpu-check   # the same stages at CPU sizes: checks the script
#
# PEAK_TFLOPS: the datasheet peak MFU is measured against (default 989: H100/H200 SXM, bf16,
# dense). PYTHON: the interpreter (default .venv/bin/python, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-bench-gpu}}"
mkdir -p "$out"
python="${PYTHON:-.venv/bin/python}"
[ -x "$python" ] || python=python3
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
summary="$out/gpu.txt"

if [ -n "${GPU_SH_TINY:-}" ]; then  # CPU-sized: every stage runs, in a minute or two
  configs="s4" timing="--steps 2 --repeats 1 --warmup 1"
  rungs="[s0]" seq_len=64 batch=4 tokens=2e4 examples=10
else
  configs="125m 350m" timing="--steps 10 --repeats 3 --warmup 2"
  rungs="[s6]" seq_len=256 batch=32 tokens=2e6 examples=50
fi

stage() {  # stage NAME COMMAND...: run it, its output into the summary, with its wall time
  local name="$1" start=$SECONDS
  shift
  echo "== $name" | tee -a "$summary"
  "$@" 2>&1 | tee -a "$summary"
  echo "== $name: $((SECONDS - start)) s" | tee -a "$summary"
}

: >"$summary"
stage device "$python" -c "import jax; print(jax.__version__, jax.devices())"

# shellcheck disable=SC2086  # $configs and $timing are word lists
stage train_step "$python" bench/train_step.py --config $configs --family gpt2 llama \
  --mesh 1 --dtype bfloat16 --no-torch --peak-tflops "${PEAK_TFLOPS:-989}" $timing \
  --json "$out/train_step.json"

cat >"$out/families.yaml" <<EOF
name: families
base:
  model: {seq_len: $seq_len}
  train: {batch_size: $batch, tokens: $tokens, log_every: 50, eval_every: 100}
  eval: {shots: [0], n_examples: $examples, tasks: [add2, copy_letters]}
grid:
  model.family: [gpt2, llama]
  model: $rungs
EOF
stage sweep "$python" -m experiments sweep "$out/families.yaml" --runs-dir "$out/runs" \
  --reports-dir "$out/reports" --no-tensorboard
stage results "$python" -c "import pandas as pd; r = pd.read_csv('$out/runs/families/results.csv')
print(r.drop_duplicates('run_id')[['model', 'family', 'params_non_embedding', 'params_active',
      'tokens', 'flops_detailed', 'loss', 'tokens_per_s']].to_string(index=False))"

if [ -f bench/data.py ]; then  # the loader benchmark, once it exists
  stage data "$python" bench/data.py
fi
echo "figures in $out"
