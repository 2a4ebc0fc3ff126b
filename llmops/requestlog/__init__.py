"""The request log: a LiteLLM callback that records every request through the proxy in a local SQLite file.

`callback` runs inside the proxy (one writer thread per worker), `store` owns the schema and queries,
`writer` batches rows off the request path, `status` tells the dashboard whether the log is degraded.
"""
