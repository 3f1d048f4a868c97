"""A slow node for tests/test_ray.py: on PYTHONPATH of a Ray node's processes, it makes every
training segment this process runs GROKJAX_TEST_SLOWDOWN times slower (it sleeps factor - 1
times the segment's own duration after it), so the node's speed is known whatever else loads
the machine's cores."""

import dataclasses
import importlib.abc
import importlib.util
import os
import sys
import time

FACTOR = float(os.environ.get("GROKJAX_TEST_SLOWDOWN", "1"))


def _slow_down(engine) -> None:
    compile_program = engine.compile_program

    def compile_slow(*args, **kwargs):
        program = compile_program(*args, **kwargs)

        def segment(*inputs):
            start = time.perf_counter()
            outputs = program.segment(*inputs)  # state, metrics, kept weights
            engine.jax.block_until_ready(outputs)
            time.sleep((FACTOR - 1) * (time.perf_counter() - start))
            return outputs

        return dataclasses.replace(program, segment=segment)

    engine.compile_program = compile_slow


class _AfterEngine(importlib.abc.MetaPathFinder):
    """Patches grokjax.engine as soon as it is imported."""

    def find_spec(self, name, path, target=None):
        if name != "grokjax.engine":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            _slow_down(module)

        spec.loader.exec_module = exec_module
        return spec


if FACTOR > 1:
    sys.meta_path.insert(0, _AfterEngine())
