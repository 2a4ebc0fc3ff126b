"""All the project knows about LiteLLM: its config (validate, render), launch (argv, environment, the process
entry with its GC collector), the key (header, redaction, key file), the metrics list it exports, exact request
counts from its counter, and the plug-ins the proxy loads (plugins/)."""
