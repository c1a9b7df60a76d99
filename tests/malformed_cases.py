"""The table of malformed inputs test_malformed_inputs.py runs through the CLI, one `Case` per
input: run configs, sweep files, fit and score tables, lm-eval and BIG-bench JSON, task.json
files, data files, command-line overrides, and the paths and flags of the commands.

The cases are generated: each file kind gets the corruptions any file can have (empty, binary
garbage, not UTF-8, a directory, missing, not a regular file) and its own (truncated, the wrong
top-level type, each field of the wrong type, non-finite, negative or huge numbers, an unknown
key). Every case is invalid: a valid one would train, fit or classify.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import yaml

from scaling.config import DataConfig, EvalConfig, MeshConfig, ModelConfig, TrainConfig

DIR, SOCKET = "<directory>", "<socket>"  # file contents that make a directory / a unix socket
GARBAGE = bytes(range(256)) * 8
NOT_UTF8 = "café: \xff\xfe\n".encode("latin-1")


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    files: dict  # relative path -> str | bytes | DIR | SOCKET (absent: the path does not exist)


def dump(tree) -> str:
    return yaml.safe_dump(tree, sort_keys=False)


def generic(name: str, argv: tuple[str, ...], companions: dict, kind: str) -> list[Case]:
    """The corruptions any input file can have, at path `name` of a command."""
    return [
        Case(f"{kind}-empty", argv, {**companions, name: ""}),
        Case(f"{kind}-garbage", argv, {**companions, name: GARBAGE}),
        Case(f"{kind}-not-utf8", argv, {**companions, name: NOT_UTF8}),
        Case(f"{kind}-directory", argv, {**companions, name: DIR}),
        Case(f"{kind}-missing", argv, companions),
        Case(f"{kind}-socket", argv, {**companions, name: SOCKET}),
    ]


# ------------------------------------------------------------------------------ run configs

TINY_MODEL = {"n_layer": 1, "d_model": 32, "n_head": 2, "d_ff": 64, "seq_len": 64}
QUICK_EVAL = {"tasks": ["add2"], "shots": [0], "n_examples": 5}
RUN = {
    "model": TINY_MODEL,
    "data": {"synthetic_chars": 20_000},
    "train": {"tokens": 8 * 64 * 4, "batch_size": 8},
    "eval": QUICK_EVAL,
}
SECTIONS = {
    "model": ModelConfig,
    "data": DataConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
    "mesh": MeshConfig,
}
WRONG_TYPE = {int: "many", float: "fast", str: {"a": 1}, bool: 3}


def with_field(path: str, value) -> dict:
    tree = json.loads(json.dumps(RUN))
    section, key = path.split(".")
    tree.setdefault(section, {})[key] = value
    return tree


def field_cases() -> list[Case]:
    """Per field of every section: the wrong type; for numbers also negative, and non-finite
    (floats) or too large (integers)."""
    cases = []
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            path = f"{section}.{f.name}"
            hint = {"int": int, "float": float, "str": str, "bool": bool}.get(f.type, tuple)
            wrong = WRONG_TYPE.get(hint, {"a": 1})
            values = {"type": wrong}
            item = f.type.removeprefix("tuple[").split(",")[0] if hint is tuple else f.type
            if item in ("int", "float"):
                values["negative"] = -2 if hint is not tuple else [-2]
                if item == "float":
                    values["non-finite"] = float("nan") if hint is not tuple else [float("inf")]
                else:
                    values["huge"] = 1e300 if hint is not tuple else [1e300]
            for what, value in values.items():
                files = {"cfg.yaml": dump(with_field(path, value))}
                cases.append(Case(f"config-{path}-{what}", ("train", "cfg.yaml"), files))
    return cases


def config_cases() -> list[Case]:
    train = ("train", "cfg.yaml")
    cases = generic("cfg.yaml", train, {}, "config")
    cases += generic("cfg.yaml", ("config", "show", "cfg.yaml"), {}, "config-show")
    bad_yaml = {
        "truncated": "model: {d_model: 64\n",
        "list": "- model\n- train\n",
        "scalar": "42\n",
        "tab-indent": "train:\n\ttokens: 5\n",
        "section-scalar": "train: fast\n",
        "section-list": "model: [1, 2]\n",
        "unknown-section": dump({**RUN, "optimiser": {"lr": 1}}),
        "unknown-rung": dump({**RUN, "model": "s99"}),
        "unknown-key": dump({**RUN, "train": {**RUN["train"], "tokenz": 5}}),
        "name-dict": dump({**RUN, "name": {"a": 1}}),
        "dtype": dump(with_field("model.dtype", "float8")),
        "schedule": dump(with_field("train.schedule", "linear")),
        "head-divides": dump(with_field("model.n_head", 5)),
        "seq-too-long": dump(with_field("model.seq_len", 100_000)),
        "task-unknown": dump(with_field("eval.tasks", ["add9"])),
    }
    cases += [Case(f"config-{k}", train, {"cfg.yaml": v}) for k, v in bad_yaml.items()]
    cases += field_cases()
    overrides = ["train.tokens=abc", "model.d_model.x=1", "=3", "train.tokens=[1", "train=5"]
    files = {"cfg.yaml": dump(RUN)}
    cases += [Case(f"override-{o}", (*train, o), files) for o in overrides]
    return cases


# --------------------------------------------------------------------------------- sweeps

SWEEP = {"name": "fuzz", "base": RUN, "grid": {"train.seed": [0, 1]}}
FINETUNE = {"parents": "runs/zoo", "task": "add2", "examples": [4, 8]}  # runs/zoo: absent


def sweep_cases() -> list[Case]:
    argv = ("sweep", "sweep.yaml")
    cases = generic("sweep.yaml", argv, {}, "sweep")
    cases += generic("sweep.yaml", ("plan", "sweep.yaml"), {}, "plan")
    cases += [Case("status-garbage", ("status", "sweep.yaml"), {"sweep.yaml": GARBAGE})]
    variants = {
        "truncated": "name: fuzz\nbase: {model: {d_model: 64}\n",
        "list": "- name\n- base\n",
        "base-list": dump({**SWEEP, "base": [RUN]}),
        "base-string": dump({**SWEEP, "base": "s3"}),
        "name-missing": dump({k: v for k, v in SWEEP.items() if k != "name"}),
        "name-int": dump({**SWEEP, "name": 123}),
        "name-slash": dump({**SWEEP, "name": "a/b"}),
        "grid-list": dump({**SWEEP, "grid": [1, 2]}),
        "grid-scalar-values": dump({**SWEEP, "grid": {"train.seed": 5}}),
        "grid-empty": dump({**SWEEP, "grid": {}}),
        "grid-unknown-field": dump({**SWEEP, "grid": {"train.tokenz": [1, 2]}}),
        "grid-bad-rung": dump({**SWEEP, "grid": {"model": ["s99"]}}),
        "grid-bad-value": dump({**SWEEP, "grid": {"train.tokens": ["many"]}}),
        "grid-path-into-scalar": dump({**SWEEP, "grid": {"train.tokens.x": [1]}}),
        "zip-unequal": dump({**SWEEP, "zip": {"train.seed": [0, 1], "train.tokens": [1]}}),
        "isoflop-strings": dump({**SWEEP, "isoflop": {"budgets": ["big"], "sizes": 2}}),
        "isoflop-negative": dump({**SWEEP, "isoflop": {"budgets": [-1e12], "sizes": 2}}),
        "isoflop-inf": dump({**SWEEP, "isoflop": {"budgets": [float("inf")], "sizes": 2}}),
        "isoflop-sizes-0": dump({**SWEEP, "isoflop": {"budgets": [1e12], "sizes": 0}}),
        "isoflop-list": dump({**SWEEP, "isoflop": [1e12]}),
        "lr-rule-string": dump({**SWEEP, "lr_rule": "mup"}),
        "cooldown-list": dump({**SWEEP, "cooldown": [0.2]}),
        "cooldown-fraction": dump({**SWEEP, "cooldown": {"decay_fraction": "most"}}),
        "launch-list": dump({**SWEEP, "launch": ["local"]}),
        "launch-unknown": dump({**SWEEP, "launch": {"workerz": 2}}),
        "launch-workers": dump({**SWEEP, "launch": {"workers": -1}}),
        "unknown-key": dump({**SWEEP, "grids": {}}),
        "too-many-runs": dump({**SWEEP, "grid": {"train.seed": list(range(300))}}),
        "tokens-per-param-string": dump({**SWEEP, "grid": {"tokens_per_param": ["x"]}}),
        "finetune-list": dump({"name": "ft", "finetune": [1]}),
        "finetune-unknown-key": dump({"name": "ft", "finetune": {**FINETUNE, "seeds": [0]}}),
        "finetune-no-examples": dump({"name": "ft", "finetune": {"parents": "runs/x"}}),
        "finetune-no-parents-there": dump({"name": "ft", "finetune": FINETUNE}),
        "finetune-with-grid": dump({**SWEEP, "finetune": FINETUNE}),
        "finetune-empty-axis": dump({"name": "ft", "finetune": {**FINETUNE, "seed": []}}),
    }
    cases += [Case(f"sweep-{k}", argv, {"sweep.yaml": v}) for k, v in variants.items()]
    return cases


# ---------------------------------------------------------------------------- fit tables

FIT_HEADER = "N,D,loss\n"
FIT_ROWS = [
    (n, d, 2.0 + 100 / n**0.3 + 100 / d**0.3) for n in (1e6, 3e6, 1e7) for d in (1e8, 3e8, 1e9)
]


def fit_table(replace: dict | None = None, header: str = FIT_HEADER) -> str:
    """The fit table, with cells (row, column index) replaced by text."""
    rows = [[repr(v) for v in row] for row in FIT_ROWS]
    for (i, j), text in (replace or {}).items():
        rows[i][j] = text
    return header + "".join(",".join(r) + "\n" for r in rows)


def fit_cases() -> list[Case]:
    argv = ("fit", "chinchilla", "runs.csv", "--n", "N", "--d", "D", "--n-boot", "0")
    argv += ("--out", "out")
    cases = generic("runs.csv", argv, {}, "fit-csv")
    tables = {
        "header-only": FIT_HEADER,
        "no-header": fit_table(header=""),
        "n-text": fit_table({(0, 0): "abc"}),
        "n-huge": fit_table({(0, 0): "1e300"}),
        "n-overflow": fit_table({(0, 0): "1e400"}),
        "n-inf": fit_table({(0, 0): "inf"}),
        "n-zero": fit_table({(0, 0): "0"}),
        "loss-negative": fit_table({(0, 2): "-1"}),
        "loss-nan": fit_table({(1, 2): "nan"}),
        "d-text": fit_table({(2, 1): "many"}),
        "ragged": fit_table() + "1,2,3,4,5\n",
        "quote": fit_table() + '"1e6,1e8,3\n',
        "missing-column": fit_table(header="N,tokens,loss\n"),
        "one-size": "N,D,loss\n"
        + "".join(f"1e6,{d},{3 - i / 10}\n" for i, d in enumerate([1e8, 2e8, 3e8, 4e8, 5e8, 6e8])),
        "semicolons": fit_table().replace(",", ";"),
    }
    cases += [Case(f"fit-{k}", argv, {"runs.csv": v}) for k, v in tables.items()]
    other = ("fit", "isoflop", "runs.txt", "--n", "N", "--out", "out")
    cases.append(Case("fit-suffix", other, {"runs.txt": fit_table()}))
    sweep_dir = ("fit", "chinchilla", "runs_dir", "--out", "out")
    cases.append(Case("fit-empty-sweep-dir", sweep_dir, {"runs_dir": DIR}))
    return cases


# -------------------------------------------------------------------------- score inputs

SCORES_CSV = "model,task,metric,value,shots,params\n" + "".join(
    f"m{i},add,acc,{v},0,{p}\n" for i, (v, p) in enumerate([(0.1, 1e6), (0.2, 1e7), (0.6, 1e8)])
)
LM_EVAL = {
    "results": {"arc": {"acc,none": 0.5, "acc_stderr,none": 0.01}},
    "config": {"model_args": "pretrained=org/m1", "num_fewshot": 0},
}
BIGBENCH = {
    "model": {"model_family": "BIG-G", "model_name": "2m", "total_params": 2e6},
    "scores": [
        {
            "subtask_description": "arith",
            "score_dict": {"multiple_choice_grade": 0.4},
            "preferred_score": "multiple_choice_grade",
            "low_score": 0.25,
            "high_score": 1.0,
            "number_of_shots": 0,
        }
    ],
}


def emergence(*inputs: str, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    return ("emergence", *inputs, "--out", "out", "--x", "params", "--n-boot", "10", *extra)


def changed(tree: dict, path: str, value) -> str:
    """JSON of `tree` with the dotted `path` set to value (a list index is a number)."""
    tree = json.loads(json.dumps(tree))
    *parents, leaf = path.split(".")
    node = tree
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[int(leaf) if isinstance(node, list) else leaf] = value
    return json.dumps(tree)


def score_cases() -> list[Case]:
    cases = generic("scores.csv", emergence("scores.csv"), {}, "scores-csv")
    cases += generic("lm.json", emergence("lm.json"), {}, "lm-eval")
    csvs = {
        "header-only": SCORES_CSV.splitlines()[0] + "\n",
        "value-text": SCORES_CSV.replace("0.2,", "high,"),
        "missing-column": SCORES_CSV.replace("metric", "measure"),
        "ragged": SCORES_CSV + "m9,add,acc,0.1,0,1e9,extra,cells\n",
        "params-under-another-name": SCORES_CSV.replace(",params\n", ",n_params\n", 1),
    }
    cases += [
        Case(f"scores-{k}", emergence("scores.csv"), {"scores.csv": v}) for k, v in csvs.items()
    ]
    lm = {
        "truncated": json.dumps(LM_EVAL)[:30],
        "list": "[1, 2]",
        "string": '"results"',
        "results-list": changed(LM_EVAL, "results", [1, 2]),
        "results-task-list": changed(LM_EVAL, "results.arc", [0.5]),
        "results-empty": changed(LM_EVAL, "results", {}),
        "config-string": changed(LM_EVAL, "config", "pretrained=x"),
        "n-shot-list": json.dumps({**LM_EVAL, "n-shot": [0]}),
        "configs-list": json.dumps({**LM_EVAL, "configs": ["arc"]}),
        "group-subtasks-list": json.dumps({**LM_EVAL, "group_subtasks": ["arc"]}),
        "n-samples-number": json.dumps({**LM_EVAL, "n-samples": 5}),
        "higher-is-better-list": json.dumps({**LM_EVAL, "higher_is_better": [True]}),
        "num-fewshot-text": changed(LM_EVAL, "config.num_fewshot", "few"),
        "group-cycle": json.dumps({**LM_EVAL, "group_subtasks": {"arc": ["x"], "x": ["arc"]}}),
        "n-samples-task-list": json.dumps({**LM_EVAL, "n-samples": {"arc": [5]}}),
    }
    cases += [Case(f"lm-eval-{k}", emergence("lm.json"), {"lm.json": v}) for k, v in lm.items()]
    bb = {
        "list": "[]",
        "model-list": changed(BIGBENCH, "model", ["BIG-G"]),
        "scores-dict": changed(BIGBENCH, "scores", {"a": 1}),
        "scores-entry-list": changed(BIGBENCH, "scores.0", [1]),
        "score-dict-missing": json.dumps(
            {**BIGBENCH, "scores": [{"subtask_description": "arith", "number_of_shots": 0}]}
        ),
        "score-dict-list": changed(BIGBENCH, "scores.0.score_dict", [0.4]),
        "score-text": changed(BIGBENCH, "scores.0.score_dict.multiple_choice_grade", "high"),
        "high-score-text": changed(BIGBENCH, "scores.0.high_score", "top"),
        "low-score-missing": json.dumps(
            {
                **BIGBENCH,
                "scores": [{k: v for k, v in BIGBENCH["scores"][0].items() if k != "low_score"}],
            }
        ),
        "params-text": changed(BIGBENCH, "model.total_params", "two million"),
        "task-list": json.dumps({**BIGBENCH, "task": ["arith"]}),
    }
    cases += [Case(f"bigbench-{k}", emergence("bb.json"), {"bb.json": v}) for k, v in bb.items()]
    good = {"scores.csv": SCORES_CSV}
    for flag in ("--models", "--task-info"):
        argv = emergence("scores.csv", extra=(flag, "side.csv"))
        cases += generic("side.csv", argv, good, f"emergence{flag}")[:4]
    sides = {
        "models-params-text": ("--models", "model,params\nm0,big\n"),
        "models-no-model-column": ("--models", "name,params\nm0,1e6\n"),
        "task-info-baseline-text": ("--task-info", "task,random_baseline\nadd,low\n"),
        "task-info-choices-text": ("--task-info", "task,n_choices\nadd,four\n"),
    }
    for name, (flag, table) in sides.items():
        argv = emergence("scores.csv", extra=(flag, "side.csv"))
        cases.append(Case(f"emergence-{name}", argv, {**good, "side.csv": table}))
    return cases


# ---------------------------------------------------------------------------- task files

TASK = {
    "name": "fuzz_task",
    "metrics": ["exact_str_match"],
    "examples": [{"input": f"{i}+1", "target": str(i + 1)} for i in range(5)],
}
MC_TASK = {
    "name": "fuzz_mc",
    "examples": [{"input": f"{i}?", "target_scores": {"yes": 1, "no": 0}} for i in range(5)],
}


def task_cases() -> list[Case]:
    run = {"cfg.yaml": dump(with_field("eval.tasks", ["task.json"]))}
    argv = ("train", "cfg.yaml")
    cases = generic("task.json", argv, run, "task")
    tasks = {
        "truncated": json.dumps(TASK)[:40],
        "list": "[]",
        "examples-dict": changed(TASK, "examples", {"a": 1}),
        "examples-empty": changed(TASK, "examples", []),
        "example-string": changed(TASK, "examples.0", "1+1"),
        "input-number": changed(TASK, "examples.0.input", 3),
        "target-number": changed(TASK, "examples.0.target", 2),
        "target-list-of-numbers": changed(TASK, "examples.0.target", [2]),
        "metrics-string": changed(TASK, "metrics", "exact_str_match"),
        "metrics-dict": changed(TASK, "metrics", {"a": 1}),
        "metrics-mixed": changed(TASK, "metrics", ["exact_str_match", "multiple_choice_grade"]),
        "random-baseline-text": json.dumps({**TASK, "random_baseline": "low"}),
        "random-baseline-nan": json.dumps({**TASK, "random_baseline": float("nan")}),
        "prefix-number": json.dumps({**TASK, "task_prefix": 3}),
        "append-choices-text": json.dumps({**TASK, "append_choices_to_input": "yes"}),
        "rationale-dict": changed(
            TASK, "examples.0", {"input": "1", "target": "2", "rationale": {}}
        ),
        "name-dict": json.dumps({**TASK, "name": {"a": 1}}),
        "preferred-score-list": json.dumps({**TASK, "preferred_score": ["x"]}),
        "mc-scores-list": changed(MC_TASK, "examples.0.target_scores", [1, 0]),
        "mc-scores-text": changed(MC_TASK, "examples.0.target_scores", {"yes": "1", "no": "0"}),
        "mc-scores-nan": changed(MC_TASK, "examples.0.target_scores.yes", float("nan")),
        "mc-one-choice-wrong": changed(MC_TASK, "examples.0.target_scores", {"yes": 0}),
    }
    cases += [Case(f"task-{k}", argv, {**run, "task.json": v}) for k, v in tasks.items()]
    cases.append(Case("task-dir-without-json", argv, {**run, "task.json": DIR}))
    return cases


# ---------------------------------------------------------------------------- data files


def data_cases() -> list[Case]:
    cases = []
    for name in ("corpus.txt", "corpus.jsonl"):
        run = {"cfg.yaml": dump({**RUN, "data": {"corpus": "files", "paths": [name]}})}
        cases += generic(name, ("train", "cfg.yaml"), run, f"data-{name}")
    tree = {**RUN, "data": {"corpus": "files", "paths": ["corpus.jsonl"]}}
    run, argv = {"cfg.yaml": dump(tree)}, ("train", "cfg.yaml")
    good = json.dumps({"text": "word " * 4000})
    lines = {
        "bad-json": good + "\n{text: oops\n",
        "list-line": good + "\n[1, 2]\n",
        "string-line": good + '\n"just text"\n',
        "number-line": good + "\n42\n",
        "no-field": good + '\n{"body": "x"}\n',
        "field-null": good + '\n{"text": null}\n',
        "field-dict": good + '\n{"text": {"a": 1}}\n',
    }
    cases += [Case(f"data-jsonl-{k}", argv, {**run, "corpus.jsonl": v}) for k, v in lines.items()]
    return cases


def command_cases() -> list[Case]:
    """Paths and flags of the commands that read a sweep's directory, and run limits."""
    sweep, run = {"s.yaml": dump(SWEEP)}, {"cfg.yaml": dump(RUN)}
    wide = {"cfg.yaml": dump({**RUN, "model": {**TINY_MODEL, "d_model": 2**20, "n_head": 4}})}
    long = {"cfg.yaml": dump(with_field("train.tokens", 1e18))}
    return [
        Case("status-missing", ("status", "missing.yaml"), {}),
        Case("status-socket", ("status", "s.yaml"), {"s.yaml": SOCKET}),
        Case("report-missing", ("report", "nodir"), {}),
        Case("report-no-runs", ("report", "d"), {"d": DIR}),
        Case(
            "eval-task-garbage", ("eval", "d", "--tasks", "t.json"), {"d": DIR, "t.json": GARBAGE}
        ),
        Case("plan-flops-negative", ("plan", "s.yaml", "--flops-per-s", "-1"), sweep),
        Case("plan-flops-nan", ("plan", "s.yaml", "--flops-per-s", "nan"), sweep),
        Case("train-flops-inf", ("train", "cfg.yaml", "--flops-per-s", "inf"), run),
        Case("train-too-long", ("train", "cfg.yaml"), long),
        Case("train-too-wide", ("train", "cfg.yaml", "--yes"), wide),
        Case(
            "train-eval-items-exhausted",
            ("train", "cfg.yaml"),
            {"cfg.yaml": dump(with_field("eval.n_examples", 10**6))},
        ),
    ]


CASES = (
    config_cases()
    + sweep_cases()
    + fit_cases()
    + score_cases()
    + task_cases()
    + data_cases()
    + command_cases()
)
