"""The benchmarks: each module is run as `python -m bench.NAME` from the checkout (`make bench` runs them all) and
writes bench/results/NAME.json through bench._report; modules named _*.py are their helpers, not benchmarks."""
