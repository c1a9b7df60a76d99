"""Rebuild models.csv and downstream.csv from a checkout of github.com/mlfoundations/scaling.

    python tests/data/gadre2024/build.py PATH/TO/scaling

Reads exp_data/models/*.json (one file per run: hyperparameters and the loss on 8 held-out
sets), exp_data/evals/evaluation_<run>_heavy.json (top-1 accuracy on 46 downstream tasks) and
exp_data/eval_metadata.csv (random baseline of each task) and writes the two CSVs beside this
script. The numbers are copied as published; the only derived columns are M, flops and the
task-averaged errors (README.md).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Gadre et al. 2024 (App. / scaling/constants.py of their repository): the 17 tasks on which
# their small models are above chance, averaged for the downstream-error law ("17-task split").
SUBSET17 = (
    "bigbench_operators", "pubmed_qa_labeled", "hellaswag_zeroshot", "boolq", "arc_easy",
    "coqa", "bigbench_dyck_languages", "lambada_openai", "bigbench_novel_concepts", "winograd",
    "bigbench_cs_algorithms", "commonsense_qa", "bigbench_qa_wikidata", "hellaswag", "copa",
    "squad", "piqa",
)  # fmt: skip


def eval_set(val_path: str) -> str:
    """Column suffix of a loss evaluation: the folder of its shard ('c4_val', 'paloma_ptb'),
    or the file stem for the German split, with '-' as '_'."""
    parts = val_path.split("/")
    name = parts[-1].split(".")[0] if "de-en" in val_path else parts[-2]
    return name.replace("-", "_")


def model_row(doc: dict) -> dict:
    hp = doc["hyperparameters"]
    n, d = int(hp["params"]), int(hp["tokens"])
    row = {
        "name": doc["name"],
        "dataset": doc["dataset_name"],
        "model": Path(hp["model"]).stem,
        "params": n,
        "params_no_embed": int(hp["params_no_embed"]),
        "tokens": d,
        "chinchilla_multiplier": hp["chinchilla_multiplier"],
        "M": d / n,
        "flops": 6.0 * n * d,  # the paper's convention, C = 6 N D
    }
    for result in doc["results"]:
        row[f"loss_{eval_set(result['val_data'][0])}"] = result["loss"]
    return row


def read_baselines(path: Path) -> dict[str, float]:
    """Task -> random-guess accuracy (the metadata gives percent)."""
    with path.open(newline="") as f:
        return {r["Eval Task"]: float(r["Random baseline"]) / 100 for r in csv.DictReader(f)}


def add_errors(row: dict, accuracy: dict[str, float]) -> None:
    """Mean top-1 error over all tasks and over the 17-task subset (the paper's averages)."""
    errors = {task: 1.0 - acc for task, acc in accuracy.items()}
    row["err_avg46"] = sum(errors.values()) / len(errors)
    row["err_avg17"] = sum(errors[t] for t in SUBSET17) / len(SUBSET17)


def build(checkout: Path) -> tuple[list[dict], list[dict]]:
    data = checkout / "exp_data"
    baselines = read_baselines(data / "eval_metadata.csv")
    models, downstream = [], []
    for path in sorted((data / "models").glob("*.json")):
        row = model_row(json.loads(path.read_text()))
        evals = json.loads((data / "evals" / f"evaluation_{path.stem}_heavy.json").read_text())
        accuracy = evals["eval_metrics"]["icl"]
        add_errors(row, accuracy)
        models.append(row)
        keep = {k: row[k] for k in ("name", "dataset", "params", "flops")}
        downstream += [
            {**keep, "loss_c4_val": row["loss_c4_val"], "task": task, "accuracy": acc,
             "error": 1.0 - acc, "random_baseline": baselines[task],
             "in_subset17": task in SUBSET17}
            for task, acc in accuracy.items()
        ]  # fmt: skip
    models.sort(key=lambda r: (r["dataset"], r["flops"]))
    return models, downstream


def write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkout", type=Path, help="a clone of github.com/mlfoundations/scaling")
    p.add_argument("--out", type=Path, default=HERE, help="output folder (default: here)")
    args = p.parse_args()
    models, downstream = build(args.checkout)
    write_csv(args.out / "models.csv", models)
    write_csv(args.out / "downstream.csv", downstream)
    print(f"{len(models)} runs, {len(downstream)} task results -> {args.out}")


if __name__ == "__main__":
    main()
