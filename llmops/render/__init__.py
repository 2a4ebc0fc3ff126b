"""Config renderers: Prometheus's config, Alertmanager's and supervisord's (the proxy's own is llmops.proxy.config)."""
