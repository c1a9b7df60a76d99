"""Our JAX model as an lm-evaluation-harness language model: the three requests lm-eval makes
of a model (`loglikelihood`, `loglikelihood_rolling`, `generate_until`) answered by the scoring
and generation code of `scaling eval` (evaluation.likelihood, evaluation.generate), so that a
score is the same whichever harness asked for it.

- loglikelihood: pairs tokenized by likelihood.encode_pairs (lm-eval's rule, with its one
  documented departure: whitespace-only leading tokens stay in the context), batched longest
  first, with lm-eval's is_greedy. An empty context is the start of a document: the model reads
  the ids that precede every document in training (shards.document_end: EOS, or for bytes the
  blank line), where lm-eval reads one BOS/EOS token.
- loglikelihood_rolling: lm-eval's own rolling windows (utils.get_rolling_token_windows,
  make_disjoint_window) over the model's context, every token scored once with as much context
  as fits; the first window conditions on that document start.
- generate_until: KV-cached decoding, greedy unless the task asks to sample, cut at the first
  of the `until` strings (or EOS), at most max_gen_toks new tokens (a budget as long as the
  context, such as lm-eval's default 256 on a small model, becomes half of it); a prompt that
  does not fit loses tokens from the left, as in lm-eval.

On a mesh (scaling.mesh) the rows of every batch are split over its batch axes (data·fsdp) and
the parameters laid out as in training; the batch is rounded up to a multiple of those axes.
The model is built from parameters in memory; experiments.lm_eval_model loads a run directory
and registers it as `lm_eval --model scaling`.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections import defaultdict

import jax
import numpy as np

try:
    from lm_eval.api.model import LM
    from lm_eval.api.registry import register_model
    from lm_eval.utils import (
        get_rolling_token_windows,
        make_disjoint_window,
        simple_parse_args_string,
    )
except ImportError as e:  # the adapter is an optional extra
    raise ImportError(
        f"lm-evaluation-harness is not installed ({e}); fix: pip install 'scaling[lmeval]'"
    ) from None

from evaluation.generate import generate
from evaluation.likelihood import encode_pairs, fit_row, score_rows
from scaling.config import ModelConfig
from scaling.mesh import activation_layout, batch_ways, logical_sharding
from scaling.shards import document_end
from scaling.tokenizer import Tokenizer

# lm-eval's names re-exported: a module importing them from here gets the install hint first
__all__ = ["DEFAULT_BATCH", "ScalingLM", "register_model", "simple_parse_args_string"]
log = logging.getLogger(__name__)
DEFAULT_BATCH = 64
GEN_KWARGS = {"until", "max_gen_toks", "do_sample", "temperature", "top_p"}


def _row_placer(mesh):
    """place(array) splitting an array's first axis (rows) over the mesh's batch axes."""
    if mesh is None:
        return None
    return lambda x: jax.device_put(
        x, logical_sharding(mesh, ("batch",) + (None,) * (np.ndim(x) - 1))
    )


class ScalingLM(LM):
    """lm-eval's LM over `params` of a model of shape `cfg` trained on tokens of `tok`.
    `info` goes into the results' config (model_num_parameters, model_revision, ...)."""

    def __init__(
        self,
        params,
        cfg: ModelConfig,
        tok: Tokenizer,
        *,
        batch_size: int = DEFAULT_BATCH,
        mesh=None,
        max_gen_toks: int = 256,
        info: dict | None = None,
    ):
        super().__init__()
        self.params, self.cfg, self.tok, self.mesh = params, cfg, tok, mesh
        ways = 1 if mesh is None else batch_ways(mesh)
        self.batch_size = -(-int(batch_size) // ways) * ways
        self.max_gen_toks = int(max_gen_toks)
        self.prefix = document_end(tok).astype(np.int64)
        self.info = dict(info or {})
        self._place = _row_placer(mesh)

    @property
    def tokenizer_name(self) -> str:
        return f"{self.tok.name}-{self.tok.sha256[:12]}"

    def get_model_info(self) -> dict:
        return self.info

    def _layout(self):
        """While tracing, the model's activation constraints refer to the mesh."""
        return activation_layout(self.mesh) if self.mesh is not None else contextlib.nullcontext()

    def _score(self, rows: list[tuple[np.ndarray, int]]) -> tuple[np.ndarray, np.ndarray]:
        with self._layout():
            return score_rows(self.params, self.cfg, rows, self.batch_size, self._place)

    # --------------------------------------------------------------------- loglikelihood

    def _rows(self, pairs: list[tuple[str, str]]) -> list[tuple[np.ndarray, int]]:
        """(tokens, n_context) per pair, at most seq_len + 1 tokens (context cut on the left)."""
        rows: list = [None] * len(pairs)
        texts = [i for i, (context, _) in enumerate(pairs) if context]
        for i, row in zip(texts, encode_pairs(self.tok, [pairs[i] for i in texts])):
            rows[i] = row
        for i, (context, continuation) in enumerate(pairs):
            if not context:  # scored from the start of a document
                ids = self.tok.encode(continuation)
                rows[i] = (np.concatenate([self.prefix, ids]), len(self.prefix))
        return [fit_row(tokens, n, self.cfg.seq_len) for tokens, n in rows]

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        pairs = [tuple(r.args) for r in requests]
        logprob, greedy = self._score(self._rows(pairs))
        out = [(float(lp), bool(g)) for lp, g in zip(logprob, greedy)]
        for request, result in zip(requests, out):
            self.cache_hook.add_partial("loglikelihood", request.args, result)
        return out

    # ------------------------------------------------------------- loglikelihood_rolling

    def _windows(self, text: str) -> list[tuple[np.ndarray, int]]:
        """lm-eval's disjoint rolling windows over the text's tokens; the first one reads the
        whole document start (k ids), so windows are seq_len - k + 1 predictions wide."""
        k = len(self.prefix)
        ids = self.tok.encode(text).tolist()
        windows = get_rolling_token_windows(
            ids, int(self.prefix[-1]), max_seq_len=self.cfg.seq_len - k + 1, context_len=1
        )
        rows = []
        for j, (context, predicted) in enumerate(map(make_disjoint_window, windows)):
            if j == 0:
                context = self.prefix[:-1].tolist() + context
            rows.append((np.asarray(context + predicted), len(context)))
        return rows

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        rows, owner = [], []
        for i, request in enumerate(requests):
            windows = self._windows(request.args[0])
            rows += windows
            owner += [i] * len(windows)
        totals = np.zeros(len(requests))
        if rows:
            np.add.at(totals, owner, self._score(rows)[0])
        for request, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", request.args, float(total))
        return [float(t) for t in totals]

    # -------------------------------------------------------------------- generate_until

    def _settings(self, gen_kwargs: dict) -> tuple:
        """(stop strings, new-token budget, temperature, top_p) of one request."""
        unknown = set(gen_kwargs) - GEN_KWARGS
        if unknown:
            log.warning("scaling model ignores generation settings %s", sorted(unknown))
        until = gen_kwargs.get("until") or ()
        until = (until,) if isinstance(until, str) else tuple(until)
        budget = int(gen_kwargs.get("max_gen_toks", self.max_gen_toks))
        if budget >= self.cfg.seq_len:  # half the context for the prompt, half for the answer
            log.warning(
                "max_gen_toks=%d does not fit seq_len=%d: %d new tokens at most",
                budget,
                self.cfg.seq_len,
                self.cfg.seq_len // 2,
            )
            budget = self.cfg.seq_len // 2
        # lm-eval's reading (HFLM): greedy unless do_sample, then temperature 1 unless given
        temperature = (
            float(gen_kwargs.get("temperature", 1.0)) if gen_kwargs.get("do_sample") else 0.0
        )
        return until, budget, temperature, float(gen_kwargs.get("top_p", 1.0))

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        kinds = defaultdict(list)  # requests with the same gen_kwargs (a task's: one kind)
        for i, request in enumerate(requests):
            kinds[json.dumps(request.args[1], sort_keys=True, default=str)].append(i)
        groups = defaultdict(list)  # requests that share settings are decoded together
        for members in kinds.values():
            groups[self._settings(dict(requests[members[0]].args[1]))] += members
        out: list = [None] * len(requests)
        for (until, budget, temperature, top_p), members in groups.items():
            prompts = [requests[i].args[0] for i in members]
            with self._layout():
                samples = generate(
                    self.params,
                    self.cfg,
                    self.tok,
                    prompts,
                    budget,
                    temperature=temperature,
                    top_p=top_p,
                    stop=until,
                    row_ids=members,
                    batch=self.batch_size,
                    place=self._place,
                )
            for i, sample in zip(members, samples):
                out[i] = sample.text
                self.cache_hook.add_partial("generate_until", requests[i].args, sample.text)
        return out
