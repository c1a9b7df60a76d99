"""Few-shot task registry: GPT-3's synthetic tasks, a copying task and a multiple-choice task.

A task draws examples from a numpy Generator, so a task's examples are a pure function of a seed.
Every task declares its random baseline: the expected score of a model that guesses
(1/number of choices for multiple choice; 0 for exact-match generation, as the DESIGN conventions
state). The same line format is used for the training corpus's demonstrations and for k-shot
prompts, so few-shot prompting asks the model to continue a familiar pattern:

    57+38=95            (add2)       GPT-3 (Brown et al. 2020), section 3.9.1
    cycle lohel = hello (cycle_letters) GPT-3 section 3.9.2, "cycle letters in word"
    reverse olleh = hello (reversed_words) GPT-3 section 3.9.2, "reversed words"
    copy xqzvb = xqzvb  (copy_letters)  in-context copying, which needs an induction head
                                        (Olsson et al. 2022): a two-layer circuit
    max 12 97 40 3 = 97 (largest_of_4)  multiple choice by log-likelihood, 4 choices
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from scaling.config import ConfigError

# Common English words (4-8 letters) for word tasks and the synthetic prose.
WORDS = tuple(
    """
    about above after again along always animal answer apple around asked began being below
    better between bird black board body book bread bring brother brown build built called
    carry cause center change children circle city class clean clear close cloud color
    common count country cover cross dance dark daughter death deep different dinner doctor
    door double dream dress drink drive early earth east eight enough even evening every
    example face family farm father field figure final finger fire first fish floor flower
    follow food force forest form found four free friend front fruit full game garden girl
    glass gold good grass great green ground group grow half hand happy hard head hear heart
    heavy help high hill history hold home horse hour house hundred idea inside island keep
    kind king kitchen know land large last late laugh learn leave letter light line list
    listen little live long look machine make many mark market master matter measure middle
    might mind minute money month moon morning mother mountain move music name nature near
    never night north note number ocean office often open order other paper party people
    person picture piece place plain plan plant play point power press problem pull question
    quick quiet rain reach read ready real record remember rest river road rock room round
    rule said school science score season second sentence seven shape ship short show side
    simple since sister size sleep small snow sound south space speak special spring square
    stand start station stay step still stone story street strong study summer table teacher
    thing think three time today together town travel tree true turn under unit until usual
    valley voice walk warm watch water weather week weight west wheel while white whole wind
    window winter woman wonder wood word work world write yellow young
    """.split()  # noqa: SIM905 - a word list reads best as text
)


@dataclass(frozen=True)
class Example:
    """One task item. For multiple choice, `choices` holds the candidates and `target` is one."""

    input: str
    target: str
    choices: tuple[str, ...] = ()

    def line(self) -> str:
        """The demonstration line: input, answer, newline (newline ends generation)."""
        return f"{self.input}{self.target}\n"


@dataclass(frozen=True)
class Task:
    name: str
    kind: str  # "generate" (exact match by greedy decoding) | "multiple_choice"
    sample: Callable[[np.random.Generator], Example]
    random_baseline: float
    max_new_tokens: int
    description: str
    test_share: float = 0.1  # share of the item space reserved for testing

    def is_test_item(self, ex: Example) -> bool:
        """Test items never appear in the training corpus or as few-shot demonstrations, so a
        score measures generalisation, not recall of a memorised line."""
        return _stable_hash(ex.input) % 1000 < 1000 * self.test_share

    @property
    def metric(self) -> str:
        return "exact_match" if self.kind == "generate" else "acc"


def _addition(digits: int) -> Callable[[np.random.Generator], Example]:
    def sample(rng: np.random.Generator) -> Example:
        lo, hi = 10 ** (digits - 1), 10**digits
        a, b = (int(v) for v in rng.integers(lo, hi, size=2))
        return Example(f"{a}+{b}=", str(a + b))

    return sample


def _cycle_letters(rng: np.random.Generator) -> Example:
    word = WORDS[rng.integers(len(WORDS))]
    shift = int(rng.integers(1, len(word)))
    return Example(f"cycle {word[shift:] + word[:shift]} = ", word)


def _reversed_words(rng: np.random.Generator) -> Example:
    word = WORDS[rng.integers(len(WORDS))]
    return Example(f"reverse {word[::-1]} = ", word)


def _copy_letters(rng: np.random.Generator) -> Example:
    letters = "".join(chr(97 + i) for i in rng.integers(26, size=5))
    return Example(f"copy {letters} = ", letters)


def _largest_of_4(rng: np.random.Generator) -> Example:
    numbers = [str(v) for v in rng.choice(100, size=4, replace=False)]
    return Example(f"max {' '.join(numbers)} = ", max(numbers, key=int), tuple(numbers))


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("add2", "generate", _addition(2), 0.0, 4, "2-digit addition (GPT-3)"),
        Task("add3", "generate", _addition(3), 0.0, 5, "3-digit addition (GPT-3)"),
        Task(
            "cycle_letters",
            "generate",
            _cycle_letters,
            0.0,
            9,
            "undo a cyclic shift of a word's letters (GPT-3 word unscrambling)",
        ),
        Task(
            "reversed_words",
            "generate",
            _reversed_words,
            0.0,
            9,
            "spell a reversed word forwards (GPT-3 word unscrambling)",
            test_share=0.4,
        ),
        Task(
            "copy_letters",
            "generate",
            _copy_letters,
            0.0,
            6,
            "repeat a random 5-letter string: in-context copying (induction heads)",
        ),
        Task(
            "largest_of_4",
            "multiple_choice",
            _largest_of_4,
            0.25,
            0,
            "pick the largest of four numbers (multiple choice by log-likelihood)",
        ),
    )
}


def training_example(task: Task, rng: np.random.Generator) -> Example:
    """An item from the training part of the item space (never a test item)."""
    while True:
        ex = task.sample(rng)
        if not task.is_test_item(ex):
            return ex


def eval_examples(task: Task, n: int, seed: int) -> list[Example]:
    """n distinct test items of `task`, a pure function of (task, n, seed)."""
    rng = np.random.default_rng([seed, _stable_hash(task.name)])
    seen, items = set(), []
    for _ in range(500 * n):
        ex = task.sample(rng)
        if task.is_test_item(ex) and ex.input not in seen:
            seen.add(ex.input)
            items.append(ex)
            if len(items) == n:
                return items
    raise ConfigError(
        "eval.n_examples",
        f"task {task.name} has fewer than {n} test items",
        "lower eval.n_examples",
    )


def few_shot_prompt(task: Task, example: Example, shots: int, rng: np.random.Generator) -> str:
    """k demonstration lines from the training items (so never a test item), then the test input."""
    demos = [training_example(task, rng).line() for _ in range(shots)]
    return "".join(demos) + example.input


def _stable_hash(text: str) -> int:
    """A process-independent hash (Python's hash() is salted per process)."""
    return zlib.crc32(text.encode())
