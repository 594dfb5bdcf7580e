"""HTTP semantics the gateway applies itself (ranges, conditional requests), kept free of I/O.

Pure functions over header strings and object metadata, so every rule is testable without a
server and the request handlers stay thin.
"""
