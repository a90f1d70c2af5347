"""`python -m bench.ingest`: the benchmark, or one of its child roles."""

import sys

from bench.ingest.cli import main

sys.exit(main())
