"""One process of tests/test_multihost.py: joins a jax.distributed job from the SCALING_*
environment (2 processes × 2 simulated CPU devices on 127.0.0.1), builds only its own rows of
every batch and trains the shared tiny model. Prints one JSON line."""

import json
import sys

import jax

from scaling import distributed, sharding

cluster = distributed.initialize_distributed()  # before any other jax call

import shard_cases as case  # noqa: E402  (imports jax modules that must follow initialize)

from scaling.config import MeshConfig  # noqa: E402
from scaling.mesh import batch_sharding, make_mesh  # noqa: E402
from scaling.train import initial_state, train_step  # noqa: E402

MESHES = {
    "dp4": MeshConfig(data=4),  # data parallel within and across processes
    "fsdp2_tp2": MeshConfig(data=1, fsdp=2, tensor=2),  # parameters split across processes
}
GLOBAL_SHAPE = (case.CFG.train.batch_size, case.MODEL.seq_len + 1)


def main() -> dict:
    out = {
        "cluster": [cluster.source, cluster.process_id, cluster.num_processes],
        "main": distributed.is_main_process(),
        "devices": [jax.device_count(), jax.local_device_count()],
        "losses": {},
        "rows": {},
        "param_sum": {},
    }
    for name, mesh_cfg in MESHES.items():
        mesh = make_mesh(mesh_cfg)
        params = sharding.param_shardings(case.MODEL, mesh)
        state_sh = sharding.state_shardings(jax.eval_shape(case.state0), params)
        state = sharding.init_sharded(lambda: initial_state(case.CFG), state_sh)
        step = sharding.shard_train_step(train_step, mesh, state_sh)

        def batch(i, mesh=mesh):
            return distributed.process_batch(case.rows, i, mesh, GLOBAL_SHAPE)

        state, out["losses"][name] = case.train(step, state, range(case.STEPS), batch)
        whole = distributed.fetch(state)
        out["param_sum"][name] = float(sum(x.sum() for x in jax.tree.leaves(whole)))
        rows = distributed.process_rows(batch_sharding(mesh), GLOBAL_SHAPE)
        out["rows"][name] = rows.tolist()
    return out


if __name__ == "__main__":
    case.use_compilation_cache()
    print(json.dumps(main()))
    sys.stdout.flush()
    jax.distributed.shutdown()
