"""The package's layout: imports run one way (the layer table below; llmops/__init__.py draws it), and Flask stays
inside the dashboard."""
from __future__ import annotations

import ast
from pathlib import Path

from tests.support.env import ROOT

PACKAGE = ROOT / "llmops"

# Higher layers may import lower ones (and their own layer), never the other way round:
# scripts/bench -> dashboard, cli -> stack -> render, traffic, backend, telemetry, requestlog -> health -> settings, errors.
# The proxy package spans two layers: its pure parts (key, metrics list, counts, config) sit beside health, which
# uses them; its process entry (launch) and the plug-ins LiteLLM loads (plugins) are entry points at the top.
LAYERS: dict[str, int] = {
    "llmops.dashboard": 5,
    "llmops.cli": 5,
    "llmops.__main__": 5,
    "llmops.proxy.launch": 5,
    "llmops.proxy.plugins": 5,
    "llmops.stack": 4,
    "llmops.render": 3,
    "llmops.traffic": 3,
    "llmops.backend": 3,
    "llmops.telemetry": 3,
    "llmops.requestlog": 3,
    "llmops.alerts": 3,
    "llmops.health": 2,
    "llmops.outcomes": 2,
    "llmops.proxy": 2,
    "llmops.settings": 1,
    "llmops.errors": 1,
    "llmops.polling": 1,
    "llmops.durations": 1,
    "llmops": 1,  # the package's own __init__
}
FLASK = ("flask", "werkzeug", "jinja2")


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int | None:
    """The layer of the longest LAYERS entry that module is, or lies in."""
    for name in sorted(LAYERS, key=len, reverse=True):
        if module == name or module.startswith(name + "."):
            return LAYERS[name]
    return None


def imports(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, absolute module) for every import in the file, function-level ones included."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from . import x` imports the module x: judge x, not only the package.
            found += [(node.lineno, f"{target}.{alias.name}" if not node.module else target) for alias in node.names]
    return found


def package_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer():
    unplaced = [module_name(p) for p in package_files() if layer_of(module_name(p)) is None]
    assert unplaced == [], f"add these to LAYERS in tests/test_layout.py (see ARCHITECTURE.md): {unplaced}"


def test_imports_never_reach_a_layer_above():
    violations = []
    for path in package_files():
        own = layer_of(module_name(path))
        for line, target in imports(path):
            if not target.startswith("llmops"):
                continue
            theirs = layer_of(target)
            if theirs is not None and own is not None and theirs > own:
                violations.append(f"{path.relative_to(ROOT)}:{line}: {module_name(path)} (layer {own}) "
                                  f"imports {target} (layer {theirs})")
    assert violations == []


def test_flask_is_imported_only_by_the_dashboard():
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {target}"
        for path in package_files()
        if not module_name(path).startswith("llmops.dashboard")
        for line, target in imports(path)
        if target.split(".")[0] in FLASK
    ]
    assert offenders == []


def test_the_checker_sees_an_upward_import(tmp_path):
    """The rule can fail: a health module importing the stack (relative) and the dashboard (in a function)."""
    (tmp_path / "llmops").mkdir()
    bad = tmp_path / "llmops" / "health.py"
    bad.write_text("from .stack import Stack\nfrom . import settings\n\ndef f():\n    from llmops.dashboard import app\n")
    found = imports(bad, root=tmp_path)
    assert found == [(1, "llmops.stack"), (2, "llmops.settings"), (5, "llmops.dashboard")]
    assert [layer_of(t) > layer_of("llmops.health") for _, t in found] == [True, False, True]


def test_the_stack_does_not_import_telemetry():
    """Lifecycle runs node_exporter (its command line lives in stack/services.py) but never reads telemetry."""
    found = [f"{p.relative_to(ROOT)}:{line}" for p in sorted((PACKAGE / "stack").rglob("*.py"))
             for line, target in imports(p) if target.startswith("llmops.telemetry")]
    assert found == []


def module_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Each module of the package -> the package's modules it imports (function-level imports included); a name
    imported from a package that is itself a module (`from . import routes`) counts as that module."""
    files = {module_name(p, root): p for p in sorted((root / "llmops").rglob("*.py"))}

    def known(target: str) -> str | None:
        while target and target not in files:
            target = target.rpartition(".")[0]
        return target or None

    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str | None] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {known(alias.name) for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([node.module] if node.module else []))
                found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in files else known(base) for a in node.names}
        graph[name] = {t for t in found if t and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles: each set of two or more modules that reach one another, sorted."""
    reach = {m: set() for m in graph}
    for start in graph:
        todo = list(graph[start])
        while todo:
            nxt = todo.pop()
            if nxt in graph and nxt not in reach[start]:
                reach[start].add(nxt)
                todo += graph[nxt]
    circles = {tuple(sorted({m} | {o for o in reach[m] if m in reach.get(o, ())})) for m in graph if m in reach[m]}
    return sorted(list(c) for c in circles)


def test_the_package_has_no_import_cycle():
    """No module reaches itself through the package's imports, function-level ones included: the backend's server
    imports its routes and the routes never the server; a package's __init__ re-exports and is never imported back."""
    assert cycles(module_graph()) == []


def test_the_cycle_check_sees_a_circle_through_a_function_level_import(tmp_path):
    (tmp_path / "llmops" / "part").mkdir(parents=True)
    (tmp_path / "llmops" / "__init__.py").write_text("")
    (tmp_path / "llmops" / "part" / "__init__.py").write_text("from .a import f\n")
    (tmp_path / "llmops" / "part" / "a.py").write_text("def f():\n    from . import b\n")
    (tmp_path / "llmops" / "part" / "b.py").write_text("from llmops.part import a\n")
    (tmp_path / "llmops" / "part" / "c.py").write_text("from . import a, b\n")
    assert cycles(module_graph(tmp_path)) == [["llmops.part.a", "llmops.part.b"]]


def test_the_traffic_results_never_import_the_load_side():
    """llmops/traffic/results/ (what a run leaves behind) is told about a run through RunSpec and reads
    documents; it never reaches back into the load side (config, engine, client, stats, ...)."""
    results = PACKAGE / "traffic" / "results"
    found = [f"{p.relative_to(ROOT)}:{line}: {target}" for p in sorted(results.rglob("*.py"))
             for line, target in imports(p)
             if target.startswith("llmops.traffic") and not target.startswith("llmops.traffic.results")]
    assert found == []


def test_the_traffic_results_have_one_way_in():
    """Outside llmops/traffic/results/ the package is imported as a whole (its __init__ says what it offers),
    never one of its modules by path."""
    results = PACKAGE / "traffic" / "results"
    found = [f"{p.relative_to(ROOT)}:{line}: {target}" for p in package_files() if results not in p.parents
             for line, target in imports(p) if target.startswith("llmops.traffic.results.")]
    assert found == []


def test_pyproject_asks_for_the_python_the_code_is_written_for():
    """The package uses 3.11's standard library (tomllib, datetime.UTC, ...); pip must refuse older Pythons."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["requires-python"] == ">=3.11"
    assert project["tool"]["ruff"]["target-version"] == "py311"
    assert "sys.version_info < (3, 11)" in (ROOT / "scripts" / "setup.sh").read_text()


def test_no_module_edits_sys_path():
    """bench/ and the tests import the package and tests/support as modules (run from the checkout, python -m)."""
    edit = "sys.path." + "insert"
    found = [str(path.relative_to(ROOT)) for top in ("llmops", "bench", "scripts", "tests") for path in
             (ROOT / top).rglob("*.py") if edit in path.read_text() or "sys.path." + "append" in path.read_text()]
    assert found == []


def test_every_benchmark_is_a_module_of_the_bench_package():
    import importlib

    names = sorted(p.stem for p in (ROOT / "bench").glob("*.py") if not p.stem.startswith("_"))
    assert {"proxy_overhead", "traffic_generator", "backend"} <= set(names)
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        assert callable(getattr(module, "main", None)), name
    assert not (ROOT / "bench" / "benchfmt.py").exists()  # renamed _report: bench.sh runs no helper


def test_bench_results_are_written_by_a_benchmark_and_meet_their_goals():
    """Each committed bench/results/NAME.json comes from bench/NAME.py (no stale file), no goal name carries an
    issue number, and every figure with a goal meets it."""
    import json
    import re

    for path in sorted((ROOT / "bench" / "results").glob("*.json")):
        doc = json.loads(path.read_text())
        assert (ROOT / "bench" / f"{doc['benchmark']}.py").exists() and path.stem == doc["benchmark"], path.name
        for name, m in doc["metrics"].items():
            assert not re.search(r"issue_?\d+", name), (path.name, name)
            if m.get("goal") is not None:
                met = m["value"] <= m["goal"] if m["better"] == "lower" else m["value"] >= m["goal"]
                assert met, (path.name, name, m["value"], m["goal"])


# Units of goals that are same-run ratios or counts; any other goal must be a bound that is itself the feature.
RATIO_UNITS = {"ratio", "x", "cosine"}
COUNT_UNITS = {"requests", "faults", "records", "responses", "processes or ports", "imports/request"}
FEATURE_BOUNDS = {
    ("backend", "ready_s"): "seconds from start to ready",
    ("backend_models", "cold_load_smollm2_s"): "seconds until a model first answers: its readiness",
    ("backend_models", "cold_load_gemma3_s"): "seconds until a model first answers: its readiness",
    ("dashboard", "kill_backend_to_red_s"): "seconds from a dead backend to a red card",
    ("lifecycle", "start_to_ready_s"): "seconds from make start to all ready",
    ("lifecycle", "status_s"): "seconds a user waits for make status",
    ("lifecycle", "stop_s"): "seconds a user waits for make stop",
    ("reliability", "worst_detection_s"): "seconds from a fault to the dashboard saying so",
    ("reliability", "max_rss_growth_mb"): "a leak guard over a soak, not a speed",
    ("priority", "high_ttft_p50_queue_on_s"): "a bound computed in the same run (idle TTFT + one low request's service)",
    ("priority", "added_latency_p50_ms"): "the queue issue's own goal: a paired same-run difference, <= 0.2 ms",
}


def test_every_bench_goal_is_a_same_run_ratio_a_count_or_a_named_feature_bound():
    """The speed of code is judged against a baseline measured in the same run; an absolute goal stays only where
    the bound is the feature (FEATURE_BOUNDS says why, one line each), and none of those is stale."""
    import json

    absolute, seen = [], set()
    for path in sorted((ROOT / "bench" / "results").glob("*.json")):
        doc = json.loads(path.read_text())
        for name, m in doc["metrics"].items():
            # A goal missed in the run is kept in the baseline text (bench/_report.judged): still a goal, not stale.
            missed = m.get("goal") is None and "MISSED in this run" in str(m.get("baseline") or "")
            if (m.get("goal") is None and not missed) or m["unit"] in RATIO_UNITS | COUNT_UNITS:
                continue
            seen.add((doc["benchmark"], name))
            if (doc["benchmark"], name) not in FEATURE_BOUNDS:
                absolute.append(f"{path.name}: {name} ({m['unit']})")
    assert absolute == []
    assert sorted(set(FEATURE_BOUNDS) - seen) == []
