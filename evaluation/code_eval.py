"""Code evaluation in the manner of Codex (Chen et al. 2021): write a function, pass its tests.

A problem is a prompt (imports, signature, docstring with examples), the name of the function
(`entry_point`), a canonical solution and a test defining `check(candidate)`. From n samples per
problem, c of them correct, pass@k is the unbiased estimator 1 - C(n-c, k)/C(n, k); pick-1
ranking keeps the sample of highest mean token log-probability, which needs no tests at
generation time.

Who judges. Whatever runs in the completion's interpreter, the completion controls: it can read
the program's source (and any marker in it), print, exit with status 0 before the tests run,
replace `check`, `AssertionError` or builtins, and return an object whose __eq__ always says
True. So no part of the verdict is reached there. The sandbox (evaluation.sandbox) runs prompt +
completion followed by a small server that calls the entry point with the arguments it reads
from stdin and writes back repr() of each result, or the name of the exception raised, to a
descriptor of its own. The test is the problem file's code, which we trust; it runs here, in a
fresh namespace per completion, with a stand-in `candidate` that sends each call to the program
and rebuilds the answer with ast.literal_eval. Every value the test compares is therefore a plain
int, str, list, ... made by the harness: an object cannot cross, and an answer that is not a
literal fails. A completion passes when check() returns and the program then ends cleanly.
Only return values cross: a test that inspects arguments the function mutated cannot be judged
this way, and one that passes a value that is not a literal (nan, inf, an object) is refused.
"""

from __future__ import annotations

import ast
import builtins
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from types import CodeType
from typing import BinaryIO

import numpy as np

from evaluation.problems import Problem
from evaluation.sandbox import TALK_FD, Limits, run_many
from evaluation.tasks import TaskError

# Codex's stop sequences: a new top-level statement ends the function body.
STOP_SEQUENCES = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
CODE_LIMITS = Limits(timeout_s=3.0)  # the 3 s per program of Chen et al.
ANSWER_BYTES = 1 << 20  # the longest answer read from a program
# The end of every program: serve calls of the entry point until the judge closes stdin.
SERVER = f"""

def __serve(function):
    import os
    answers = os.fdopen({TALK_FD}, "w", encoding="utf-8")
    for line in os.fdopen(0, encoding="utf-8"):
        args, kwargs = eval(line, {{}})  # the judge's repr() of literals
        try:
            answer = "=" + repr(function(*args, **kwargs))
        except Exception as error:
            answer = "!" + type(error).__name__
        answers.write(answer.replace("\\n", " ") + "\\n")
        answers.flush()

"""


@dataclass(frozen=True)
class ProblemScore:
    """The samples of one problem: which passed, and how each program ended."""

    task_id: str
    passed: tuple[bool, ...]
    statuses: tuple[str, ...]  # evaluation.sandbox.STATUSES; "failed" also when a test failed

    @property
    def n(self) -> int:
        return len(self.passed)

    @property
    def c(self) -> int:
        return sum(self.passed)


def program(problem: Problem, completion: str) -> str:
    """The program that runs one completion: it answers the judge's calls of the entry point."""
    return f"{problem.prompt}{completion}\n{SERVER}\n__serve({problem.entry_point})\n"


class CandidateError(Exception):
    """The candidate raised an exception that is not a built-in one, or gave no literal answer."""


@dataclass
class Judge:
    """Runs check() of one problem on one sandboxed completion (a evaluation.sandbox talk)."""

    problem: Problem
    test: CodeType  # the problem's test, compiled
    passed: bool = False

    def __call__(self, to_program: BinaryIO, answers: BinaryIO) -> None:
        namespace = {"__name__": "code_eval_test"}
        exec(self.test, namespace)
        candidate = functools.partial(_call, self.problem.task_id, to_program, answers)
        try:
            namespace["check"](candidate)
        except TaskError:
            raise
        except Exception:  # a failed assertion, an exception of the candidate, no answer
            return
        self.passed = True


def _call(task_id: str, to_program: BinaryIO, answers: BinaryIO, *args, **kwargs):
    """One call of the candidate: its answer, made here from text, or its exception."""
    request = repr((args, kwargs))
    try:
        literal = ast.literal_eval(request) == (args, kwargs)
    except (ValueError, SyntaxError):
        literal = False
    if not literal:
        raise TaskError(
            f"{task_id}.test",
            f"calls the candidate with {request[:80]}, which is not a Python literal",
            "pass only None, booleans, numbers, strings, bytes and containers of them",
        )
    to_program.write(request.encode("utf-8") + b"\n")
    to_program.flush()
    line = answers.readline(ANSWER_BYTES)
    kind = line[:1] if line.endswith(b"\n") else b""  # none when cut short or at the end
    text = line[1:-1].decode("utf-8", "replace")
    if kind == b"=":
        try:
            return ast.literal_eval(text)
        except Exception:  # not a literal, or too deep or large to parse
            raise CandidateError(f"an answer that is not a literal: {text[:80]}") from None
    error = getattr(builtins, text, None) if kind == b"!" else None
    if isinstance(error, type) and issubclass(error, Exception):
        raise error.__new__(error)  # some (UnicodeError) need arguments to __init__ we lack
    raise CandidateError(f"raised {text[:80]}" if kind == b"!" else "no answer")


def truncate_completion(completion: str, stops: Sequence[str] = STOP_SEQUENCES) -> str:
    """The completion up to its first stop sequence: the end of the function body."""
    cuts = [i for i in (completion.find(s) for s in stops) if i >= 0]
    return completion[: min(cuts)] if cuts else completion


def score_completions(
    problems: Sequence[Problem],
    completions: Sequence[Sequence[str]],
    *,
    limits: Limits = CODE_LIMITS,
    workers: int | None = None,
) -> list[ProblemScore]:
    """Run every completion of every problem (completions[i] belongs to problems[i], already
    truncated) in the sandbox, `workers` at a time, and say which passed."""
    if len(completions) != len(problems):
        raise TaskError(
            "completions",
            f"{len(completions)} lists of completions for {len(problems)} problems",
            "give one list of completions per problem, in the order of the problems",
        )
    tests = [compile(p.test, f"{p.task_id} test", "exec") for p in problems]
    judges = [Judge(p, t) for p, t, cs in zip(problems, tests, completions) for _ in cs]
    programs = [program(p, c) for p, cs in zip(problems, completions) for c in cs]
    results = run_many(programs, limits, workers=workers, talks=judges)
    verdicts = iter(zip(results, judges))
    scores = []
    for problem, samples in zip(problems, completions):
        mine = [next(verdicts) for _ in samples]
        passed = tuple(r.passed and judge.passed for r, judge in mine)
        statuses = tuple(
            "failed" if r.passed and not ok else r.status for (r, _), ok in zip(mine, passed)
        )
        scores.append(ProblemScore(problem.task_id, passed, statuses))
    return scores


def pass_at_k(n: int, c: int, k: int) -> float:
    """Chen et al.'s unbiased pass@k from n samples of which c pass, as the stable product
    1 - prod_{i=n-c+1}^{n} (1 - k/i), which equals 1 - C(n-c, k)/C(n, k)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise TaskError(
            "pass_at_k",
            f"needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}",
            "draw at least k samples per problem",
        )
    if n - c < k:  # every draw of k samples contains a correct one
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def pass_at_k_many(n: Sequence[int] | int, c: Sequence[int], k: int) -> np.ndarray:
    """pass@k of several problems (n: one number of samples for all, or one per problem)."""
    ns = np.broadcast_to(np.asarray(n), np.shape(c))
    return np.array([pass_at_k(int(a), int(b), k) for a, b in zip(ns, c)])


def pick_by_mean_logprob(mean_logprobs: Sequence[float]) -> int:
    """Index of the sample Codex would submit: the highest mean token log-probability (ties:
    the first; NaN counts as the lowest)."""
    scores = np.asarray(mean_logprobs, float)
    if scores.ndim != 1 or not len(scores):
        raise TaskError(
            "mean_logprobs", f"shape {scores.shape} is not a non-empty list", "give one per sample"
        )
    return int(np.argmax(np.where(np.isnan(scores), -np.inf, scores)))


def ranked_passes(
    scores: Sequence[ProblemScore], mean_logprobs: Sequence[Sequence[float]]
) -> list[bool]:
    """Per problem: does its top-ranked sample (highest mean log-probability) pass?"""
    if (
        not scores
        or len(mean_logprobs) != len(scores)
        or any(len(lp) != s.n for lp, s in zip(mean_logprobs, scores))
    ):
        raise TaskError(
            "mean_logprobs",
            "does not match the samples scored (or nothing was scored)",
            "give one list per scored problem, one value per sample",
        )
    return [s.passed[pick_by_mean_logprob(lp)] for s, lp in zip(scores, mean_logprobs)]


def ranked_pass_rate(
    scores: Sequence[ProblemScore], mean_logprobs: Sequence[Sequence[float]]
) -> float:
    """Share of problems whose top-ranked sample passes: pass@1 when one sample is picked
    from n by mean log-probability rather than at random."""
    return float(np.mean(ranked_passes(scores, mean_logprobs)))
