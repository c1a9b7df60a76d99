"""The task format (BIG-bench JSON), the built-in suite and prompt construction."""

import json

import numpy as np
import pytest

from evaluation.bigbench import from_bigbench, load_task_file, nshot_prompts, to_bigbench
from evaluation.task_suite import TASKS, resolve
from evaluation.tasks import (
    COT_ANSWER,
    MULTIPLE_CHOICE,
    TaskError,
    cot_answer,
    eval_examples,
    prompt,
    training_example,
)
from scaling import data

GENERATED = [t for t in TASKS.values() if t.sample is not None]


def test_every_generated_task_is_deterministic_and_declares_its_baseline():
    for task in GENERATED:
        a = eval_examples(task, 20, seed=5)
        assert a == eval_examples(task, 20, seed=5), task.name
        assert a != eval_examples(task, 20, seed=6), task.name
        assert len({ex.input for ex in a}) == 20
        if task.kind == MULTIPLE_CHOICE:
            want = np.mean([np.mean([s for _, s in ex.target_scores]) for ex in a])
            assert task.random_baseline == pytest.approx(want, abs=0.01)
        else:
            assert task.random_baseline == 0.0


def _value(expr: str) -> int:
    return int(eval(expr, {"__builtins__": {}}))  # the task's own arithmetic strings


def test_task_answers_are_right():
    rng = np.random.default_rng(0)
    for name in ("add5", "sub4", "mul2", "composite1"):
        for _ in range(20):
            ex = TASKS[name].sample(rng)
            assert _value(ex.input.rstrip("=")) == int(ex.answer), ex
    ex = TASKS["sub3"].sample(rng)
    assert all(len(s.lstrip("-")) == 3 for s in ex.input.rstrip("=").split("-") if s)
    for _ in range(20):
        word = TASKS["anagram1"].sample(rng)
        scrambled = word.input.split()[1]
        assert sorted(scrambled) == sorted(word.answer) and scrambled != word.answer
        assert scrambled[0] == word.answer[0] and scrambled[-1] == word.answer[-1]
        word = TASKS["anagram2"].sample(rng)
        scrambled = word.input.split()[1]
        assert scrambled[:2] == word.answer[:2] and scrambled[-2:] == word.answer[-2:]
        noisy = TASKS["random_insertion"].sample(rng)
        assert "".join(c for c in noisy.input[9:-3] if c.isalpha()) == noisy.answer
        walk = TASKS["navigate"].sample(rng)
        position, facing = 0, 1
        for move in walk.input.split()[1:-2]:
            facing, position = (
                (-facing, position) if move == "u" else (facing, position + facing * int(move))
            )
        assert walk.answer == str(position == 0)
        assert walk.rationale.split()[-1].rstrip(".") == str(position)
        concat = TASKS["last_letter_concat"].sample(rng)
        words = concat.input.split()[2:4]
        assert concat.answer == words[0][-1] + words[1][-1]
        ws = TASKS["word_sorting"].sample(rng)
        assert ws.answer.split() == sorted(ws.input.split()[1:4])
    largest = TASKS["largest_of_4"].sample(rng)
    assert largest.answer == str(max(int(c) for c in largest.choices))


def test_test_items_never_reach_training_or_exemplars():
    for task in GENERATED:
        tests = {ex.input for ex in eval_examples(task, 30, seed=0)}
        rng = np.random.default_rng(1)
        assert not tests & {training_example(task, rng).input for _ in range(500)}, task.name
        text = prompt(task, eval_examples(task, 1, 0)[0], 3, rng, instruction=False)
        lines = text.split("\n")
        assert len(lines) == 4 and not any(line.startswith(tuple(tests)) for line in lines[:3])
    corpus = data.synthetic_text(300_000, 1.0, seed=0)
    assert not any(f"\n{ex.input}" in corpus for ex in eval_examples(TASKS["add3"], 50, 0))


def test_bigbench_prompt_format_worked_example():
    task = from_bigbench(
        {
            "task_prefix": "Answer the question.\n",
            "metrics": ["multiple_choice_grade"],
            "examples": [
                {"input": "2+2?", "target_scores": {"4": 1, "5": 0, "3": 0, "6": 0}},
                {"input": "1+2?", "target_scores": {"3": 1, "4": 0, "5": 0, "6": 0}},
            ],
        },
        "toy",
    )
    # BIG-bench shows choices sorted, then permuted by RandomState(42): 3 4 5 6 -> 4 6 3 5;
    # its one query of two is the second example (RandomState(42).permutation(2) = [1, 0])
    choices = "\n  choice: 4\n  choice: 6\n  choice: 3\n  choice: 5\nA: "
    assert nshot_prompts(task, 1, 1, seed=42) == [
        f"Answer the question.\n\nQ: 2+2?{choices}4\n\nQ: 1+2?{choices}"
    ]
    assert task.random_baseline == 0.25 and task.kind == MULTIPLE_CHOICE
    assert nshot_prompts(task, 2, 0, seed=42, instruction=False) == [
        f"\nQ: 2+2?{choices}",
        f"\nQ: 1+2?{choices}",
    ]


def test_chain_of_thought_exemplars_and_answer_extraction():
    task = TASKS["last_letter_concat"]
    query = eval_examples(task, 1, 0)[0]
    text = prompt(task, query, 2, np.random.default_rng(0), instruction=False, cot=True)
    demo = text.split("\n")[0]
    assert " ends in " in demo and COT_ANSWER in demo and text.endswith(query.input)
    assert cot_answer("apple ends in e, river ends in r. So the answer is er") == "er"
    assert cot_answer("no answer here") == ""
    with pytest.raises(TaskError, match="has no rationales"):
        prompt(TASKS["add2"], query, 1, np.random.default_rng(0), cot=True)


def test_builtin_tasks_export_to_bigbench_json_and_load_back(tmp_path):
    for name in ("add3", "navigate", "last_letter_concat"):
        spec = to_bigbench(TASKS[name], 10, seed=3)
        path = tmp_path / name / "task.json"
        path.parent.mkdir()
        path.write_text(json.dumps(spec))
        loaded = resolve(str(path.parent))
        assert loaded.kind == TASKS[name].kind and loaded.examples == tuple(
            eval_examples(TASKS[name], 10, 3)
        )
        query = loaded.examples[0]
        assert prompt(loaded, query, 0, np.random.default_rng(0)) == prompt(
            TASKS[name], query, 0, np.random.default_rng(0)
        )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"examples": []}, "examples: missing or empty"),
        ({"name": "t"}, "examples: missing or empty"),
        ({"examples": [{"target": "a"}]}, "examples[0].input: missing"),
        ({"examples": [{"input": "q"}]}, "examples[0].target: missing"),
        (
            {"examples": [{"input": "q", "target_scores": {"a": 0, "b": 0}}]},
            "examples[0].target_scores: no choice scores above another",
        ),
        (
            {
                "metrics": ["exact_str_match", "multiple_choice_grade"],
                "examples": [{"input": "q", "target": "a"}],
            },
            "examples[0].target_scores: missing: multiple-choice metrics score it",
        ),
        (
            {"metrics": ["accuracy"], "examples": [{"input": "q", "target": "a"}]},
            "not a BIG-bench metric",
        ),
        (
            {"append_choices_to_input": "yes", "examples": [{"input": "q", "target": "a"}]},
            "append_choices_to_input: 'yes' is not a JSON boolean",
        ),
        (
            {"output_regex": "(a)(b)", "examples": [{"input": "q", "target": "a"}]},
            "output_regex: has 2 groups",
        ),
    ],
)
def test_malformed_task_files_name_the_task_example_and_field(spec, message):
    with pytest.raises(TaskError) as e:
        from_bigbench(spec, "mytask")
    assert "task mytask" in str(e.value) and message in str(e.value) and "fix:" in str(e.value)


def test_bad_task_paths_and_json(tmp_path):
    with pytest.raises(TaskError, match="no task.json"):
        resolve(str(tmp_path / "nothing" / "task.json"))
    bad = tmp_path / "task.json"
    bad.write_text("{oops")
    with pytest.raises(TaskError, match="not valid JSON"):
        load_task_file(bad)
    with pytest.raises(TaskError, match="unknown task 'add9'"):
        resolve("add9")


def test_more_shots_than_other_examples_is_an_error():
    task = from_bigbench({"examples": [{"input": f"q{i}", "target": "a"} for i in range(3)]}, "t")
    assert len(nshot_prompts(task, 1, 2, seed=0)[0].split("\nQ: ")) == 4
    with pytest.raises(TaskError, match="3 distinct examples, too few for 3 shots"):
        nshot_prompts(task, 1, 3, seed=0)
