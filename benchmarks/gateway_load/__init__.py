"""Gateway load benchmark: the gateway beside its peers, loaded with wrk on 127.0.0.1.

    python -m benchmarks.gateway_load [--quick] [--setting NAME=VALUE] [--profile DIR]

One SeaweedFS storage; in front of it, in the same run, the peers of `processes` (storage
direct, the gateway with one and with two workers, nginx, a bare TCP forwarder). Jobs:
`processes` starts and stops them, `measure` loads them with wrk and reads CPU and memory
from /proc, `objects` makes the objects and links, `run` is the plan of one run and `report`
prints the tables. benchmarks/README.md says how to read the figures.
"""
