"""`scaling config show`: a config file as the runs will see it, every default filled in.

    scaling config show run.yaml train.learning_rate=3e-4       # the whole run config
    scaling config show sweep.yaml                              # base, launch, the runs
    scaling config show sweep.yaml --run s3-C1e+12              # one run of the sweep, whole

The output is YAML that loads back as the same config (floats in YAML 1.2 form).
"""

from __future__ import annotations

import dataclasses
import json
from importlib import metadata

import yaml

from experiments import launch_config
from experiments.sweep import DESIGN_KEYS, SWEEP_KEYS, apply_overrides, expand
from scaling.config import ConfigError, run_config
from scaling.config_io import load_yaml, run_config_with


def version() -> str:
    """`scaling X.Y.Z (jax A.B.C)`: what --version prints."""

    def installed(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    return f"scaling {installed('scaling')} (jax {installed('jax')})"


def _plain(tree) -> dict:
    """Tuples to lists, for a YAML dump that reads back."""
    return json.loads(json.dumps(tree))


def _is_sweep(tree: dict) -> bool:
    return bool((DESIGN_KEYS | {"finetune"}) & set(tree))


def _differences(config: dict, base: dict, prefix: str = "") -> dict:
    """Dotted paths where a run's config differs from the sweep's base."""
    out = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= _differences(value, base.get(key, {}), f"{path}.")
        elif value != base.get(key):
            out[path] = value
    return out


def show(path: str, overrides=(), run: str | None = None) -> dict:
    """The resolved config of a run config file or a sweep file, as a plain mapping."""
    tree = load_yaml(path, "config")
    if not _is_sweep(tree):
        if run:
            raise ConfigError("--run", f"{path} is a run config, not a sweep", "drop --run")
        return _plain(run_config_with(tree, overrides).to_dict())
    spec = apply_overrides(tree, overrides)
    sweep = expand(spec, yes=True)
    if run:
        match = [r for r in sweep.runs if run in (r.name, r.run_id)]
        if not match:
            names = ", ".join(r.name for r in sweep.runs[:8])
            raise ConfigError("--run", f"no run {run!r} in {path}", f"give one of {names}, ...")
        return _plain({"run_id": match[0].run_id, **match[0].config.to_dict()})
    base = _plain(run_config(spec.get("base") or {}).to_dict())
    design = sorted(SWEEP_KEYS - {"name", "description", "base", "launch"})  # grid, isoflop...
    launch = dataclasses.asdict(launch_config.resolve(sweep.launch))
    return _plain(
        {
            "name": sweep.name,
            "description": sweep.description,
            **{k: spec[k] for k in design if k in spec},
            "launch": launch,
            "base": base,
            "runs": {
                r.name: {"run_id": r.run_id, **_differences(_plain(r.config.to_dict()), base)}
                | ({"design": r.design} if r.design else {})
                for r in sweep.runs
            },
        }
    )


def cmd_config(args) -> int:
    print(yaml.safe_dump(show(args.config, args.overrides, args.run), sort_keys=False), end="")
    return 0


def add_parser(subparsers) -> None:
    c = subparsers.add_parser("config", help="show a run or sweep config with every default")
    actions = c.add_subparsers(dest="action", required=True)
    s = actions.add_parser("show", help="print the resolved config (YAML)")
    s.add_argument("config", help="run config or sweep file (YAML)")
    s.add_argument("overrides", nargs="*", metavar="key=value", help="fields set on top")
    s.add_argument("--run", help="a sweep's run (name or id): print its whole config")
    s.set_defaults(func=cmd_config)
