#!/usr/bin/env bash
# Set up .venv and run the test suite. The NB201 table is read from $GRABNAS_NB201,
# defaulting to ../shared/data/nb201 beside the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
if [ -z "${GRABNAS_NB201:-}" ] && [ -f ../shared/data/nb201/nb201_accuracies.csv ]; then
  export GRABNAS_NB201="$(cd ../shared/data/nb201 && pwd)"
fi
exec .venv/bin/python -m pytest "$@"
