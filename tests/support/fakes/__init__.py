"""FAKES, named as such: stand-ins for Ollama, the stack, NVML and the traffic generator's server, for unit tests
and fault injection."""
