"""The built-in task suite: GPT-3's synthetic tasks, BIG-bench-style tasks, chain-of-thought
tasks, multiple choice and Python function writing, each item drawn from a seeded generator.

Every task is a `evaluation.tasks.Task` (BIG-bench JSON fields) and exports to task.json. Items
are compact lines, the format of the training corpus's demonstrations:

    57+38=95                         add2..add5      GPT-3 (Brown et al. 2020) §3.9.1
    57-98=-41                        sub2..sub5      GPT-3 §3.9.1 (results may be negative)
    24*17=408                        mul2            GPT-3 §3.9.1, 2-digit multiplication
    (3+4)*2=14                       composite1      GPT-3 §3.9.1, one-digit composite (1DC)
    cycle lohel = hello              cycle_letters   GPT-3 §3.9.2, cycle letters in word (CL)
    anagram1 hlelo = hello           anagram1        GPT-3 §3.9.2, all but first and last letter
    anagram2 hetmor = mother         anagram2        GPT-3 §3.9.2, all but first and last two
    uninsert h.e!l l/o = hello       random_insertion GPT-3 §3.9.2, random insertion (RI)
    reverse olleh = hello            reversed_words  GPT-3 §3.9.2, reversed words (RW)
    sort river apple = apple river   word_sorting    BIG-bench word_sorting
    walk 3 u 3 home? = True          navigate        BIG-bench navigate (multiple choice)
    last letters apple river = er    last_letter_concat   Wei et al. 2022 (chain of thought)
    copy xqzvb = xqzvb               copy_letters    in-context copying (induction heads)
    max 12 97 40 3 = 97              largest_of_4    multiple choice, 4 choices
    python_functions                 HumanEval-style problems with unit tests (pass@k)

Chain-of-thought tasks carry a rationale per item: "(3+4)*2=" → "3+4=7, 7*2=14. So the answer
is 14". The instruction (task_prefix) is one line; the training corpus starts some task
documents with it, so instructed prompts are in-distribution too.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from pathlib import Path

import numpy as np

from evaluation import problems
from evaluation.bigbench import load_task_file, subtask_files
from evaluation.tasks import (
    CODE,
    GENERATE,
    MULTIPLE_CHOICE,
    Example,
    Task,
    TaskError,
)

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
LINE_FORMAT = {  # built-in items are single lines: no Q:/A: prefixes, newline-terminated
    "example_input_prefix": "",
    "example_output_prefix": "",
    "few_shot_example_separator": "\n",
    "append_choices_to_input": False,
    "answer_suffix": "\n",
}
INSERTED = " .,!?;:/-"
WORD_ANSWER = max(map(len, WORDS)) + 1  # a word and its newline


def _word(rng: np.random.Generator) -> str:
    return WORDS[rng.integers(len(WORDS))]


def _binary(digits: int, op: str) -> Callable[[np.random.Generator], Example]:
    def sample(rng: np.random.Generator) -> Example:
        a, b = (int(v) for v in rng.integers(10 ** (digits - 1), 10**digits, size=2))
        value = {"+": a + b, "-": a - b, "*": a * b}[op]
        return Example(f"{a}{op}{b}=", (str(value),))

    return sample


def _apply(a: int, op: str, b: int) -> int:
    return {"+": a + b, "-": a - b, "*": a * b}[op]


def _composite(rng: np.random.Generator) -> Example:
    a, b, c = (int(v) for v in rng.integers(0, 10, size=3))
    op1, op2 = (str(o) for o in rng.choice(list("+-*"), size=2))
    inner = _apply(a, op1, b)
    value = _apply(inner, op2, c)
    rationale = f"{a}{op1}{b}={inner}, {inner}{op2}{c}={value}."
    return Example(f"({a}{op1}{b}){op2}{c}=", (str(value),), rationale=rationale)


def _scrambled(rng: np.random.Generator, keep: int) -> Example | None:
    """A word with all but its first and last `keep` letters shuffled (GPT-3's A1 and A2)."""
    word = _word(rng)
    middle = list(word[keep:-keep])
    for _ in range(10):
        rng.shuffle(middle)
        scrambled = word[:keep] + "".join(middle) + word[-keep:]
        if scrambled != word:
            return Example(f"anagram{keep} {scrambled} = ", (word,))
    return None


def _anagram(keep: int) -> Callable[[np.random.Generator], Example]:
    def sample(rng: np.random.Generator) -> Example:
        while (ex := _scrambled(rng, keep)) is None:
            pass
        return ex

    return sample


def _cycle_letters(rng: np.random.Generator) -> Example:
    word = _word(rng)
    shift = int(rng.integers(1, len(word)))
    return Example(f"cycle {word[shift:] + word[:shift]} = ", (word,))


def _random_insertion(rng: np.random.Generator) -> Example:
    word = _word(rng)
    marks = rng.choice(list(INSERTED), size=len(word) - 1)
    noisy = "".join(c + m for c, m in zip(word, marks)) + word[-1]
    return Example(f"uninsert {noisy} = ", (word,))


def _reversed_words(rng: np.random.Generator) -> Example:
    word = _word(rng)
    return Example(f"reverse {word[::-1]} = ", (word,))


def _word_sorting(rng: np.random.Generator) -> Example:
    words = [WORDS[i] for i in rng.choice(len(WORDS), size=3, replace=False)]
    return Example(f"sort {' '.join(words)} = ", (" ".join(sorted(words)),))


def _navigate(rng: np.random.Generator) -> Example:
    """A walk along a line, in BIG-bench navigate's spirit: a number is that many steps ahead,
    `u` turns around; does it end where it started? Half of the walks get a last move that
    returns, so chance is 1/2. The rationale lists the position after each move."""
    position, facing, moves, trace = 0, 1, [], []
    for _ in range(int(rng.integers(2, 5))):
        if moves and rng.random() < 0.35:
            facing, move = -facing, "u"
        else:
            steps = int(rng.integers(1, 10))
            position, move = position + facing * steps, str(steps)
        moves.append(move)
        trace.append(str(position))
    if rng.random() < 0.5 and position != 0:
        if position * facing > 0:
            facing = -facing
            moves.append("u")
            trace.append(str(position))
        moves.append(str(abs(position)))
        position = 0
        trace.append("0")
    back = position == 0
    return Example(
        f"walk {' '.join(moves)} home? = ",
        target_scores=(("True", float(back)), ("False", float(not back))),
        rationale=f"positions {' '.join(trace)}.",
    )


def _last_letter_concat(rng: np.random.Generator) -> Example:
    words = [WORDS[i] for i in rng.choice(len(WORDS), size=2, replace=False)]
    rationale = ", ".join(f"{w} ends in {w[-1]}" for w in words) + "."
    answer = "".join(w[-1] for w in words)
    return Example(f"last letters {' '.join(words)} = ", (answer,), rationale=rationale)


def _copy_letters(rng: np.random.Generator) -> Example:
    letters = "".join(string.ascii_lowercase[i] for i in rng.integers(26, size=5))
    return Example(f"copy {letters} = ", (letters,))


def _largest_of_4(rng: np.random.Generator) -> Example:
    numbers = [int(v) for v in rng.choice(100, size=4, replace=False)]
    best = max(numbers)
    return Example(
        f"max {' '.join(map(str, numbers))} = ",
        target_scores=tuple((str(v), float(v == best)) for v in numbers),
    )


def _generated(
    name: str,
    sample: Callable,
    description: str,
    instruction: str,
    max_new_tokens: int = 12,
    kind: str = GENERATE,
    random_baseline: float = 0.0,
    test_share: float = 0.1,
) -> Task:
    metric = "multiple_choice_grade" if kind == MULTIPLE_CHOICE else "exact_str_match"
    return Task(
        name=name,
        description=description,
        metrics=(metric,),
        kind=kind,
        max_new_tokens=max_new_tokens,
        random_baseline=random_baseline,
        sample=sample,
        task_prefix=instruction + "\n",
        preferred_score=metric,
        test_share=test_share,
        **LINE_FORMAT,
    )


def _arithmetic() -> list[Task]:
    tasks = []
    for digits in (2, 3, 4, 5):
        for op, word, verb in (("+", "add", "Add"), ("-", "sub", "Subtract")):
            tasks.append(
                _generated(
                    f"{word}{digits}",
                    _binary(digits, op),
                    f"{digits}-digit {'addition' if op == '+' else 'subtraction'} (GPT-3)",
                    f"{verb}:",
                    max_new_tokens=digits + 3,
                )
            )
    return tasks


def _python_functions() -> Task:
    """The project's HumanEval-style problems (evaluation/task_data), zero-shot, pass@k."""
    examples = tuple(
        Example(p.prompt, (p.canonical_solution,), test=p.test, entry_point=p.entry_point)
        for p in problems.load_problems()
    )
    return Task(
        name="python_functions",
        description="write a Python function from its signature and docstring (unit-tested)",
        metrics=("pass_at_k",),
        kind=CODE,
        max_new_tokens=128,
        random_baseline=0.0,
        examples=examples,
        example_input_prefix="",
        example_output_prefix="",
        few_shot_example_separator="\n\n",
        preferred_score="pass_at_k",
    )


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        *_arithmetic(),
        _generated(
            "mul2",
            _binary(2, "*"),
            "2-digit multiplication (GPT-3)",
            "Multiply:",
            max_new_tokens=6,
        ),
        _generated(
            "composite1",
            _composite,
            "one-digit composite arithmetic (GPT-3 1DC)",
            "Compute:",
            max_new_tokens=40,
        ),
        _generated(
            "cycle_letters",
            _cycle_letters,
            "undo a cyclic shift of a word's letters (GPT-3 word unscrambling)",
            "Unscramble:",
            max_new_tokens=WORD_ANSWER,
        ),
        _generated(
            "anagram1",
            _anagram(1),
            "unscramble all but the first and last letter (GPT-3 A1)",
            "Unscramble:",
            max_new_tokens=WORD_ANSWER,
            test_share=0.4,
        ),
        _generated(
            "anagram2",
            _anagram(2),
            "unscramble all but the first and last two letters (GPT-3 A2)",
            "Unscramble:",
            max_new_tokens=WORD_ANSWER,
            test_share=0.4,
        ),
        _generated(
            "random_insertion",
            _random_insertion,
            "remove the characters inserted between a word's letters (GPT-3 RI)",
            "Clean up:",
            max_new_tokens=WORD_ANSWER,
        ),
        _generated(
            "reversed_words",
            _reversed_words,
            "spell a reversed word forwards (GPT-3 RW)",
            "Spell forwards:",
            max_new_tokens=WORD_ANSWER,
            test_share=0.4,
        ),
        _generated(
            "word_sorting",
            _word_sorting,
            "sort three words alphabetically (BIG-bench word_sorting)",
            "Sort:",
            max_new_tokens=30,
        ),
        _generated(
            "navigate",
            _navigate,
            "does a walk end where it started? (BIG-bench navigate)",
            "Back home?",
            kind=MULTIPLE_CHOICE,
            random_baseline=0.5,
            max_new_tokens=60,
        ),
        _generated(
            "last_letter_concat",
            _last_letter_concat,
            "concatenate the last letters of two words (Wei et al. 2022, chain of thought)",
            "Last letters:",
            max_new_tokens=48,
        ),
        _generated(
            "copy_letters",
            _copy_letters,
            "repeat a random 5-letter string: in-context copying (induction heads)",
            "Copy:",
            max_new_tokens=7,
        ),
        _generated(
            "largest_of_4",
            _largest_of_4,
            "pick the largest of four numbers",
            "Largest:",
            kind=MULTIPLE_CHOICE,
            random_baseline=0.25,
        ),
        _python_functions(),
    )
}


def _is_path(name: str) -> bool:
    return name.endswith(".json") or "/" in name or Path(name).is_dir()


def resolve(name: str) -> Task:
    """A built-in task by name, or a BIG-bench task.json (file or directory) by path."""
    if name in TASKS:
        return TASKS[name]
    if _is_path(name):
        return load_task_file(name)
    raise TaskError("eval.tasks", f"unknown task {name!r}", f"choose from {sorted(TASKS)}")


def expand(name: str) -> tuple[str, ...]:
    """The tasks a name in eval.tasks stands for: the subtask folders of a BIG-bench parent
    task (BIG-bench runs a parent as its subtasks), else the name itself."""
    if name in TASKS or not _is_path(name):
        return (name,)
    return tuple(str(f.parent) for f in subtask_files(name)) or (name,)


def expand_all(names) -> list[str]:
    """The tasks of a list of names (eval.tasks), parents expanded, each once, in order."""
    return list(dict.fromkeys(t for name in names for t in expand(name)))
