"""What a traffic run leaves behind: its request lines, summary, kept folder, reports and comparisons.

The one way in. The load side (config, arrivals, engine, client, stats) writes a run through `RunWriter`
(told about the run once, as a `RunSpec`) and prints its summary with `text`; readers (the dashboard, the
command line's --compare) read kept runs with `list_runs`, `load_run`, `resolve_ref` and `read_records`.
Nothing here imports the load side.
"""
from . import compare, text
from .folder import (
    COMPARISONS,
    FILES,
    FORMAT,
    REPORT_FILE,
    REQUESTS_FILE,
    RUN_FILE,
    RUN_NAME,
    SUMMARY_FILE,
    StoredRun,
    default_dir,
    dir_of,
    headline,
    list_runs,
    load_run,
    read_records,
    resolve_ref,
    shown_path,
)
from .summary import PERCENTILES, SUMMARY_FORMAT, distribution, outcome_counts, percentile
from .writer import RunSpec, RunWriter, write_report

__all__ = ["COMPARISONS", "FILES", "FORMAT", "PERCENTILES", "REPORT_FILE", "REQUESTS_FILE", "RUN_FILE", "RUN_NAME",
           "SUMMARY_FILE", "SUMMARY_FORMAT", "RunSpec", "RunWriter", "StoredRun", "compare", "default_dir", "dir_of", "distribution",
           "headline", "list_runs", "load_run", "outcome_counts", "percentile", "read_records", "resolve_ref", "shown_path", "text",
           "write_report"]
