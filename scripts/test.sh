#!/usr/bin/env bash
# Set up .venv and run the test suite. The NB201 tests read the table shipped with grabnas
# (src/grabnas/benchmarks/tables/), or $GRABNAS_NB201 when it is set.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
exec .venv/bin/python -m pytest "$@"
