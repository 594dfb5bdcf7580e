"""`python -m benchmarks.gateway_load`: see benchmarks/gateway_load/cli.py."""

from benchmarks.gateway_load.cli import main

raise SystemExit(main())
