"""Run configuration: frozen dataclasses, built from plain dicts and validated in one place.

Every config error is a `ConfigError` whose message is one line naming the field and the fix,
raised before anything is compiled or trained. The CLI turns it into exit code 2.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from evaluation.task_suite import expand_all, resolve
from evaluation.tasks import TaskError
from scaling import zoo
from scaling.data_config import DEFAULT_TASKS, DataConfig
from scaling.families import FIELDS, ROPE, ROUTED
from scaling.finetune_config import FinetuneConfig
from scaling.tokenizer import check_vocab
from scaling.typed import ConfigError, build, require_positive


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a decoder-only transformer of a model family (scaling.families): GPT-2 by
    default (pre-LayerNorm, learned positions, tied embeddings)."""

    n_layer: int = 2
    d_model: int = 64
    n_head: int = 4
    # Width of a GELU MLP. SwiGLU families (llama, moe) take 2/3 of it, rounded to a multiple
    # of 8, as LLaMA does: the same parameters and FLOPs, so a ladder rung fits every family.
    d_ff: int = 256
    vocab_size: int = 256
    seq_len: int = 128
    dtype: str = "float32"  # activation dtype (bfloat16: mixed precision); params float32
    remat: str = "none"  # "none" | "full" (recompute each block) | "dots" (keep matmul outputs)
    # µP (Yang et al. 2022) relative to this base width; 0: standard parametrisation. See
    # scaling.model.mup_ratio for what it changes.
    mup_base_width: int = 0
    family: str = "gpt2"  # gpt2 | llama | moe (scaling.families)
    # llama and moe: grouped-query attention (0: n_head key/value heads), rotary positions.
    n_kv_head: int = 0
    rope_theta: float = 10_000.0
    # moe: top-k routed SwiGLU experts with a capacity and a load-balancing loss.
    n_expert: int = 8
    expert_top_k: int = 2
    capacity_factor: float = 1.25
    router_aux_weight: float = 0.01

    def validate(self, where: str = "model") -> None:
        require_positive(
            self, ("n_layer", "d_model", "n_head", "d_ff", "vocab_size", "seq_len"), where
        )
        if self.d_model % self.n_head:
            raise ConfigError(
                f"{where}.d_model",
                f"{self.d_model} is not divisible by n_head={self.n_head}",
                "choose d_model a multiple of n_head",
            )
        if self.mup_base_width < 0:
            raise ConfigError(
                f"{where}.mup_base_width",
                f"{self.mup_base_width} < 0",
                "use 0 (standard parametrisation) or the width the hyperparameters were tuned at",
            )
        if self.remat not in ("none", "full", "dots"):
            raise ConfigError(
                f"{where}.remat", f"unknown policy {self.remat!r}", "use 'none', 'full' or 'dots'"
            )
        if self.dtype not in ("float32", "bfloat16"):
            raise ConfigError(
                f"{where}.dtype", f"unknown dtype {self.dtype!r}", "use 'float32' or 'bfloat16'"
            )
        self._validate_family(where)

    def _validate_family(self, where: str) -> None:
        """A known family, fields it does not read left at their defaults (they would only
        rename the run), and its own fields in range."""
        if self.family not in FIELDS:
            raise ConfigError(
                f"{where}.family", f"unknown family {self.family!r}", f"use {' | '.join(FIELDS)}"
            )
        default = ModelConfig()
        for name in ROPE + ROUTED:
            if name not in FIELDS[self.family] and getattr(self, name) != getattr(default, name):
                users = " or ".join(f for f, names in FIELDS.items() if name in names)
                raise ConfigError(
                    f"{where}.{name}",
                    f"family {self.family} has no such setting",
                    f"drop it, or set model.family to {users}",
                )
        if "n_kv_head" in FIELDS[self.family]:
            self._validate_rope(where)
        if "n_expert" in FIELDS[self.family]:
            self._validate_routing(where)

    def _validate_rope(self, where: str) -> None:
        if self.n_kv_head < 0 or self.n_head % self.kv_heads:
            raise ConfigError(
                f"{where}.n_kv_head",
                f"{self.n_kv_head} does not divide n_head={self.n_head}",
                "use a divisor of n_head (0: as many as n_head)",
            )
        if self.head_dim % 2:
            raise ConfigError(
                f"{where}.n_head",
                f"head_dim {self.head_dim} is odd; rotary embeddings rotate pairs",
                "choose n_head so that d_model / n_head is even",
            )
        if self.rope_theta <= 0:
            raise ConfigError(f"{where}.rope_theta", "must be > 0", "use e.g. 10000")

    def _validate_routing(self, where: str) -> None:
        require_positive(self, ("n_expert", "expert_top_k"), where)
        if self.expert_top_k > self.n_expert:
            raise ConfigError(
                f"{where}.expert_top_k",
                f"{self.expert_top_k} > n_expert={self.n_expert}",
                "route each token to at most n_expert experts",
            )
        if self.capacity_factor <= 0:
            raise ConfigError(f"{where}.capacity_factor", "must be > 0", "use e.g. 1.25")
        if self.router_aux_weight < 0:
            raise ConfigError(f"{where}.router_aux_weight", "must be >= 0", "use e.g. 0.01")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def kv_heads(self) -> int:
        """Key/value heads: n_kv_head, or n_head (plain multi-head attention) when it is 0."""
        return self.n_kv_head or self.n_head

    @staticmethod
    def from_name(name: str, where: str = "model") -> dict:
        """The fields of a ladder rung named where a model is given (`model: s3`)."""
        return model_fields(name, where)


@dataclass(frozen=True)
class TrainConfig:
    """AdamW with linear warmup, then the learning-rate schedule of scaling.schedules (cosine
    decay to min_lr_ratio·learning_rate by default)."""

    tokens: int = 100_000  # training budget; steps = tokens // (batch_size·seq_len)
    batch_size: int = 16
    learning_rate: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 20
    schedule: str = "cosine"  # "cosine" | "wsd" (warmup-stable-decay) | "constant"
    decay_fraction: float = 0.2  # wsd: share of the steps spent in the cooldown
    init_from: str = ""  # wsd: sibling run id (a `constant` run) to branch the cooldown from
    save_steps: tuple[int, ...] = ()  # extra checkpoints kept for good (cooldown branch points)
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    log_every: int = 10
    eval_every: int = 50
    eval_batches: int = 4
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    seed: int = 0

    def validate(self, where: str = "train") -> None:
        positive = (
            "tokens",
            "batch_size",
            "log_every",
            "eval_every",
            "eval_batches",
            "checkpoint_every",
            "keep_checkpoints",
        )
        require_positive(self, positive, where)
        if self.learning_rate <= 0:
            raise ConfigError(f"{where}.learning_rate", "must be > 0", "use e.g. 3e-3")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"{where}.min_lr_ratio", "not in [0, 1]", "use e.g. 0.1")
        if self.warmup_steps < 0:
            raise ConfigError(f"{where}.warmup_steps", "must be >= 0", "use e.g. 20")
        for name in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{where}.{name}", "not in [0, 1)", "use e.g. 0.9 / 0.95")
        if self.grad_clip <= 0:
            raise ConfigError(f"{where}.grad_clip", "must be > 0", "use e.g. 1.0")
        if self.weight_decay < 0:
            raise ConfigError(f"{where}.weight_decay", "must be >= 0", "use e.g. 0.1 (0: none)")
        if self.schedule not in ("cosine", "wsd", "constant"):
            raise ConfigError(
                f"{where}.schedule",
                f"unknown schedule {self.schedule!r}",
                "use cosine|wsd|constant",
            )
        if not 0.0 < self.decay_fraction <= 1.0:
            raise ConfigError(f"{where}.decay_fraction", "not in (0, 1]", "use e.g. 0.2")
        if self.init_from and self.schedule != "wsd":
            raise ConfigError(
                f"{where}.init_from",
                "only a wsd run branches from a stable run",
                "set schedule: wsd",
            )
        if any(s < 1 for s in self.save_steps):
            raise ConfigError(f"{where}.save_steps", "steps must be >= 1", "list positive steps")


@dataclass(frozen=True)
class EvalConfig:
    """Few-shot evaluation (evaluation.evaluate): which tasks, shots and prompting, and sampling.

    tasks: built-in names (evaluation.task_suite) or paths of BIG-bench task.json files/dirs.
    shots: every k in the list is evaluated (GPT-3's zero-, one- and few-shot); with pack_shots,
    each task instead gets the most shots that fit the context for all its test items.
    chain_of_thought: also evaluate tasks that have rationales with chain-of-thought exemplars,
    and, when samples > 0, by self-consistency (a majority vote over `samples` chains drawn at
    sc_temperature). samples: n samples per code problem for pass@k at each temperature."""

    tasks: tuple[str, ...] = DEFAULT_TASKS
    shots: tuple[int, ...] = (3,)
    n_examples: int = 100
    seed: int = 1234
    instruction: bool = True
    pack_shots: bool = False
    chain_of_thought: bool = False
    samples: int = 0
    temperatures: tuple[float, ...] = (0.2, 0.8)
    top_p: float = 0.95
    pass_k: tuple[int, ...] = (1, 5)
    sc_temperature: float = 0.7
    every_steps: int = 0  # also evaluate during training every this many steps (0: only at end)
    batch_size: int = 50

    def validate(self, where: str = "eval") -> None:
        if not self.tasks:
            raise ConfigError(f"{where}.tasks", "empty", "name at least one task")
        seen: dict[str, str] = {}  # task name -> the task (name or path) that has it
        try:
            for task in expand_all(self.tasks):  # a BIG-bench parent task: its subtasks
                name = resolve(task).name
                if seen.setdefault(name, task) != task:
                    raise ConfigError(
                        f"{where}.tasks",
                        f"{seen[name]} and {task} are both task {name!r}: their scores would mix",
                        "list each task once, or give one of them another name",
                    )
        except TaskError as e:  # the registry's own error, told as a config error
            raise ConfigError(e.field, e.problem, e.fix) from None
        if not self.shots or min(self.shots) < 0:
            raise ConfigError(
                f"{where}.shots",
                f"needs a non-empty list of numbers >= 0, got {list(self.shots)}",
                "write e.g. shots: [0, 1, 3]",
            )
        require_positive(self, ("n_examples", "batch_size"), where)
        for name in ("samples", "every_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{where}.{name}", "must be >= 0", "use 0 to turn it off")
        if self.samples and max(self.pass_k) > self.samples:
            raise ConfigError(
                f"{where}.pass_k",
                f"k={max(self.pass_k)} exceeds samples={self.samples} (pass@k needs n >= k)",
                f"raise eval.samples to at least {max(self.pass_k)} or lower pass_k",
            )
        if not self.pass_k or min(self.pass_k) < 1:
            raise ConfigError(f"{where}.pass_k", "needs values >= 1", "use e.g. [1, 5]")
        if not self.temperatures or min(self.temperatures) <= 0 or self.sc_temperature <= 0:
            raise ConfigError(
                f"{where}.temperatures", "sampling temperatures must be > 0", "use e.g. [0.2, 0.8]"
            )
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"{where}.top_p", f"{self.top_p} not in (0, 1]", "use e.g. 0.95")


@dataclass(frozen=True)
class MeshConfig:
    """How a run is laid out over devices (scaling.mesh): the sizes of the mesh axes `data`,
    `fsdp` and `tensor` within one slice (one of them may be -1: all remaining devices), and
    `slices` for multi-slice jobs (an outer data-parallel axis across slices, over DCN: the
    mesh's data axis is slices·data). scaling.memory checks the plan against
    `device_memory_gb` (decimal GB) before anything compiles. The layout never changes the
    numbers a run produces, so it is left out of the run id."""

    data: int = -1
    fsdp: int = 1
    tensor: int = 1
    slices: int = 1
    device_memory_gb: float = 0.0  # 0: the device's own figure (GPU, TPU; CPU: the host's RAM)

    def validate(self, where: str = "mesh") -> None:
        sizes = {"data": self.data, "fsdp": self.fsdp, "tensor": self.tensor}
        for name, size in sizes.items():
            if size == 0 or size < -1:
                raise ConfigError(
                    f"{where}.{name}", f"must be >= 1 or -1, got {size}", "use e.g. 1, 2 or -1"
                )
        if list(sizes.values()).count(-1) > 1:
            raise ConfigError(
                where,
                "more than one axis is -1",
                "give every axis but one an explicit size",
            )
        require_positive(self, ("slices",), where)
        if self.device_memory_gb < 0:
            raise ConfigError(
                f"{where}.device_memory_gb", "must be >= 0", "use e.g. 80 (0: the device's own)"
            )


@dataclass(frozen=True)
class RunConfig:
    """Everything one training run needs; its hash is the run id."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    mesh: MeshConfig = field(default_factory=MeshConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)  # empty: not a fine-tune
    name: str = ""

    def validate(self) -> None:
        self.model.validate()
        self.data.validate()
        check_vocab(self.model.vocab_size, self.data.run_tokenizer())
        self.train.validate()
        self.eval.validate()
        self.mesh.validate()
        self.finetune.validate()
        for section in ("data", "train", "eval"):  # numpy's generators take no negative seed
            if getattr(self, section).seed < 0:
                raise ConfigError(f"{section}.seed", "must be >= 0", "use e.g. 0")

    @property
    def steps(self) -> int:
        return self.train.tokens // (self.train.batch_size * self.model.seq_len)

    @property
    def tokens_trained(self) -> int:
        """The exact number of tokens the run sees (the budget rounded down to whole steps)."""
        return self.steps * self.train.batch_size * self.model.seq_len

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def run_config(data: dict) -> RunConfig:
    """A validated RunConfig from a plain dict (as read from YAML or JSON)."""
    cfg = build(RunConfig, data)
    cfg.validate()
    return cfg


def model_fields(name: str, where: str = "model") -> dict:
    """The model fields of a ladder rung named where a model is given (`model: s3`)."""
    if name not in zoo.LADDER:
        raise ConfigError(
            where,
            f"unknown size {name!r}",
            f"use one of {', '.join(zoo.LADDER)} (scaling/zoo.py) or a mapping of model fields",
        )
    return zoo.shape(name)
