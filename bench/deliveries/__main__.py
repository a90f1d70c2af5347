"""`python -m bench.deliveries`: the benchmark, or one of its child roles."""

import sys

from bench.deliveries.cli import main

sys.exit(main())
