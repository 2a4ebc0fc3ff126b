"""Config renderers: the LiteLLM proxy's config, Prometheus's config and supervisord's."""
