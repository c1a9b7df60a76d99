"""Worker for tests/test_sharding.py, run with 8 simulated CPU devices: trains the shared tiny
model on several meshes, saves an orbax checkpoint on one mesh and restores it onto others.
Prints one JSON line: losses and parameter specs per mesh, and the checkpoint checks."""

import json
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import shard_cases as case

from scaling import distributed, sharding
from scaling.config import MeshConfig
from scaling.mesh import activation_layout, constrain, logical_sharding, make_mesh
from scaling.train import eval_loss, initial_state, train_step

MESHES = {
    "dp8": MeshConfig(data=8),
    "dp4_tp2": MeshConfig(data=4, tensor=2),
    "dp2_fsdp2_tp2": MeshConfig(data=2, fsdp=2, tensor=2),
    "fsdp8": MeshConfig(data=1, fsdp=8),
}
SAVED_ON, SAVE_AT = "dp2_fsdp2_tp2", 3
RESTORE_ONTO = {"fsdp4_tp2": MeshConfig(data=1, fsdp=4, tensor=2), "one_device": MeshConfig()}


def layout(mesh_cfg, devices=None):
    """(mesh, state shardings, sharded train step) for a mesh config."""
    mesh = make_mesh(mesh_cfg, devices)
    params = sharding.param_shardings(case.MODEL, mesh)
    state_sh = sharding.state_shardings(jax.eval_shape(case.state0), params)
    return mesh, state_sh, sharding.shard_train_step(train_step, mesh, state_sh)


def specs(state) -> dict:
    leaves = jax.tree_util.tree_flatten_with_path(state["params"])[0]
    return {jax.tree_util.keystr(p): str(tuple(x.sharding.spec)) for p, x in leaves}


def same_values(a, b) -> bool:
    return all(
        np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )


def constrained_spec(mesh) -> str:
    """The layout `constrain` gives an MLP activation inside a sharded step."""
    x = np.ones((8, 64, 256), np.float32)
    with activation_layout(mesh):  # jax.jit traces on this first call, inside it
        y = jax.jit(lambda x: constrain(x * 2, ("batch", "length", "act_mlp")))(x)
    return str(tuple(y.sharding.spec))


def main(checkpoint_dir: Path) -> dict:
    out = {"losses": {}, "specs": {}, "replicated": {}, "restored": {}}
    host_state = jax.device_get(
        case.state0()
    )  # numpy: device_put copies, donation cannot delete it
    manager = ocp.CheckpointManager(checkpoint_dir, options=ocp.CheckpointManagerOptions())
    for name, mesh_cfg in MESHES.items():
        mesh, state_sh, step = layout(mesh_cfg)
        if name == SAVED_ON:  # each device creates only its shards, the values of one device
            state = sharding.init_sharded(lambda: initial_state(case.CFG), state_sh)
            out["init_sharded_equal"] = same_values(state, host_state)
        else:
            state = jax.device_put(host_state, state_sh)
        state, first = case.train(step, state, range(SAVE_AT))
        if name == SAVED_ON:
            manager.save(SAVE_AT, args=ocp.args.StandardSave(state))
            manager.wait_until_finished()
            saved = jax.device_get(state)  # the step below donates `state`
        out["specs"][name] = specs(state)
        out["replicated"][name] = all(
            x.sharding.is_fully_replicated for x in jax.tree.leaves(state["params"])
        )
        state, rest = case.train(step, state, range(SAVE_AT, case.STEPS))
        out["losses"][name] = first + rest
        if name == SAVED_ON:
            evaluate = sharding.shard_eval_loss(eval_loss, mesh, state_sh["params"])
            stacked = logical_sharding(mesh, (None, "batch", "length"))
            heldout = distributed.global_array(case.heldout(), stacked)
            out["eval_loss"] = float(evaluate(state["params"], heldout, case.MODEL))
        out["out_shardings_kept"] = out.get("out_shardings_kept", True) and all(
            x.sharding == s for x, s in zip(jax.tree.leaves(state), jax.tree.leaves(state_sh))
        )
    out["constrained_spec"] = constrained_spec(make_mesh(MESHES[SAVED_ON]))
    for name, mesh_cfg in RESTORE_ONTO.items():
        devices = jax.devices()[:1] if name == "one_device" else None
        mesh, state_sh, step = layout(mesh_cfg, devices)
        target = sharding.with_shardings(jax.eval_shape(case.state0), state_sh)
        state = manager.restore(SAVE_AT, args=ocp.args.StandardRestore(target))
        on_target = all(
            x.sharding == s for x, s in zip(jax.tree.leaves(state), jax.tree.leaves(state_sh))
        )
        equal = same_values(state, saved)
        _, losses = case.train(step, state, range(SAVE_AT, case.STEPS))
        out["restored"][name] = {"equal": equal, "on_target": on_target, "losses": losses}
    manager.close()
    return out


if __name__ == "__main__":
    case.use_compilation_cache()
    assert jax.device_count() == 8, jax.devices()
    with tempfile.TemporaryDirectory() as tmp:
        result = main(Path(tmp) / "checkpoints")
    print(json.dumps(result))
    sys.stdout.flush()
