"""Evaluation under any tokenizer: lm-eval's context/continuation split, stop strings matched on
text, budgets and truncation in tokens, and a TINY model trained on a BPE corpus evaluated
few-shot through the experiments layer."""

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_run

from evaluation.evaluate import check_prompts_fit
from evaluation.generate import STOP_CHECK_EVERY, _halting_ids, _pick, _sample, first_stop, generate
from evaluation.likelihood import continuation_logprobs, encode_pairs
from experiments import store, sweep_eval
from scaling.config import ConfigError, EvalConfig, ModelConfig, run_config
from scaling.model import init_params
from scaling.tokenizer import ByteTokenizer
from scaling.train import train

M = ModelConfig(n_layer=2, d_model=32, n_head=2, d_ff=64, seq_len=64)
BYTES = ByteTokenizer()


def lm_eval_split(tok, context: str, continuation: str) -> tuple[list, list]:
    """lm-evaluation-harness's `_encode_pair`, transcribed: (context tokens, continuation
    tokens)."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole_enc = tok.encode(context + continuation).tolist()
    context_enc = tok.encode(context).tolist()
    return context_enc, whole_enc[len(context_enc) :]


def split(tok, context: str, continuation: str) -> tuple[list, list]:
    [(tokens, n_context)] = encode_pairs(tok, [(context, continuation)])
    return tokens[:n_context].tolist(), tokens[n_context:].tolist()


@pytest.mark.parametrize(
    "context, continuation",
    [
        ("The answer is", " 42"),
        ("The answer is ", "42"),  # the moved space merges into " 4"
        ("max 74 50 95 45 = ", "95\n"),
        ("The an", "swer is 42"),  # " an" + "swer" merge into " answer": lm-eval's misalignment
    ],
)
def test_the_split_is_lm_evals(bpe, context, continuation):
    assert split(bpe, context, continuation) == lm_eval_split(bpe, context, continuation)


def test_a_moved_space_merges_with_the_continuation_under_bpe(bpe):
    _, scored = split(bpe, "The answer is ", "42")
    assert [bpe.decode([t]) for t in scored] == [" 4", "2"]


@pytest.mark.parametrize(
    "tok, context, continuation, scored",
    [
        (BYTES, "12+34= ", "46\n", "46\n"),  # bytes never merge the space: scored as before
        ("bpe", "The answer is  ", "42", " 42"),  # " " + " 4": the lone space stays context
        ("bpe", "Q:\n", "42", "42"),  # GPT-2's pre-tokenizer keeps "\n" apart
    ],
)
def test_tokens_of_moved_whitespace_alone_stay_in_the_context(
    bpe, tok, context, continuation, scored
):
    tok = bpe if tok == "bpe" else tok
    ctx, cont = split(tok, context, continuation)
    assert tok.decode(cont) == scored and tok.decode(ctx + cont) == context + continuation
    lm_ctx, lm_cont = lm_eval_split(tok, context, continuation)
    assert ctx + cont == lm_ctx + lm_cont and len(cont) < len(lm_cont)


def test_a_continuation_swallowed_by_the_context_is_an_error(bpe):
    with pytest.raises(ValueError, match="no token of 'er' to score"):
        encode_pairs(bpe, [("The answ", "er")])  # " an"+"sw" then " answer": nothing left


@pytest.fixture(scope="module")
def params():
    return init_params(M, 0)


def test_a_long_context_loses_tokens_from_the_left(params):
    context = "".join(f"{i}+{i}={2 * i}\n" for i in range(20))  # 150 bytes > seq_len
    got = continuation_logprobs(params, M, BYTES, [(context, "46\n")])
    kept = context[-(M.seq_len + 1 - 3) :]
    assert got[0] == pytest.approx(continuation_logprobs(params, M, BYTES, [(kept, "46\n")])[0])
    with pytest.raises(ValueError, match="continuation tokens exceed seq_len=64"):
        continuation_logprobs(params, M, BYTES, [("a", "b" * 65)])
    long_prompt = context + "12+34="
    room = M.seq_len - 8
    assert generate(params, M, BYTES, [long_prompt], 8, stop=()) == generate(
        params, M, BYTES, [long_prompt[-room:]], 8, stop=()
    )


# ------------------------------------------------------------------------------ stop strings


@dataclass(frozen=True)
class Pieces:
    """A fake tokenizer: id i spells pieces[i]; the last id is EOS."""

    pieces: tuple[str, ...] = ("4", "2", ".\n", "\nQ", ":", "x\ny", " So", " the", "<eos>")
    eos_id: int = 8
    vocab_size: int = 9

    def decode(self, ids) -> str:
        return "".join(self.pieces[i] for i in ids)


def sample(ids: list[int], stops, limit: int = 8):
    out = np.array(ids + [0] * (8 - len(ids)))
    logp = -np.arange(1.0, 9.0)  # token k has log-probability -(k + 1)
    return _sample(Pieces(), out, logp, stops, limit)


def test_a_stop_spanning_tokens_cuts_the_text_at_its_start():
    s = sample([0, 1, 2, 3, 4, 0, 0, 0], ("\n\n",))  # "42.\n" + "\nQ:": "\n\n" straddles
    assert s.text == "42." and s.stopped
    assert s.mean_logprob == pytest.approx(-2.5)  # the 4 tokens up to the one completing it


def test_a_stop_inside_one_token_and_the_earliest_of_several():
    s = sample([0, 5, 1], ("\n",))
    assert (s.text, s.mean_logprob, s.stopped) == ("4x", -1.5, True)
    s = sample([6, 7, 0, 2], ("\n", " the"))
    assert (s.text, s.mean_logprob) == (" So", -1.5)
    assert first_stop("ab\ncd So the", (" the", "\n")) == (2, 3)


def test_eos_stops_and_no_stop_runs_to_the_limit():
    s = sample([0, 1, 8, 4, 4], ("\n",))
    assert (s.text, s.mean_logprob, s.stopped) == ("42", -2.0, True)
    s = sample([0, 1, 4, 4, 0, 1, 4, 4], ("\n",), limit=6)
    assert (s.text, s.mean_logprob, s.stopped) == ("42::42", -3.5, False)


def test_ids_that_halt_on_the_device():
    halts = _halting_ids(Pieces(), 12, ("\n",))
    assert np.flatnonzero(halts).tolist() == [2, 3, 5, 8]  # pieces holding "\n", and EOS
    assert np.flatnonzero(_halting_ids(Pieces(), 12, ())).tolist() == [8]


def test_padding_ids_of_the_model_vocabulary_are_never_picked():
    logits = jnp.zeros((2, 640)).at[:, 600].set(10.0)  # a model of vocabulary 640, ids < 512
    keys = jax.random.split(jax.random.key(0), 2)
    for temperature in (0.0, 1.0):
        token, logp = jax.jit(_pick)(logits, keys, 0, temperature, 1.0, 512)
        assert (np.asarray(token) < 512).all() and np.allclose(logp, -np.log(512))


@dataclass(frozen=True)
class OneCharPerId:
    """A fake tokenizer over 256 ids whose text has one character per token, so that positions in
    the text are positions in the tokens."""

    vocab_size: int = 256
    eos_id: None = None

    def encode_batch(self, texts):
        return [np.frombuffer(t.encode(), np.uint8) for t in texts]

    def decode(self, ids) -> str:
        return "".join(chr(0x4E00 + int(i)) for i in ids)


def test_generation_stops_at_a_stop_string_spanning_tokens(params, monkeypatch):
    from evaluation import generate as gen

    tok, prompts, n = OneCharPerId(), ["12+34=", "copy abcde = ", "x"], 3 * STOP_CHECK_EVERY
    kw = {"temperature": 1.0, "seed": 0}  # a row's draws do not depend on the other rows
    free = generate(params, M, tok, prompts, n, stop=(), **kw)
    stop = free[0].text[10:12]  # tokens 10 and 11: seen by the host check after 16 tokens
    assert free[0].text.find(stop) == 10
    checks = []
    real = gen._mark_stopped
    monkeypatch.setattr(gen, "_mark_stopped", lambda *a: checks.append(real(*a)) or checks[-1])
    cut = generate(params, M, tok, prompts, n, stop=(stop,), **kw)
    for f, c in zip(free, cut):
        at = f.text.find(stop)
        assert (c.text, c.stopped) == ((f.text[:at], True) if at >= 0 else (f.text, False))
    assert [bool(done[0]) for done in checks] == [False, True]  # row 0 halted at the second
    assert generate(params, M, tok, prompts, n, stop=stop, **kw) == cut  # one string


# ----------------------------------------------------------------------------- a BPE run


def test_budgets_are_tokens_of_the_run_tokenizer(bpe):
    ecfg = EvalConfig(tasks=("navigate",), shots=(2,), n_examples=10)
    with pytest.raises(ConfigError, match=r"need 9\d tokens"):
        check_prompts_fit(M, ecfg, BYTES)  # over 90 bytes
    check_prompts_fit(M, ecfg, bpe)  # about 40 BPE tokens


def test_a_bpe_run_is_evaluated_few_shot(bpe, tmp_path):
    raw = tiny_run(steps=30)
    raw["data"] |= {"tokenizer": bpe.spec}
    raw["model"] = raw["model"] | {"vocab_size": 512}
    cfg = run_config(raw)
    assert cfg.data.run_tokenizer() == bpe
    params = train(cfg, tmp_path / "run").params
    ecfg = EvalConfig(tasks=("largest_of_4", "add2"), shots=(2,), n_examples=10)
    sweep_eval.record(tmp_path, cfg, ecfg, params, cfg.steps)  # with the run's tokenizer
    rows = store.read_eval(tmp_path)
    assert {(r["task"], r["metric"]) for r in rows} == {
        *(("largest_of_4", m) for m in ("acc", "acc_norm", "brier_score", "logprob")),
        *(("add2", m) for m in ("exact_match", "token_edit_distance", "logprob")),
    }
    for r in rows:
        assert r["shots"] == 2 and r["n_examples"] == 10
        assert np.isfinite(r["value"]) and r["stderr"] >= 0
