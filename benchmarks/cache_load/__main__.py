"""`python -m benchmarks.cache_load`: see benchmarks/cache_load/cli.py."""

from benchmarks.cache_load.cli import main

raise SystemExit(main())
