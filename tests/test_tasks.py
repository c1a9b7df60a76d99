import jax
import numpy as np
import pytest

from scaling import data
from scaling.config import EvalConfig, ModelConfig
from scaling.evaluate import (
    choice_correct,
    continuation_logprobs,
    evaluate,
    exact_match,
    generate,
)
from scaling.model import apply, init_params
from scaling.tasks import TASKS, Example, eval_examples, few_shot_prompt, training_example

M = ModelConfig(n_layer=2, d_model=32, n_head=2, d_ff=64, seq_len=64)


def test_every_task_declares_its_baseline_and_is_deterministic():
    for task in TASKS.values():
        a = eval_examples(task, 20, seed=5)
        assert a == eval_examples(task, 20, seed=5)
        assert a != eval_examples(task, 20, seed=6)
        assert len({ex.input for ex in a}) == 20
        expected = 1 / 4 if task.kind == "multiple_choice" else 0.0
        assert task.random_baseline == expected


def test_task_answers_are_right():
    rng = np.random.default_rng(0)
    ex = TASKS["add3"].sample(rng)
    a, b = ex.input.rstrip("=").split("+")
    assert int(ex.target) == int(a) + int(b) and len(a) == len(b) == 3
    ex = TASKS["reversed_words"].sample(rng)
    assert ex.input == f"reverse {ex.target[::-1]} = "
    ex = TASKS["cycle_letters"].sample(rng)
    scrambled = ex.input.split()[1]
    assert sorted(scrambled) == sorted(ex.target) and scrambled in ex.target * 2
    ex = TASKS["largest_of_4"].sample(rng)
    assert ex.target == max(ex.choices, key=int) and len(ex.choices) == 4


def test_test_items_never_reach_training_or_prompts():
    for task in TASKS.values():
        tests = {ex.input for ex in eval_examples(task, 30, seed=0)}
        rng = np.random.default_rng(1)
        assert not tests & {training_example(task, rng).input for _ in range(2000)}
        prompt = few_shot_prompt(task, eval_examples(task, 1, 0)[0], 3, rng)
        lines = prompt.split("\n")
        assert len(lines) == 4 and not tests & {line[: len(line) - 1] for line in lines[:3]}
    corpus = data.synthetic_text(300_000, 1.0, seed=0)
    assert not any(f"\n{ex.input}" in corpus for ex in eval_examples(TASKS["add3"], 50, 0))


def test_exact_match_and_choice_scoring_on_hand_made_cases():
    assert exact_match(" 95 ", "95") and not exact_match("951", "95")
    examples = [Example("q1", "b", ("a", "b")), Example("q2", "c", ("c", "d", "e"))]
    logprobs = np.array([-3.0, -1.0, -0.5, -0.1, -2.0])  # picks b (right), then d (wrong)
    np.testing.assert_array_equal(choice_correct(logprobs, examples), [1.0, 0.0])


@pytest.fixture(scope="module")
def params():
    return init_params(M, 0)


def test_continuation_logprob_matches_a_direct_computation(params):
    pairs = [("12+34=", "46\n"), ("max 1 2 3 4 = ", "4\n")]
    got = continuation_logprobs(params, M, pairs)
    forward = jax.jit(lambda p, x: apply(p, M, x))
    for (context, continuation), value in zip(pairs, got):
        tokens = data.encode(context + continuation).astype(np.int32)
        window = np.zeros((1, M.seq_len), np.int32)
        window[0, : len(tokens)] = tokens
        logp = jax.nn.log_softmax(forward(params, window)[0])
        n = len(context)
        want = sum(float(logp[i - 1, tokens[i]]) for i in range(n, len(tokens)))
        assert value == pytest.approx(want, abs=1e-4)


def test_batched_greedy_generation_matches_one_at_a_time(params):
    prompts = ["12+34=", "reverse olleh = ", "a"]
    batched = generate(params, M, prompts, max_new_tokens=5)
    forward = jax.jit(lambda p, x: apply(p, M, x))
    for prompt, out in zip(prompts, batched):
        tokens = list(data.encode(prompt))
        for _ in range(5):
            window = np.zeros((1, M.seq_len), np.int32)  # one shape: compiled once
            window[0, : len(tokens)] = tokens
            tokens.append(int(np.argmax(forward(params, window)[0, len(tokens) - 1])))
        assert out == data.decode(tokens[len(prompt) :]).split("\n")[0]


def test_evaluate_rows(params):
    rows = evaluate(params, M, EvalConfig(tasks=("add2", "largest_of_4"), shots=1, n_examples=10))
    assert [r["task"] for r in rows] == ["add2", "largest_of_4"]
    for r in rows:
        assert 0 <= r["value"] <= 1 and r["n_examples"] == 10
        assert r["stderr"] == pytest.approx(np.sqrt(r["value"] * (1 - r["value"]) / 10))
