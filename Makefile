# grokjax: `make sweep-wd` and `make test` work on a fresh machine (they create .venv first).
# CI (.ci/run) runs `make test` on the oldest supported jax and, in a second environment
# (VENV=.venv-newest PYTHON=python3.12 ACCEL=aot), `make test aot-check` on the newest.
# On a GPU host: `make sweep-wd SCALE=paper ACCEL=cuda`; on every worker of a TPU VM pod slice:
# `make sweep-wd SCALE=paper ACCEL=tpu DISTRIBUTED=1` (see README, "Running on GPU and TPU").

PYTHON ?= python3
VENV ?= .venv
SCALE ?= default
ACCEL ?=
RESULTS ?= results
DISTRIBUTED ?=
comma := ,
EXTRAS := dev$(if $(ACCEL),$(comma)$(ACCEL))
BIN := $(VENV)/bin
# DISTRIBUTED=1: every worker of a multi-host job trains its share (jax.distributed)
SWEEP_FLAGS := --scale $(SCALE) --results $(RESULTS)$(if $(DISTRIBUTED), --distributed)
STAMP := $(VENV)/.installed-$(or $(ACCEL),cpu)

SWEEPS := $(basename $(notdir $(wildcard sweeps/*.toml)))
.PHONY: install test lint bench aot-check plan fit report clean $(addprefix sweep-,$(SWEEPS))

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests examples

# make sweep-<name> [SCALE=paper]: runs sweeps/<name>.toml into results/<name> (results/<name>-paper
# at paper scale): wd, ratio, width, irrep, groktime, fig3, lr, optim, depth, topv, zeroinit
$(addprefix sweep-,$(SWEEPS)): sweep-%: $(STAMP)
	$(BIN)/grokjax sweep sweeps/$*.toml $(SWEEP_FLAGS)

# make fit|report [SWEEP=ratio]: every results directory when SWEEP is not given
SWEEP ?=
SWEEP_DIRS = $(if $(SWEEP),$(RESULTS)/$(SWEEP),$(patsubst %/,%,$(dir $(wildcard $(RESULTS)/*/_plan.json))))

fit: $(STAMP)
	@for d in $(SWEEP_DIRS); do echo "## $$d"; $(BIN)/grokjax fit $$d || exit 1; done

report: $(STAMP)
	@for d in $(SWEEP_DIRS); do $(BIN)/grokjax report $$d || exit 1; done

# Throughput of the training call (benchmarks/README.md); writes benchmarks/out/bench.{md,csv}
bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py

# The accelerator path without the hardware (CI, with ACCEL=aot: libtpu and the CUDA plugin):
# the wd sweep for a TPU v5e and an H100, and its paper-scale bucket for a v5e. Each command is
# one process at a time: libtpu locks itself to the process that loads it.
aot-check: $(STAMP)
	$(BIN)/grokjax aot sweeps/wd.toml --target tpu-v5e
	$(BIN)/grokjax aot sweeps/wd.toml --target h100
	$(BIN)/grokjax aot sweeps/wd.toml --scale paper --target tpu-v5e

plan: $(STAMP)
	$(BIN)/grokjax plan sweeps/$(or $(NAME),wd).toml --scale $(SCALE)

clean:
	rm -rf $(VENV) .venv-newest .pytest_cache .ruff_cache src/*.egg-info
