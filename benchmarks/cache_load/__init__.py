"""Cache benchmark: the gateway's edge cache beside storage direct and nginx's proxy_cache.

    python -m benchmarks.cache_load [--quick] [--setting NAME=VALUE] [--profile DIR]

Issue 17's measures (e) to (i) and the memory one, one gateway worker, in one run, on the
machinery of `benchmarks.gateway_load` (its storage, wrk runs, CPU meters, links): `peers`
adds the cache gateway and the nginx cache peer, `counting` the forwarder that counts storage
requests, `trace` the policy simulation, `objects` the bulk uploads, `run` is the plan of one
run and `report` prints the tables. benchmarks/README.md says how to read the figures.
"""
