"""What is checked about runs before anything compiles (`preflight`), so that a bad run fails
at launch, on one line naming the run and the field, not hours into a sweep."""

from __future__ import annotations

import contextlib

from scaling.config import ConfigError, RunConfig


def preflight(configs: list[RunConfig], here: bool = False, show: bool = True) -> None:
    """Everything that can be checked before compiling: data present and long enough, prompts
    fit the context, and, for runs that train in this process (`here`), that each fits its
    devices' memory. Raises ConfigError naming the run and field. A progress bar shows when it
    takes more than a second (a large synthetic corpus, many eval examples)."""
    from evaluation.evaluate import check_prompts_fit
    from experiments.tracking import progress
    from scaling import data, finetune_data, memory

    if here:  # cheap, and before building any corpus
        for cfg in configs:
            with named(cfg):
                memory.fitting_mesh(cfg)
    with progress(2 * len(configs), "checking data and prompts", "check", show) as bar:
        for cfg in configs:
            name = cfg.name or "the run"
            with named(cfg):
                if cfg.finetune.task:  # its task's items and test prompts, not the corpus
                    bar.set_postfix_str(f"{name}: {cfg.finetune.task}", refresh=False)
                    finetune_data.check(cfg)
                    bar.update(2)
                    continue
                bar.set_postfix_str(f"{name}: corpus", refresh=False)
                data.check_fits(
                    data.load_corpus(cfg.data), cfg.model.seq_len, cfg.data.unique_tokens
                )
                bar.update()
                bar.set_postfix_str(
                    f"{name}: {cfg.eval.n_examples} examples per task", refresh=False
                )
                check_prompts_fit(cfg.model, cfg.eval, cfg.data.run_tokenizer())
                bar.update()


@contextlib.contextmanager
def named(cfg: RunConfig):
    """A ConfigError about one run of a sweep names the run."""
    try:
        yield
    except ConfigError as e:
        raise (e.within(f"run {cfg.name}") if cfg.name else e) from None
