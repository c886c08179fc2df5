#!/usr/bin/env bash
# Set up .venv, check the import layers (lint-imports, contracts in pyproject.toml) and ruff
# (lint and format), then run the test suite. The NB201 tests read the table shipped with grabnas
# (src/grabnas/benchmarks/tables/), or $GRABNAS_NB201 when it is set. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
.venv/bin/lint-imports --no-cache
.venv/bin/ruff check src tests benchmarks examples
.venv/bin/ruff format --check src tests benchmarks examples
exec .venv/bin/python -m pytest "$@"
