"""Code evaluation: the problem file, pass@k, truncation, ranking and scoring in the sandbox."""

import json
from math import comb

import numpy as np
import pytest

from evaluation.code_eval import (
    ProblemScore,
    pass_at_k,
    pass_at_k_many,
    pick_by_mean_logprob,
    program,
    ranked_pass_rate,
    score_completions,
    truncate_completion,
)
from evaluation.problems import FIELDS, Problem, load_problems
from evaluation.tasks import TaskError


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
        with pytest.raises(TaskError, match="pass_at_k: needs"):
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
    with pytest.raises(TaskError, match="mean_logprobs"):
        ranked_pass_rate(scores, [[-1.0], [-1.0, -2.0]])
    with pytest.raises(TaskError, match="mean_logprobs"):
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
    assert (scores[0].n, scores[0].c) == (3, 1) and scores[0].statuses[2] == "failed"


# Wrong completions of add(a, b) that try to pass anyway. When the tests ran inside the program
# and a marker printed after them said they had passed, the marker read from main.py, the one
# printed at exit and both objects equal to anything passed.
MARKER = "re.findall(r\"print\\('(passed-[0-9a-f]+)'\\)\", open('main.py').read())"
CHEATS = {
    "prints a marker and exits 0": "    import os\n    print('passed', flush=True)\n"
    "    os._exit(0)\n",
    "prints the marker read from main.py": f"    import os, re\n    print(*{MARKER}, flush=True)\n"
    "    os._exit(0)\n",
    "exits 0 at exit, marker printed": "    return 0\nimport atexit, os, re\n"
    f"atexit.register(lambda: (print(*{MARKER}, flush=True), os._exit(0)))\n",
    "raises SystemExit(0) before the tests": "    return 0\nraise SystemExit(0)\n",
    "calls sys.exit(0) when called": "    import sys\n    sys.exit(0)\n",
    "replaces check and AssertionError": "    return 0\nimport builtins\n"
    "builtins.AssertionError = StopIteration\ncheck = lambda candidate: None\n",
    "returns an object equal to anything": "    class Yes:\n        def __eq__(self, other):\n"
    "            return True\n    return Yes()\n",
    "returns an int equal to anything": "    class Yes(int):\n        def __eq__(self, other):\n"
    "            return True\n    return Yes(0)\n",
}


def test_cheating_completions_do_not_pass(problems):
    add = problems[0]
    assert add.entry_point == "add"
    scores = score_completions([add], [[add.canonical_solution, *CHEATS.values()]])
    assert scores[0].passed == (True,) + (False,) * len(CHEATS), dict(
        zip(["canonical", *CHEATS], zip(scores[0].passed, scores[0].statuses))
    )


def _problem(test: str) -> Problem:
    prompt = 'def root(x):\n    """The square root of x; ValueError if x < 0."""\n'
    return Problem("root", prompt, "root", "    return x ** 0.5\n", test)


def test_answers_cross_as_literals_and_exceptions_by_builtin_name():
    expects_error = (
        "def check(candidate):\n    assert candidate(4) == 2.0\n    try:\n"
        "        candidate(-1)\n    except ValueError:\n        return\n    assert False\n"
    )
    completions = [
        "    print('debugging', x)\n    if x < 0:\n        raise ValueError(x)\n"
        "    return x ** 0.5\n",
        "    return x ** 0.5\n",  # a complex number for -1, not an exception
        "    if x < 0:\n        raise ArithmeticError(x)\n    return x ** 0.5\n",
    ]
    (score,) = score_completions([_problem(expects_error)], [completions])
    assert score.passed == (True, False, False), score


def test_tests_may_pass_only_literals_to_the_candidate():
    with pytest.raises(TaskError, match=r"root\.test: calls the candidate with .*not a Python"):
        score_completions([_problem("def check(candidate):\n    candidate(object())\n")], [["x"]])


def test_programs_put_the_completion_between_prompt_and_server(problems):
    p = problems[0]
    text = program(p, p.canonical_solution)
    assert text.startswith(p.prompt + p.canonical_solution)
    assert text.endswith(f"__serve({p.entry_point})\n") and p.test not in text
    with pytest.raises(TaskError, match="completions"):
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
        with pytest.raises(TaskError, match=message.replace(".", r"\.")):
            load_problems(_write(tmp_path, content))
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(TaskError, match="not valid JSON"):
        load_problems(tmp_path / "broken.json")
    with pytest.raises(TaskError, match="no such file"):
        load_problems(tmp_path / "absent.json")
