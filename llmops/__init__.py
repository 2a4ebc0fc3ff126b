"""llmops: run and watch a local LLM serving stack (Ollama or the embedded backend, LiteLLM, Prometheus, dashboard).

Where things live (each package's docstring says more):

  settings.py errors.py   typed settings from one table (SETTINGS; the README's table is generated from it) and
                          the exception tree, each class with the HTTP status the dashboard answers it with
  durations.py polling.py the duration dialects (Go, PromQL, the CLI's); the one deadline loop (poll_until)
  outcomes.py health.py   the one taxonomy of request outcomes; the probes (one rule per answer), used by
                          `make start`, `make status`, `make health-*` and the dashboard alike
  proxy/                  all the project knows about LiteLLM: config, key (header, redaction, key file),
                          metrics list, counts; launch and the plug-ins LiteLLM loads are entry points
  render/                 Prometheus's, Alertmanager's and supervisord's configs
  stack/                  lifecycle, supervisor control, services, ports, `.env`, bootstrap
  backend/ traffic/       the embedded Ollama-compatible server; the load generator (traffic/results/: what a
                          run leaves behind)
  requestlog/ telemetry/  the request log's SQLite store and writer; host and GPU readers
  dashboard/              the Flask app; Flask is imported nowhere else
  cli.py                  `llmops COMMAND`: the commands behind the Makefile targets and scripts/

Imports run one way, from the top down: scripts and bench -> dashboard, cli and the proxy's entry points ->
stack -> render, traffic, backend, telemetry, requestlog -> health, outcomes, the proxy's pure parts ->
settings, errors, polling, durations. tests/test_layout.py holds the layer table and fails on an import that
runs upward or a new top-level module without a layer.
"""

__version__ = "0.1.0"
