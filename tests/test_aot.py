"""Compiling for a TPU v5e and an H100 without them (grokjax.aot): slots that fit, the bytes a
run-step reads on a TPU, and the compiled HLO that made the fused first-layer kernel pointless.

These need the accelerators' compilers (pip install -e '.[dev,aot]': libtpu and the CUDA
plugin, no hardware) and are skipped without them. Compiling for a TPU takes 30-60 s per small
program on two cores; every TPU compile runs in this one process (libtpu locks itself to it).
"""

from importlib.util import find_spec
from pathlib import Path

import jax
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from grokjax import aot, api, cli, engine, plan
from grokjax.train import make_train

WD = Path(__file__).parents[1] / "sweeps" / "wd.toml"
needs_libtpu = pytest.mark.skipif(find_spec("libtpu") is None,
                                  reason="compiling for a TPU needs libtpu: grokjax[aot]")
needs_cuda_plugin = pytest.mark.skipif(
    find_spec("jax_cuda12_plugin") is None,
    reason="compiling for an H100 needs the CUDA plugin: grokjax[aot]")
# XLA's bytes per run-step of the gather layout on a v5e at the wd bucket (Z_23, K=512, n=264),
# as the issue measured it (48.3 MiB by this project's count, which is 50.6 MB): the TPU layout
# must read at most a third of it.
WD_BYTES_BEFORE = 48.2e6


@needs_libtpu
def test_the_wd_sweep_fits_a_v5e_and_reads_a_third_of_the_gather_layouts_bytes():
    report = aot.check(WD, "tpu-v5e", progress=False)
    [bucket] = report.buckets
    assert report.fits and bucket.slots == bucket.runs == 56
    assert bucket.memory_bytes <= report.memory_budget == 8 * 2**30
    assert bucket.run_step_bytes <= WD_BYTES_BEFORE / 3
    assert bucket.run_step_flops / bucket.run_step_bytes >= 1.35
    assert 0 < bucket.roofline_fraction(aot.TARGETS["tpu-v5e"]) < 1
    table = report.table()
    assert "TPU v5 lite" in table and "819 GB/s" in table and " yes " in table


@needs_libtpu
def test_the_slots_for_ten_thousand_wd_runs_compile_for_a_v5e_and_fit_its_hbm():
    """The whole share (10,003 runs) is refused by the compiler, and the count its message
    implies is compiled and fits half the HBM: no line through 1- and 2-slot probes (which on
    a v5e gives 1 byte per run)."""
    [bucket] = plan.plan_runs(api.sweep_spec(WD, overrides={"seed": {"range": [1, 1430]}}))
    mesh = aot.target_mesh("tpu-v5e")
    layout = engine.layout_for("tpu")
    programs = {}
    budget = aot.TARGETS["tpu-v5e"].hbm_bytes // 2
    per_device, memory = engine.size_slots(bucket, len(bucket.runs), mesh, programs, budget,
                                           layout)
    assert len(bucket.runs) == 10_003 and 1_000 < per_device < 10_003 and memory <= budget
    assert isinstance(programs[engine.program_key(bucket, 10_003, layout)], engine.Refused)
    assert isinstance(programs[engine.program_key(bucket, per_device, layout)], engine.Program)


def stored(hlo: str, shape: str) -> list[str]:
    """The instructions of the entry computation whose result has ``shape``: arrays written to
    memory (a fusion's inner values never are)."""
    entry = hlo[hlo.index("\nENTRY"):]
    entry = entry[:entry.index("\n}")]
    return [line for line in entry.splitlines()
            if f"= {shape}{{" in line and " parameter(" not in line]


@needs_cuda_plugin
def test_on_an_h100_xla_stores_sigma_h_and_its_gradient_only():
    """Why the Pallas first-layer kernel went: XLA:GPU fuses the gather of W's rows, their sum
    and σ into one pass, so of the (n, K) arrays a step stores only σ(h) and dF = g·Vᵀ; h and
    σ'(h)·dF are never written (the kernel stored one more)."""
    [bucket] = plan.plan_runs(api.sweep_spec(WD))
    mesh = aot.target_mesh("h100")
    layout = engine.layout_for(mesh.devices.flat[0].platform)
    assert layout == engine.Layout(None, False)
    fns = make_train(bucket.static, layout.onehot)
    hparams, split, keys, _, task = engine.abstract_inputs(bucket, 8, mesh)
    state = engine.abstract_state(fns, hparams, keys, NamedSharding(mesh, P("runs")))
    step = jax.jit(engine.on_devices(fns.step, 3, mesh, layout.runs_per_batch))
    hlo = step.lower(state, hparams, split, task).compile().as_text()
    hidden = stored(hlo, f"f32[8,{bucket.train_rows},{bucket.static.width}]")
    assert len(hidden) == 2, "\n".join(hidden)
    assert not any(" gather(" in line for line in hidden)


@needs_cuda_plugin
def test_grokjax_aot_for_an_h100_prints_memory_and_no_cost(capsys):
    assert cli.main(["aot", str(WD), "--target", "h100", "--slots", "8"]) == 0
    out = capsys.readouterr().out
    assert "NVIDIA H100" in out and "3,350 GB/s" in out and " yes " in out
    assert "no cost analysis" in out
    assert cli.main(["aot", str(WD), "--target", "h100", "--slots", "0"]) == 2
