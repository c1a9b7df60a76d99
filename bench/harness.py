"""Log-likelihood throughput of the lm-evaluation-harness adapter against `scaling eval`, on the
same model and the same (context, continuation) requests: requests/s of
evaluation.likelihood.continuation_logprobs (what `scaling eval` calls), of
evaluation.harness.ScalingLM.loglikelihood (what lm-eval calls), and of a whole
lm_eval.simple_evaluate over a local JSON task holding the same items (lm-eval's request
building, filters and metrics included), with their ratios.

    python bench/harness.py [--model s6] [--seq-len 256] [--examples 200] [--batch 50]

Requests are the 4 choices of largest_of_4 at 3 shots; parameters are a random initialisation
(throughput does not depend on what the model learned); text is byte-tokenized. Times exclude
compilation (one warm-up call) and take the best of --repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from types import SimpleNamespace

import jax
import numpy as np
from eval import best_time  # bench/eval.py, beside this script (its timer: compile, then best of n)
from lm_eval import simple_evaluate
from lm_eval.tasks import TaskManager

from evaluation.evaluate import _choice_pairs, prompt_sets
from evaluation.harness import ScalingLM
from evaluation.likelihood import continuation_logprobs
from scaling import zoo
from scaling.config import EvalConfig, ModelConfig
from scaling.model import init_params
from scaling.tokenizer import ByteTokenizer

TASK = """task: bench_mc
dataset_path: json
dataset_kwargs: {{data_files: {{test: {data}}}}}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{prompt}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: answer
target_delimiter: ""
metric_list: [{{metric: acc, aggregation: mean, higher_is_better: true}}]
metadata: {{version: 1.0}}
"""


def local_task(folder: Path, ps, suffix: str) -> TaskManager:
    """The prompt set as an lm-eval task whose requests are exactly `scaling eval`'s pairs."""
    docs = [
        {"prompt": p, "choices": [c + suffix for c in ex.choices], "answer": 0}
        for p, ex in zip(ps.prompts, ps.examples)
    ]
    data = folder / "bench_mc.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in docs))
    (folder / "bench_mc.yaml").write_text(TASK.format(data=data))
    return TaskManager(include_path=str(folder), include_defaults=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="s6", choices=sorted(zoo.LADDER))
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--examples", type=int, default=200)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    os.environ.update(HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
    cfg = ModelConfig(**zoo.shape(args.model), seq_len=args.seq_len)
    params, tok = init_params(cfg, 0), ByteTokenizer()
    print(
        f"model {args.model} ({cfg.n_layer} layers, d_model {cfg.d_model}), seq_len {cfg.seq_len}"
    )
    print(f"backend {jax.default_backend()}, {jax.device_count()} device(s), batch {args.batch}\n")

    ecfg = EvalConfig(tasks=("largest_of_4",), shots=(3,), n_examples=args.examples)
    ps = next(prompt_sets(cfg, ecfg, tok))
    pairs = _choice_pairs(ps.task, ps.examples, ps.prompts)
    lm = ScalingLM(params, cfg, tok, batch_size=args.batch)
    requests = [SimpleNamespace(args=p) for p in pairs]
    ours = continuation_logprobs(params, cfg, tok, pairs, args.batch)
    theirs = np.array([lp for lp, _ in lm.loglikelihood(requests)])
    assert np.abs(ours - theirs).max() < 1e-5  # the same numbers, before timing them

    with tempfile.TemporaryDirectory() as folder:
        manager = local_task(Path(folder), ps, ps.task.answer_suffix)
        run = lambda: simple_evaluate(  # noqa: E731
            model=lm, tasks=["bench_mc"], task_manager=manager, log_samples=True, verbosity="ERROR"
        )
        sent = [tuple(a) for s in run()["samples"]["bench_mc"] for a in s["arguments"]]
        assert sent == pairs, "lm-eval's requests differ from scaling eval's"
        times = {
            "scaling eval (continuation_logprobs)": best_time(
                lambda: continuation_logprobs(params, cfg, tok, pairs, args.batch), args.repeats
            ),
            "adapter (ScalingLM.loglikelihood)": best_time(
                lambda: lm.loglikelihood(requests), args.repeats
            ),
            "lm-eval simple_evaluate, same items": best_time(run, args.repeats),
        }
    base = times["scaling eval (continuation_logprobs)"]
    print(f"{len(pairs)} loglikelihood requests ({args.examples} examples × 4 choices)")
    for label, t in times.items():
        print(f"  {label:<38}{len(pairs) / t:9.1f} requests/s  {base / t:6.2f}× scaling eval's")


if __name__ == "__main__":
    main()
