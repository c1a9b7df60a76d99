"""Real BIG-bench tasks (tests/data/bigbench, from the bigbench==1.0.0 sdist) run as BIG-bench
runs them: prompts equal to those its own JsonTask renders (expected_prompts.json, recorded from
bigbench 1.0.0 itself; see the README there), parents expanded into named subtasks, duplicates
dropped, its output rules and metrics."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import sacrebleu

from evaluation.bigbench import from_bigbench, nshot_prompts, postprocess
from evaluation.evaluate import evaluate, generation_budget
from evaluation.metrics import (
    bleu,
    macro_f1,
    macro_f1_row,
    numeric_match,
    rouge,
    sequence_f1,
)
from evaluation.task_suite import expand, resolve
from evaluation.tasks import GENERATE, MIXED, MULTIPLE_CHOICE, TaskError
from scaling.config import ConfigError, EvalConfig, ModelConfig
from scaling.model import init_params
from scaling.tokenizer import ByteTokenizer

DATA = Path(__file__).parent / "data" / "bigbench"
EXPECTED = json.loads((DATA / "expected_prompts.json").read_text())


@pytest.mark.parametrize("leaf", sorted(EXPECTED["tasks"]))
def test_prompts_equal_bigbench_s_own_rendering(leaf):
    """Mixed metrics (arithmetic), subtasks, choice order ('false' appends them), duplicates
    (operators) and a bleu/rouge task, at three (shots, n_examples, seed)."""
    task, want = resolve(str(DATA / leaf)), EXPECTED["tasks"][leaf]
    assert len(task.examples) == want["distinct_examples"]
    if task.generates:  # the rules BIG-bench hands the model with the prompts
        assert [task.stop_string, task.output_regex] == want["rules"]
    for shots, n, seed in EXPECTED["settings"]:
        rendered = want[f"{shots},{n},{seed}"]
        ours = nshot_prompts(task, n, shots, seed)
        assert task.scores_choices == (rendered["multiple_choice"] is not None)
        assert task.generates == (rendered["generate"] is not None)
        for prompts in (rendered["multiple_choice"], rendered["generate"]):
            assert prompts in (None, ours), (leaf, shots, n, seed)


def test_choices_in_bigbench_s_order_by_hand():
    # The file lists the right answer last; BIG-bench sorts the four choices and permutes them
    # by RandomState(42).permutation(4) = [1, 3, 0, 2]: the right answer comes first.
    task = resolve(str(DATA / "identify_odd_metaphor"))
    assert task.append_choices_to_input  # the file says "false", a string BIG-bench takes as true
    assert nshot_prompts(task, 47, 0, seed=42)[0] == (
        "\nQ: Which of the following sentences relating to argument does not use metaphorical "
        "language that could also be applied to war?"
        "\n  choice: He criticized the weak points of her argument."
        "\n  choice: Your claims are indefensible."
        "\n  choice: He attacked every weak point in my argument."
        "\n  choice: Her criticisms were right on target."
        "\nA: "
    )


def test_a_parent_task_is_its_subtasks_named_after_it(tmp_path):
    parent = DATA / "simple_arithmetic_json_subtasks"
    subtasks = expand(str(parent))
    names = [resolve(t).name for t in subtasks]
    want = [n.replace(":", "/") for n in EXPECTED["subtasks"]["simple_arithmetic_json_subtasks"]]
    assert names == want  # BIG-bench's order, with the parent in the name
    assert resolve(str(parent / "one_digit" / "task.json")).name == names[0]
    with pytest.raises(TaskError, match="is a parent task: its 3 subtasks"):
        resolve(str(parent))
    EvalConfig(tasks=(str(parent), "add2")).validate()
    # two parents with a subtask of the same name: two tasks, not one
    for family in ("logical_deduction", "tracking_shuffled_objects"):
        (tmp_path / family / "three_objects").mkdir(parents=True)
        (tmp_path / family / "task.json").write_text(json.dumps({"name": family}))
        leaf = {"name": "three_objects", "examples": [{"input": "q", "target": "a"}]}
        (tmp_path / family / "three_objects" / "task.json").write_text(json.dumps(leaf))
    both = [
        t
        for f in ("logical_deduction", "tracking_shuffled_objects")
        for t in expand(str(tmp_path / f))
    ]
    assert {resolve(t).name for t in both} == {
        "logical_deduction/three_objects",
        "tracking_shuffled_objects/three_objects",
    }
    EvalConfig(tasks=tuple(both)).validate()
    with pytest.raises(ConfigError, match="are both task 'logical_deduction/three_objects'"):
        EvalConfig(tasks=(both[0], str(Path(both[0]) / "task.json"))).validate()
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "task.json").write_text(json.dumps({"name": "empty"}))
    with pytest.raises(
        TaskError, match="examples: missing or empty; fix: give a list of examples, or subtask"
    ):
        resolve(str(tmp_path / "empty"))


def test_duplicates_dropped_and_answers_read_by_the_task_s_rules():
    operators = resolve(str(DATA / "operators"))
    raw = json.loads((DATA / "operators" / "task.json").read_text())["examples"]
    assert len(raw) == 211 and len(operators.examples) == 210
    # stop_string "\n" then output_regex "([-+]?\d+)[.]{0,1}$" (its one group is the answer)
    assert postprocess("42.\n7", operators) == "42"
    assert postprocess("\n42", operators) == "42"  # a stop at the very start is no stop
    assert postprocess("7 or 42", operators) == "42"  # the regex's $: the last number
    arithmetic = resolve(str(DATA / "arithmetic" / "1_digit_division"))
    assert postprocess(" 3 is the answer", arithmetic) == "3"  # output_regex [-+]?\d+
    holuan = resolve(str(DATA / "conlang_translation" / "holuan_to"))
    assert postprocess("Le bi.\nNext", holuan) == "Le bi"  # BIG-bench's default regex
    assert postprocess("?!", holuan) == ""


def test_generation_budget_is_the_longest_target_after_a_space():
    task = resolve(str(DATA / "conlang_translation" / "holuan_to"))
    longest = max(len(t.encode()) for ex in task.examples for t in ex.target)
    assert generation_budget(ByteTokenizer(), task) == longest + 1


M = ModelConfig(n_layer=1, d_model=32, n_head=2, d_ff=64, seq_len=1024)


@pytest.fixture(scope="module")
def params():
    return init_params(M, 0)


def _rows(params, task: str, shots: int) -> dict:
    """evaluate()'s rows by metric, each with a value, stderr and count; no metric twice."""
    ecfg = EvalConfig(tasks=(task,), shots=(shots,), n_examples=4, seed=42)
    rows = evaluate(params, M, ecfg, ByteTokenizer())
    for r in rows:
        assert np.isfinite(r["value"]) and np.isfinite(r["stderr"]) and r["n_examples"] == 4
    assert len({r["metric"] for r in rows}) == len(rows)
    return {r["metric"]: r for r in rows}


def test_a_mixed_metric_task_is_scored_both_ways(params):
    task = resolve(str(DATA / "arithmetic" / "1_digit_division"))
    assert task.kind == MIXED and task.name == "arithmetic/1_digit_division"
    rows = _rows(params, str(DATA / "arithmetic"), shots=1)  # the parent: its one subtask here
    assert {r["task"] for r in rows.values()} == {"arithmetic/1_digit_division"}
    assert set(rows) == {
        "acc",
        "acc_norm",
        "brier_score",
        "logprob",
        "multiple_choice_grade",
        "exact_str_match",
        "token_edit_distance",
    }
    assert rows["multiple_choice_grade"]["value"] == rows["acc"]["value"]  # 0/1 scores
    assert rows["multiple_choice_grade"]["random_baseline"] == task.random_baseline < 0.2
    assert rows["exact_str_match"]["random_baseline"] == 0


def test_a_bleu_rouge_task_gets_bigbench_s_metrics_and_bleurt_a_warning(params, tmp_path):
    rows = _rows(params, str(DATA / "conlang_translation" / "holuan_to"), shots=0)
    assert set(rows) == {
        "exact_str_match",
        "bleu",
        "rouge1",
        "rouge2",
        "rougeLsum",
        "token_edit_distance",
        "logprob",
    }
    spec = json.loads((DATA / "conlang_translation" / "holuan_to" / "task.json").read_text())
    (tmp_path / "task.json").write_text(json.dumps({**spec, "metrics": ["bleu", "bleurt"]}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = _rows(params, str(tmp_path / "task.json"), shots=0)
    assert set(rows) == {"bleu", "token_edit_distance", "logprob"}
    assert [str(w.message) for w in caught] == [
        "task holuan_to: not scored: bleurt (it needs the BLEURT-20 TensorFlow checkpoint)"
    ]


def test_bleu_and_rouge_follow_bigbench_s_recipe():
    responses = ["the cat sat on the mat", "a dog barked", ""]
    targets = [("the cat sat on the mat",), ("the dog barked", "a dog barked loudly"), ("x",)]
    value, stderr = bleu(responses, targets)
    # t5.evaluation.metrics.bleu's call, on BIG-bench's padded reference streams
    streams = [[t[0] for t in targets], [t[-1] for t in targets]]
    want = sacrebleu.corpus_bleu(
        responses,
        streams,
        smooth_method="exp",
        smooth_value=0.0,
        force=False,
        lowercase=False,
        tokenize="intl",
        use_effective_order=False,
    ).score
    assert value == pytest.approx(want) and stderr > 0
    scores = rouge(["the cat sat", "a b"], [("the cat ran", "dog"), ("a b",)])
    assert scores["rouge1"] == pytest.approx([200 / 3, 100])  # best reference: 2 of 3 words
    assert scores["rouge2"] == pytest.approx([50, 100])
    assert scores["rougeLsum"] == pytest.approx([200 / 3, 100])


def test_numeric_sequence_and_macro_f1_by_hand():
    assert numeric_match("10.9", ("10",)) == 1.0 and numeric_match("11.1", ("10",)) == 0.0
    assert numeric_match("0.05", ("0",)) == 1.0 and numeric_match("ten", ("10",)) == 0.0
    assert numeric_match("5", ("-10",)) == 0.0  # BIG-bench's division by t would match this
    assert sequence_f1("B-PER O", ("B-PER O O I-LOC",)) == 75.0  # padded with O: 3 of 4
    # a: tp 1, fn 1 -> 2/3; b: tp 1, fp 1 -> 2/3; c: fp... none; mean 2/3
    assert macro_f1(["a", "a", "b"], ["a", "b", "b"]) == pytest.approx(2 / 3)
    row = macro_f1_row(["a", "a", "b", "c"], ["a", "b", "b", "c"])  # (2/3 + 2/3 + 1) / 3
    assert row["value"] == pytest.approx(7 / 9) and row["stderr"] > 0 and row["n_examples"] == 4


def test_bigbench_s_schema_refusals_are_true_ones():
    def load(**spec):
        return from_bigbench({"examples": [{"input": "q", "target": "a"}], **spec}, "t")

    assert load(metrics=["bleu", "rouge"]).kind == GENERATE
    with pytest.raises(TaskError, match="takes one target per example"):
        from_bigbench(
            {
                "metrics": ["numeric_match_with_0_1_relative_error"],
                "examples": [{"input": "q", "target": ["1", "2"]}],
            },
            "t",
        )
    with pytest.raises(TaskError, match="macro_f1 needs one choice scored 1"):
        from_bigbench(
            {
                "metrics": ["macro_f1"],
                "examples": [{"input": "q", "target_scores": {"a": 0.5, "b": 0.5, "c": 0}}],
            },
            "t",
        )
    # one choice with a score above zero, and a target outside the choices: BIG-bench runs both
    one = from_bigbench({"examples": [{"input": "q", "target_scores": {"a": 1}}]}, "t")
    assert one.kind == MULTIPLE_CHOICE
    apart = {"input": "q", "target": "a long answer", "target_scores": {"yes": 1, "no": 0}}
    both = load(metrics=["bleu", "multiple_choice_grade"], examples=[apart])
    assert both.kind == MIXED and both.examples[0].answer == "a long answer"
