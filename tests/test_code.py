"""Code evaluation: the problem file, pass@k, truncation, ranking and scoring in the sandbox."""

import json
from math import comb

import numpy as np
import pytest

from scaling.code_eval import (
    FIELDS,
    ProblemScore,
    load_problems,
    pass_at_k,
    pass_at_k_many,
    pick_by_mean_logprob,
    program,
    ranked_pass_rate,
    score_completions,
    truncate_completion,
)
from scaling.config import ConfigError


@pytest.fixture(scope="module")
def problems():
    return load_problems()


@pytest.mark.parametrize(
    "n, c, k",
    [(1, 0, 1), (1, 1, 1), (5, 0, 3), (5, 5, 3), (5, 2, 5), (10, 3, 1), (10, 3, 5),
     (10, 7, 4), (200, 13, 10), (200, 13, 100)],
)  # fmt: skip
def test_pass_at_k_matches_the_closed_form(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k), abs=1e-12)


def test_pass_at_k_edge_cases_and_many_problems():
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)  # pass@1 is the share of correct samples
    assert pass_at_k(4, 4, 4) == 1.0 and pass_at_k(4, 0, 4) == 0.0
    many = pass_at_k_many(10, [0, 3, 10], 5)
    np.testing.assert_allclose(many, [pass_at_k(10, c, 5) for c in (0, 3, 10)])
    np.testing.assert_allclose(pass_at_k_many([3, 20], [1, 1], 2), [2 / 3, 0.1])
    for bad in [(3, 1, 4), (3, 4, 1), (3, -1, 1), (3, 1, 0)]:
        with pytest.raises(ConfigError, match="pass_at_k: needs"):
            pass_at_k(*bad)


def test_truncation_cuts_at_the_end_of_the_function_body():
    body = "    x = 1\n    # a comment inside\n    if x:\n        return x\n"
    assert truncate_completion(body) == body
    assert truncate_completion(body + "\ndef other():\n    pass") == body
    assert truncate_completion(body + "\nprint(f(1))\nclass A: pass") == body
    assert truncate_completion(body + '\nif __name__ == "__main__":\n    f()') == body
    assert truncate_completion(body + "\n# tests\n") == body
    assert truncate_completion("") == ""


def test_ranking_picks_the_highest_mean_logprob():
    assert pick_by_mean_logprob([-2.0, -0.5, -1.0]) == 1
    assert pick_by_mean_logprob([-1.0, -1.0]) == 0  # ties: the first sample
    assert pick_by_mean_logprob([float("nan"), -3.0]) == 1
    scores = [
        ProblemScore("a", (False, True, False), ("failed", "ok", "failed")),
        ProblemScore("b", (True, False), ("ok", "timeout")),
    ]
    assert ranked_pass_rate(scores, [[-3.0, -0.1, -2.0], [-5.0, -1.0]]) == 0.5
    with pytest.raises(ConfigError, match="mean_logprobs"):
        ranked_pass_rate(scores, [[-1.0], [-1.0, -2.0]])
    with pytest.raises(ConfigError, match="mean_logprobs"):
        pick_by_mean_logprob([])


def test_the_problem_file_is_well_formed(problems):
    assert 20 <= len(problems) <= 30
    assert len({p.task_id for p in problems}) == len(problems)
    for p in problems:
        assert p.prompt.rstrip().endswith('"""') and ">>>" in p.prompt
        assert p.test.count("assert") >= 4


def test_canonical_solutions_pass_and_wrong_ones_fail(problems):
    """Verifies the problem file: each canonical solution passes its own test and an empty body
    fails it; a program that leaves early with status 0 does not pass either."""
    early_exit = "    raise SystemExit(0)\n"
    completions = [[p.canonical_solution, "    pass\n"] for p in problems]
    completions[0].append(early_exit)
    scores = score_completions(problems, completions)
    for problem, score in zip(problems, scores):
        assert score.task_id == problem.task_id and score.passed[:2] == (True, False), score
        assert score.statuses[:2] == ("ok", "failed")
    assert (scores[0].n, scores[0].c) == (3, 1) and scores[0].statuses[2] == "ok"


def test_programs_put_the_completion_between_prompt_and_test(problems):
    p = problems[0]
    text = program(p, p.canonical_solution, "done")
    assert text.startswith(p.prompt + p.canonical_solution)
    assert text.endswith(f"check({p.entry_point})\nprint('done')\n")
    with pytest.raises(ConfigError, match="completions"):
        score_completions(problems, [])


def _write(tmp_path, problems):
    path = tmp_path / "problems.json"
    path.write_text(json.dumps(problems))
    return path


def test_malformed_problem_files_name_the_problem_and_field(problems, tmp_path):
    good = {f: getattr(problems[0], f) for f in FIELDS}
    cases = {
        "x.prompt: missing": [{**good, "task_id": "x", "prompt": ""}],
        "x.entry_point: 'a b' is not": [{**good, "task_id": "x", "entry_point": "a b"}],
        "x.prompt: does not define nope": [{**good, "task_id": "x", "entry_point": "nope"}],
        "x.test: does not define check": [{**good, "task_id": "x", "test": "pass"}],
        "x.tests: unknown field": [{**good, "task_id": "x", "tests": ""}],
        "problem #1.task_id: missing": [good, {k: v for k, v in good.items() if k != "task_id"}],
        f"{good['task_id']}.task_id: appears twice": [good, good],
        "not a non-empty list": [],
    }
    for message, content in cases.items():
        with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
            load_problems(_write(tmp_path, content))
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_problems(tmp_path / "broken.json")
    with pytest.raises(ConfigError, match="no such file"):
        load_problems(tmp_path / "absent.json")
