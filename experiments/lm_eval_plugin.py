"""How lm-evaluation-harness finds `--model scaling`.

lm-eval 0.4.13 looks model names up in its own registry and has no plugin mechanism (an
entry-point group for models came after it): a model class is known only once its module has
run `@register_model`. So this module, which imports only the standard library:

- `register()`: as soon as lm-eval's registry is imported, put the name `scaling` in it as a
  lazy "module:Class" entry (lm-eval's own mechanism for its built-in models), so that JAX and
  the model code load only when `--model scaling` is asked for;
- `python -m experiments.lm_eval_plugin ARGS`: lm-eval's command line (`lm_eval ARGS`) with
  the name registered, needing no set-up;
- `python -m experiments.lm_eval_plugin --install`: writes a one-line `.pth` file into this
  environment's site-packages that calls `register()` at interpreter start-up, after which the
  plain `lm_eval --model scaling ...` console script works (`--uninstall` removes it; `make
  test` installs it). The line does nothing when this package is gone.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import sysconfig
from pathlib import Path

NAME = "scaling"
TARGET = "experiments.lm_eval_model:RunLM"
REGISTRY = "lm_eval.api.registry"
PTH = "scaling_lm_eval.pth"
PTH_LINE = (
    "import sys; exec('try:\\n import experiments.lm_eval_plugin as p\\n"
    "except ImportError:\\n pass\\nelse:\\n p.register()')\n"
)


def _add(registry) -> None:
    if NAME not in registry.model_registry:
        registry.model_registry.register(NAME, target=TARGET)


class _OnRegistryImport(importlib.abc.MetaPathFinder):
    """Finds lm-eval's registry module like the path finder does, and adds our name to it
    right after it has run."""

    def find_spec(self, fullname, path, target=None):
        if fullname != REGISTRY:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            _add(module)

        spec.loader.exec_module = exec_module
        return spec


def register() -> None:
    """Make `scaling` a model name of lm-eval in this process (idempotent)."""
    if REGISTRY in sys.modules:
        _add(sys.modules[REGISTRY])
    elif not any(isinstance(f, _OnRegistryImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _OnRegistryImport())


def pth_path() -> Path:
    return Path(sysconfig.get_paths()["purelib"]) / PTH


def main(argv: list[str]) -> int:
    if argv in (["--install"], ["--uninstall"]):
        path = pth_path()
        if argv[0] == "--install":
            path.write_text(PTH_LINE)
        else:
            path.unlink(missing_ok=True)
        print(f"{'wrote' if argv[0] == '--install' else 'removed'} {path}")
        return 0
    register()
    from lm_eval.__main__ import cli_evaluate  # lm-eval's own command line

    sys.argv = ["lm_eval", *argv]
    cli_evaluate()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
