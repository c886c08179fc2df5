"""``python -m grabnas.cli ...``: the same as ``grabnas ...``."""

import sys

from grabnas.cli import main

sys.exit(main())
