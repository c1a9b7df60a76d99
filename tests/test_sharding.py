"""scaling.mesh and scaling.sharding: meshes, the logical→mesh rules, and sharded training on 8
simulated CPU devices (a subprocess: the device count is fixed when jax starts) matching one
device."""

import jax
import numpy as np
import pytest
import shard_cases as case
from jax.sharding import PartitionSpec as P

from scaling import distributed, sharding
from scaling.config import ConfigError, MeshConfig, ModelConfig, RunConfig, TrainConfig
from scaling.mesh import check_batch, constrain, fit_spec, logical_to_mesh, make_mesh, mesh_shape


def test_mesh_shape_resolves_the_free_axis_and_folds_slices_into_data():
    assert mesh_shape(MeshConfig(), 8) == {"data": 8, "fsdp": 1, "tensor": 1}
    assert mesh_shape(MeshConfig(data=2, fsdp=-1, tensor=2), 8)["fsdp"] == 2
    two_slices = MeshConfig(data=-1, fsdp=2, tensor=2, slices=2)
    assert mesh_shape(two_slices, 16) == {"data": 4, "fsdp": 2, "tensor": 2}


@pytest.mark.parametrize(
    "mesh_cfg, devices, field, fix",
    [
        (MeshConfig(data=3), 8, "mesh.data", "[1, 2, 4, 8]"),
        (MeshConfig(data=2, fsdp=2, tensor=1), 8, "mesh", "set one axis to -1"),
        (MeshConfig(data=-1, fsdp=4, tensor=4), 8, "mesh", "set one axis to -1"),
        (MeshConfig(slices=3), 8, "mesh.slices", "[1, 2, 4, 8]"),
        (MeshConfig(data=-1, fsdp=-1), 8, "mesh", "every axis but one"),
    ],
)
def test_mesh_shape_errors_name_the_field_and_valid_sizes(mesh_cfg, devices, field, fix):
    with pytest.raises(ConfigError) as e:
        mesh_shape(mesh_cfg, devices)
    assert e.value.field == field and fix in e.value.fix


def test_make_mesh_has_the_three_named_axes():
    mesh = make_mesh(MeshConfig())
    assert mesh.axis_names == ("data", "fsdp", "tensor")
    assert dict(mesh.shape) == {"data": jax.device_count(), "fsdp": 1, "tensor": 1}


def test_logical_names_map_by_the_rule_table():
    assert logical_to_mesh(("embed", "heads", "kv")) == P("fsdp", "tensor", None)
    assert logical_to_mesh(("batch", "length")) == P(("data", "fsdp"), None)
    # the tied embedding's rows take tensor and fsdp, so `embed` finds fsdp taken
    assert logical_to_mesh(("vocab", "embed")) == P(("tensor", "fsdp"), None)
    with pytest.raises(ValueError, match="no sharding rule"):
        logical_to_mesh(("nonsense",))


def test_a_dimension_the_mesh_does_not_divide_is_replicated_and_noted():
    sizes = {"data": 2, "fsdp": 4, "tensor": 2}
    spec, notes = fit_spec(P(("data", "fsdp"), "tensor"), (4, 3), sizes, "x")
    assert spec == P("data", None)  # 4 rows split over data=2 only; 3 columns whole
    assert notes == [
        "x dim 0 (length 4) not split over fsdp=4",
        "x dim 1 (length 3) not split over tensor=2",
    ]
    tiny = ModelConfig(d_model=32, n_head=2, d_ff=64)
    notes = sharding.layout_notes(tiny, {"data": 1, "fsdp": 64, "tensor": 1})
    assert "['wpe'] dim 1 (length 32) not split over fsdp=64" in notes
    specs = sharding.param_specs(tiny, {"data": 1, "fsdp": 64, "tensor": 1})
    assert specs["wpe"] == P(None, None)
    assert specs["wte"]["embedding"] == P(("tensor", "fsdp"), None)  # 256 rows split 64 ways


def test_the_batch_must_split_over_data_and_fsdp():
    cfg = RunConfig(train=TrainConfig(batch_size=12))
    check_batch(cfg, {"data": 4, "fsdp": 1, "tensor": 2})
    with pytest.raises(ConfigError, match="multiple of 8") as e:
        check_batch(cfg, {"data": 4, "fsdp": 2, "tensor": 1})
    assert e.value.field == "train.batch_size"


def test_optimizer_state_follows_the_parameters_and_counts_are_replicated():
    mesh = make_mesh(MeshConfig())
    params = sharding.param_shardings(case.MODEL, mesh)
    state = sharding.state_shardings(jax.eval_shape(case.state0), params)
    adam = state["opt_state"][1]
    assert adam.mu == params and adam.nu == params and state["params"] == params
    assert adam.count.spec == P()


def test_fetch_gives_whole_host_arrays():
    fetched = distributed.fetch({"w": jax.numpy.arange(6.0).reshape(2, 3)})
    np.testing.assert_array_equal(fetched["w"], np.arange(6.0).reshape(2, 3))


def test_constrain_is_a_no_op_outside_a_sharded_step():
    x = np.ones((2, 3))
    assert constrain(x, ("batch", "act_mlp")) is x


# --- 8 simulated devices ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def eight_devices():
    """The worker's results (it runs while this process computes the one-device reference)."""
    proc = case.run_worker("sharded_worker.py", devices=8)
    try:
        case.reference_losses()
    finally:
        result = case.results_of([proc], timeout=500)[0]
    return result


MESHES = ["dp8", "dp4_tp2", "dp2_fsdp2_tp2", "fsdp8"]


@pytest.mark.slow
@pytest.mark.parametrize("mesh", MESHES)
def test_every_mesh_gives_the_losses_of_one_device(eight_devices, mesh):
    result, _ = eight_devices
    np.testing.assert_allclose(result["losses"][mesh], case.reference_losses(), rtol=0, atol=1e-5)


@pytest.mark.slow
def test_parameters_land_where_the_rules_put_them(eight_devices):
    specs = eight_devices[0]["specs"]
    attn, mlp = "['block_0']['attn']", "['block_0']['mlp']"
    assert specs["dp2_fsdp2_tp2"][f"{attn}['qkv']['kernel']"] == "('fsdp', None, 'tensor', None)"
    assert specs["dp2_fsdp2_tp2"][f"{attn}['out']['kernel']"] == "('tensor', None, 'fsdp')"
    assert specs["dp2_fsdp2_tp2"][f"{mlp}['fc']['kernel']"] == "('fsdp', 'tensor')"
    assert specs["dp2_fsdp2_tp2"]["['wte']['embedding']"] == "(('tensor', 'fsdp'), None)"
    assert specs["fsdp8"][f"{mlp}['proj']['kernel']"] == "('tensor', 'fsdp')"
    # the same specs on every mesh; axes of size 1 leave a dp8 mesh's parameters whole
    assert specs["dp8"] == specs["fsdp8"] and eight_devices[0]["replicated"]["dp8"]
    assert not eight_devices[0]["replicated"]["fsdp8"]


@pytest.mark.slow
def test_the_step_keeps_its_layout_and_sharded_init_matches_one_device(eight_devices):
    result, _ = eight_devices
    assert result["out_shardings_kept"] and result["init_sharded_equal"]


@pytest.mark.slow
def test_sharded_evaluation_matches_one_device(eight_devices):
    assert eight_devices[0]["eval_loss"] == pytest.approx(case.reference_eval(), abs=1e-5)


@pytest.mark.slow
def test_activations_are_constrained_inside_a_sharded_step(eight_devices):
    assert eight_devices[0]["constrained_spec"] == "(('data', 'fsdp'), None, 'tensor')"


@pytest.mark.slow
def test_no_involuntary_full_rematerialization(eight_devices):
    _, stderr = eight_devices
    assert "Involuntary full rematerialization" not in stderr


@pytest.mark.slow
@pytest.mark.parametrize("onto", ["fsdp4_tp2", "one_device"])
def test_a_checkpoint_restores_onto_another_mesh_and_training_continues(eight_devices, onto):
    restored = eight_devices[0]["restored"][onto]
    assert restored["equal"] and restored["on_target"]
    np.testing.assert_allclose(restored["losses"], case.reference_losses()[3:], rtol=0, atol=1e-5)
