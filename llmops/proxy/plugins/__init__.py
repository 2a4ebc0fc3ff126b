"""LiteLLM plug-ins of the stack's own, loaded by the proxy from `litellm_settings.callbacks`."""
