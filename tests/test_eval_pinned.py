"""Byte-level evaluation pinned: a TINY model trained 300 steps on the synthetic corpus gives
exactly these scores, log-probabilities and generations. The numbers were computed before
evaluation learnt other tokenizers (issue 16, part 4); under bytes it must not change them.
Re-pinned once since, on purpose: weight decay no longer applies to gpt2's fused q/k/v bias
(scaling.train.decayed), which moves the trained weights (log-probabilities by ~1e-4)."""

import pytest
from conftest import tiny_run

from evaluation.evaluate import evaluate
from evaluation.generate import generate
from evaluation.likelihood import continuation_logprobs
from scaling.config import EvalConfig, run_config
from scaling.tokenizer import ByteTokenizer
from scaling.train import train

REL = 1e-6
BYTES = ByteTokenizer()
# (task, shots, metric): (value, stderr)
ROWS = {
    ("add2", 0, "exact_match"): (0.0, 0.0),
    ("add2", 0, "token_edit_distance"): (2.6, 0.11239029738980327),
    ("add2", 0, "logprob"): (-9.125660085678101, 0.24510898122666192),
    ("add2", 2, "exact_match"): (0.0, 0.0),
    ("add2", 2, "token_edit_distance"): (2.8, 0.17167901505579045),
    ("add2", 2, "logprob"): (-9.161374187469482, 0.2398788686335808),
    ("copy_letters", 0, "exact_match"): (0.0, 0.0),
    ("copy_letters", 0, "token_edit_distance"): (6.75, 0.12301048307916045),
    ("copy_letters", 0, "logprob"): (-24.703600692749024, 0.7997098938300339),
    ("copy_letters", 2, "exact_match"): (0.0, 0.0),
    ("copy_letters", 2, "token_edit_distance"): (6.7, 0.10513149660756936),
    ("copy_letters", 2, "logprob"): (-25.002995491027832, 0.8363669755055948),
    ("largest_of_4", 0, "acc"): (0.15, 0.08191780219091253),
    ("largest_of_4", 0, "acc_norm"): (0.2, 0.09176629354822471),
    ("largest_of_4", 0, "brier_score"): (1.1285815983277434, 0.10072282367612974),
    ("largest_of_4", 0, "logprob"): (-8.456934547424316, 0.04027981086635093),
    ("largest_of_4", 2, "acc"): (0.15, 0.08191780219091253),
    ("largest_of_4", 2, "acc_norm"): (0.2, 0.09176629354822471),
    ("largest_of_4", 2, "brier_score"): (1.1243272510493714, 0.09984390157813999),
    ("largest_of_4", 2, "logprob"): (-8.495078897476196, 0.04350234424944335),
}
COUNTS = ("exact_match", "token_edit_distance", "acc", "acc_norm")  # exact: counts over 20
PAIRS = [("12+34=", "46\n"), ("max 1 2 3 4 = ", "4\n"), ("Back home? ", "yes\n")]
LOGPROBS = [-7.851306438446045, -5.7774481773376465, -15.062731742858887]
GREEDY_PROMPTS = ["12+34=", "Copy: abcde = ", "reverse olleh = "]
GREEDY = [  # (text, mean log-probability, stopped) with stop "\n" and 8 new tokens
    ("", -2.1340835094451904, True),
    ("ce ce ce", -2.155587673187256, False),
    ("ce ce ce", -2.0880444049835205, False),
]
SAMPLED = [("2616 397", -2.727160930633545, False), ("momynr", -3.1436831951141357, True)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    cfg = run_config(tiny_run(steps=300))
    return cfg, train(cfg, tmp_path_factory.mktemp("pinned") / "run").params


def test_byte_level_scores_are_pinned(trained):
    cfg, params = trained
    ecfg = EvalConfig(
        tasks=("add2", "copy_letters", "largest_of_4"),
        shots=(0, 2),
        n_examples=20,
        instruction=False,
    )
    rows = evaluate(params, cfg.model, ecfg, BYTES)
    rows = {(r["task"], r["shots"], r["metric"]): r for r in rows}
    assert rows.keys() == ROWS.keys()
    for key, (value, stderr) in ROWS.items():
        if key[2] in COUNTS:
            assert rows[key]["value"] == pytest.approx(value, abs=1e-12), key
        else:
            assert rows[key]["value"] == pytest.approx(value, rel=REL), key
        assert rows[key]["stderr"] == pytest.approx(stderr, rel=REL, abs=1e-12), key


def test_byte_level_logprobs_and_generations_are_pinned(trained):
    cfg, params = trained
    got = continuation_logprobs(params, cfg.model, BYTES, PAIRS)
    assert got.tolist() == pytest.approx(LOGPROBS, rel=REL)
    greedy = generate(params, cfg.model, BYTES, GREEDY_PROMPTS, 8)
    sampled = generate(
        params, cfg.model, BYTES, GREEDY_PROMPTS[:2], 8, temperature=1.0, top_p=0.9, seed=3
    )
    for samples, want in ((greedy, GREEDY), (sampled, SAMPLED)):
        assert [(s.text, s.stopped) for s in samples] == [(t, stop) for t, _, stop in want]
        assert [s.mean_logprob for s in samples] == pytest.approx([m for _, m, _ in want], rel=REL)
