"""lm-evaluation-harness runs our checkpoints (evaluation.harness, experiments.lm_eval_model),
offline, on local YAML tasks over JSONL files written here: multiple choice, rolling perplexity
and generation with stop sequences; its log-likelihoods are `scaling eval`'s; its results come
back through `scaling eval --harness lm-eval` into eval.jsonl, the results table and the
importers."""

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_run
from lm_eval import simple_evaluate
from lm_eval.tasks import TaskManager
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from analysis.importers import read_lm_eval
from evaluation.evaluate import _choice_pairs, prompt_sets
from evaluation.generate import generate
from evaluation.harness import ScalingLM
from evaluation.likelihood import continuation_logprobs
from experiments import cli_eval, lm_eval_plugin, store
from experiments.cli import main
from experiments.collect import collect
from experiments.lm_eval_model import RunLM
from scaling.config import ConfigError, EvalConfig, run_config
from scaling.flops import param_counts
from scaling.model import apply, init_params
from scaling.train import train

ROOT = Path(__file__).resolve().parents[1]
OFFLINE = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
MC = [(1, 5, 3, 2), (7, 2, 9, 4), (3, 8, 1, 6), (4, 4, 9, 0), (2, 1, 0, 3), (6, 5, 7, 8)]
TEXTS = ["The cat sat on the mat. " * k for k in (1, 3, 9)]  # 24 to 216 bytes: 1 to 4 windows
SUMS = [(1, 2), (3, 4), (12, 30), (5, 5)]
UNTIL = ["\n", " "]
FORWARD = jax.jit(lambda params, tokens, cfg: apply(params, cfg, tokens), static_argnums=2)
TASKS = {
    "scaling_mc": """
output_type: multiple_choice
doc_to_text: "{{question}}"
doc_to_choice: "{{choices}}"
doc_to_target: answer
metric_list: [{metric: acc}, {metric: acc_norm}]""",
    "scaling_ppl": """
output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{text}}"
metric_list: [{metric: word_perplexity}, {metric: byte_perplexity}, {metric: bits_per_byte}]""",
    "scaling_gen": """
output_type: generate_until
doc_to_text: "{{question}}"
doc_to_target: "{{answer}}"
generation_kwargs: {until: ["\\n", " "], max_gen_toks: 8, do_sample: false}
metric_list: [{metric: exact_match}]""",
}


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    for key, value in OFFLINE.items():
        monkeypatch.setenv(key, value)


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    """A folder of lm-eval task YAMLs, each over a JSONL file, as a user writes them."""
    folder = tmp_path_factory.mktemp("tasks")
    docs = {
        "scaling_mc": [
            {"question": f"max {a} {b} {c} {d} =", "choices": list(map(str, (a, b, c, d)))}
            | {"answer": (a, b, c, d).index(max(a, b, c, d))}
            for a, b, c, d in MC
        ],
        "scaling_ppl": [{"text": t} for t in TEXTS],
        "scaling_gen": [{"question": f"{a}+{b}=", "answer": str(a + b)} for a, b in SUMS],
    }
    for name, body in TASKS.items():
        data = folder / f"{name}.jsonl"
        data.write_text("".join(json.dumps(d) + "\n" for d in docs[name]))
        head = f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        head += f"    test: {data}\ntest_split: test\nmetadata: {{version: 1.0}}"
        (folder / f"{name}.yaml").write_text(head + body + "\n")
    return folder


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A sweep of one finished run of the TINY shape, checkpoints at steps 30 and 40."""
    cfg = run_config(tiny_run(eval={"shots": [1], "n_examples": 20, "instruction": False}))
    sweep = tmp_path_factory.mktemp("runs") / "tiny"
    loss = train(cfg, sweep / "r0").final_heldout_loss
    store.claim_config(str(sweep / "r0"), cfg.to_dict())
    store.set_status(str(sweep / "r0"), store.DONE, heldout_loss=loss)
    return sweep


@pytest.fixture(scope="module")
def lm(sweep):
    return RunLM(str(sweep / "r0"), batch_size=16)


def _evaluate(lm, tasks, names):
    manager = TaskManager(include_path=str(tasks), include_defaults=False)
    return simple_evaluate(model=lm, tasks=names, task_manager=manager, log_samples=True)


def _requests(*args):
    return [SimpleNamespace(args=a) for a in args]


def test_adapter_loglikelihoods_equal_scaling_evals(lm, tasks):
    out = _evaluate(lm, tasks, ["scaling_mc"])
    samples = out["samples"]["scaling_mc"]
    pairs = [tuple(a) for s in samples for a in s["arguments"]]
    got = [r[0][0] for s in samples for r in s["resps"]]
    want = continuation_logprobs(lm.params, lm.cfg, lm.tok, pairs)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    acc = np.mean([np.argmax([r[0][0] for r in s["resps"]]) == s["target"] for s in samples])
    assert out["results"]["scaling_mc"]["acc,none"] == pytest.approx(acc)
    # and on the prompts `scaling eval` builds for one of its own tasks, 2-shot
    ecfg = EvalConfig(tasks=("largest_of_4",), shots=(2,), n_examples=8, instruction=False)
    ps = next(prompt_sets(lm.cfg, ecfg, lm.tok))
    pairs = _choice_pairs(ps.task, ps.examples, ps.prompts)
    got = [lp for lp, _ in lm.loglikelihood(_requests(*pairs))]
    np.testing.assert_allclose(
        got, continuation_logprobs(lm.params, lm.cfg, lm.tok, pairs), atol=1e-5
    )


def _window_reference(lm, text: str) -> float:
    """Rolling log-likelihood by lm-eval's windows, each window one forward pass of its own."""
    k, width = len(lm.prefix), lm.cfg.seq_len + 1
    ids = lm.tok.encode(text).tolist()
    windows = get_rolling_token_windows(ids, int(lm.prefix[-1]), lm.cfg.seq_len - k + 1, 1)
    total = 0.0
    for j, (context, predicted) in enumerate(map(make_disjoint_window, windows)):
        row = (lm.prefix[:-1].tolist() if j == 0 else []) + context + predicted
        padded = jnp.asarray([row + [0] * (width - len(row))])  # causal: padding is never read
        logp = np.asarray(jax.nn.log_softmax(FORWARD(lm.params, padded[:, :-1], lm.cfg)))[0]
        at = np.arange(len(row) - len(predicted), len(row))
        total += float(logp[at - 1, np.asarray(row)[at]].sum())
    return total


def test_rolling_perplexity_scores_every_token_once(lm, tasks):
    rolled = lm.loglikelihood_rolling(_requests(*[(t,) for t in TEXTS]))
    assert rolled == pytest.approx([_window_reference(lm, t) for t in TEXTS], abs=1e-4)
    # a text within one window: the same as its log-likelihood from the start of a document
    [(from_start, _)] = lm.loglikelihood(_requests(("", TEXTS[0])))
    assert rolled[0] == pytest.approx(from_start, abs=1e-5)
    out = _evaluate(lm, tasks, ["scaling_ppl"])["results"]["scaling_ppl"]
    n_bytes = sum(len(t.encode()) for t in TEXTS)
    assert out["bits_per_byte,none"] == pytest.approx(-sum(rolled) / n_bytes / math.log(2))


def test_generation_stops_at_the_first_stop_sequence(lm, tasks):
    out = _evaluate(lm, tasks, ["scaling_gen"])  # the task's until and max_gen_toks arrive
    texts = [s["resps"][0][0] for s in out["samples"]["scaling_gen"]]
    prompts = [f"{a}+{b}=" for a, b in SUMS]
    assert texts == [s.text for s in generate(lm.params, lm.cfg, lm.tok, prompts, 8, stop=UNTIL)]
    assert "exact_match,none" in out["results"]["scaling_gen"]
    # stops of two characters cut inside the output, each request with its own settings (our
    # trained model writes only spaces; random weights scaled up write varied bytes)
    varied = jax.tree.map(lambda w: 10 * w, init_params(lm.cfg, 1))
    fresh = ScalingLM(varied, lm.cfg, lm.tok, batch_size=4)
    full = [s.text for s in generate(fresh.params, lm.cfg, lm.tok, prompts, 12, stop=())]
    stops = [t[3:5] for t in full]
    got = fresh.generate_until(
        _requests(*[(p, {"until": [s], "max_gen_toks": 12}) for p, s in zip(prompts, stops)])
    )
    assert got == [t[: t.index(s)] for t, s in zip(full, stops)]
    assert len(set(full)) == len(full) and all(len(g) <= 3 for g in got)


def test_scaling_eval_runs_lm_eval_tasks_over_a_sweep_and_resumes(sweep, tasks, capsys):
    args = ["eval", str(sweep), "--harness", "lm-eval", "--tasks", "scaling_mc,scaling_ppl"]
    args += ["--include-path", str(tasks), "--checkpoints"]
    assert main(args) == 0
    assert "4 (checkpoint, task) evaluated, 0 already there" in capsys.readouterr().out
    run = sweep / "r0"
    cfg = run_config(store.read_json(str(run / "config.json")))
    for step in (30, 40):
        saved = json.loads((run / "lm_eval" / f"results_{step}.json").read_text())
        assert set(saved["results"]) == {"scaling_mc", "scaling_ppl"}
        assert saved["config"]["model_num_parameters"] == param_counts(cfg.model).total
        assert saved["config"]["model_revision"] == f"step{step}"
        scores = read_lm_eval(run / "lm_eval" / f"results_{step}.json")
        assert {"acc", "acc_norm", "bits_per_byte"} <= set(scores["metric"])
        # re-imported with params, step and tokens picked up from the file itself
        assert (scores["params"] == saved["config"]["model_num_parameters"]).all()
        assert (scores["step"] == step).all() and (scores["model"] == f"r0@step{step}").all()
        assert (scores["tokens"] == saved["config"]["tokens_seen"]).all()
    rows = [r for r in store.read_eval(str(run)) if r.get("harness") == "lm-eval"]
    acc = {r["step"]: r for r in rows if r["task"] == "scaling_mc" and r["metric"] == "acc"}
    assert acc[40]["random_baseline"] == pytest.approx(0.25)
    assert acc[40]["n_examples"] == len(MC) and acc[30]["tokens_seen"] == 30 * 8 * 64
    assert main(args) == 0
    assert "0 (checkpoint, task) evaluated, 4 already there" in capsys.readouterr().out
    results, _ = collect(str(sweep))
    mine = results[results["harness"] == "lm-eval"]
    assert set(mine["metric"]) >= {"acc", "acc_norm", "word_perplexity", "bits_per_byte"}
    assert (mine["params_total"] == param_counts(cfg.model).total).all()
    assert (sweep / "eval_over_training.csv").exists()  # step 30's rows


def test_bad_input_is_one_line_before_any_compute(sweep, tasks, monkeypatch, capsys):
    base = ["eval", str(sweep), "--harness", "lm-eval", "--tasks", "scaling_mc"]
    assert main([*base, "--samples", "3"]) == 2
    assert "--samples: applies to --harness scaling only" in capsys.readouterr().err
    assert main(["eval", str(sweep), "--include-path", str(tasks)]) == 2
    assert main([*base, "--include-path", str(tasks / "missing")]) == 2
    with pytest.raises(ConfigError, match="no checkpoint of step 7"):
        RunLM(str(sweep / "r0"), step=7)
    monkeypatch.setattr(cli_eval, "find_spec", lambda name: None)
    assert main(base) == 2
    assert "pip install 'scaling[lmeval]'" in capsys.readouterr().err


def test_the_project_runs_without_lm_eval():
    code = (
        "import sys; sys.modules['lm_eval'] = None\n"  # as if not installed
        "import experiments.cli, experiments.lm_eval_plugin, evaluation.evaluate\n"
        "try:\n    import evaluation.harness\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "fix: pip install 'scaling[lmeval]'" in out.stdout


def test_the_name_is_registered_lazily():
    code = (
        "import sys, experiments.lm_eval_plugin as p; p.register()\n"
        "from lm_eval.api.registry import get_model, model_registry\n"
        "assert 'scaling' in model_registry and 'jax' not in sys.modules\n"
        "cls = get_model('scaling'); print(cls.__module__, cls.__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.split() == ["experiments.lm_eval_model", "RunLM"], out.stderr


def test_install_writes_and_removes_the_start_up_line(tmp_path, monkeypatch):
    monkeypatch.setattr(lm_eval_plugin, "pth_path", lambda: tmp_path / lm_eval_plugin.PTH)
    assert lm_eval_plugin.main(["--install"]) == 0
    assert (tmp_path / lm_eval_plugin.PTH).read_text() == lm_eval_plugin.PTH_LINE
    assert lm_eval_plugin.main(["--uninstall"]) == 0
    assert not (tmp_path / lm_eval_plugin.PTH).exists()


@pytest.mark.slow
def test_the_lm_eval_command_runs_our_checkpoint(sweep, tasks, tmp_path):
    """`lm_eval --model scaling`, the console script, with the start-up line installed (here in
    a site directory of its own, processed as Python processes site-packages)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / lm_eval_plugin.PTH).write_text(lm_eval_plugin.PTH_LINE)
    (site / "sitecustomize.py").write_text(f"import site\nsite.addsitedir({str(site)!r})\n")
    env = os.environ | OFFLINE | {"PYTHONPATH": f"{site}{os.pathsep}{ROOT}"}
    command = [str(Path(sys.executable).parent / "lm_eval"), "--model", "scaling"]
    command += ["--model_args", f"path={sweep / 'r0'},step=30", "--batch_size", "16"]
    command += ["--tasks", "scaling_mc", "--include_path", str(tasks)]
    command += ["--output_path", str(tmp_path / "out")]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    [path] = (tmp_path / "out").rglob("results_*.json")
    saved = json.loads(path.read_text())
    cfg = run_config(store.read_json(str(sweep / "r0" / "config.json")))
    assert saved["config"]["model_num_parameters"] == param_counts(cfg.model).total
    assert saved["config"]["model_revision"] == "step30"
    assert {"acc", "acc_norm"} <= set(read_lm_eval(path)["metric"])


MESH_SCRIPT = """
import json, sys
from types import SimpleNamespace as R
from experiments.lm_eval_model import RunLM
pairs, texts, prompts, until = json.loads(sys.argv[2])
out = {}
for axes in ({"data": 8}, {"data": 2, "fsdp": 2, "tensor": 2}):
    lm = RunLM(sys.argv[1], batch_size=12, **axes)  # 12 rows: 16 on data=8
    gen = [R(args=(p, {"until": until, "max_gen_toks": 8})) for p in prompts]
    out[str(axes)] = [
        lm.batch_size,
        [lp for lp, _ in lm.loglikelihood([R(args=tuple(p)) for p in pairs])],
        lm.loglikelihood_rolling([R(args=(t,)) for t in texts]),
        lm.generate_until(gen),
    ]
print(json.dumps(out))
"""


@pytest.mark.slow
def test_a_mesh_of_eight_devices_gives_one_devices_numbers(lm, sweep):
    pairs = [(f"max {a} {b} {c} {d} =", f" {a}") for a, b, c, d in MC] + [("", "1+2=3")]
    prompts = [f"{a}+{b}=" for a, b in SUMS]
    env = os.environ | {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    argv = [sys.executable, "-c", MESH_SCRIPT, str(sweep / "r0")]
    argv.append(json.dumps([pairs, TEXTS, prompts, UNTIL]))
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    gen = [SimpleNamespace(args=(p, {"until": UNTIL, "max_gen_toks": 8})) for p in prompts]
    want = [
        [lp for lp, _ in lm.loglikelihood(_requests(*pairs))],
        lm.loglikelihood_rolling(_requests(*[(t,) for t in TEXTS])),
        lm.generate_until(gen),
    ]
    sizes = {"{'data': 8}": 16, "{'data': 2, 'fsdp': 2, 'tensor': 2}": 12}
    for axes, (batch, *got) in json.loads(done.stdout.splitlines()[-1]).items():
        assert batch == sizes[axes]
        np.testing.assert_allclose(got[0], want[0], atol=1e-5)
        np.testing.assert_allclose(got[1], want[1], atol=1e-4)
        assert got[2] == want[2]


def test_a_subword_run_starts_documents_at_eos(bpe, lm):
    """With a tokenizer that has EOS the document start is that one token, as lm-eval's prefix
    token; rolling windows and an empty context agree."""
    cfg = dataclasses.replace(lm.cfg, vocab_size=512)
    sub = ScalingLM(init_params(cfg, 0), cfg, bpe, batch_size=8)
    assert sub.prefix.tolist() == [bpe.eos_id]
    [rolled] = sub.loglikelihood_rolling(_requests((TEXTS[2],)))  # 118 tokens: 2 windows
    assert rolled == pytest.approx(_window_reference(sub, TEXTS[2]), abs=1e-4)
    [(from_start, _)] = sub.loglikelihood(_requests(("", TEXTS[0])))
    assert sub.loglikelihood_rolling(_requests((TEXTS[0],)))[0] == pytest.approx(
        from_start, abs=1e-5
    )
