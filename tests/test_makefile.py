"""The Makefile: `make help` is the default and lists every target make knows, each with its description;
every service has its five targets from its one `$(call service,...)` line, each calling its llmops command."""
import re
import shutil
import subprocess

from tests.support import makefile
from tests.support.env import ROOT

FIXED = ("help", "setup", "start", "stop", "restart", "status", "logs", "show-key", "test", "lint", "bench",
         "soak", "clean", "traffic-quick", "traffic", "load-test", "compare", "requests-export", "screenshot",
         "gpu-probe")


def undocumented(root=ROOT) -> set[str]:
    """Targets make knows that `make help` does not list with a description."""
    entries = makefile.help_entries(root)
    return {t for t in makefile.targets(root) if not entries.get(t)}


def test_help_is_the_default():
    plain = subprocess.run(["make", "-s"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert plain == subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True,
                                   check=True).stdout


def test_every_target_is_in_help_with_its_description():
    entries = makefile.help_entries()
    assert undocumented() == set()
    assert set(entries) == makefile.targets(), "make help lists a target make does not know"
    assert set(FIXED) <= set(entries)


def test_every_service_has_its_five_targets_in_help():
    services = makefile.services()
    assert {"ollama", "litellm", "prometheus", "alertmanager", "dashboard"} <= set(services)
    entries = makefile.help_entries()
    missing = [f"{verb}-{s}" for s in services for verb in makefile.VERBS if not entries.get(f"{verb}-{s}")]
    assert missing == []
    assert entries["start-dashboard"] == "Start the dashboard (on :3001)"
    assert entries["stop-litellm"] == "Stop the LiteLLM proxy if this stack started it"
    assert entries["health-prometheus"] == "Probe Prometheus's /-/ready"


def test_each_service_target_runs_its_own_llmops_command():
    for service in makefile.services():
        for verb in makefile.VERBS:
            commands = makefile.recipe(f"{verb}-{service}").splitlines()
            assert commands[-1] == f".venv/bin/python -m llmops {verb} {service}", (verb, service, commands)


def test_the_checks_can_fail(tmp_path):
    """An undocumented target is found; a service line added makes all five targets, listed and running."""
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    text = (tmp_path / "Makefile").read_text()
    text = text.replace("export SERVICE_HELP", "$(eval $(call service,toy,the toy,Probe the toy))\n"
                                                "export SERVICE_HELP")
    (tmp_path / "Makefile").write_text(text + "\nundescribed:\n\t@true\n")
    assert undocumented(tmp_path) == {"undescribed"}
    assert makefile.services(tmp_path)[-1] == "toy"
    entries = makefile.help_entries(tmp_path)
    assert [entries[f"{verb}-toy"] for verb in makefile.VERBS] == [
        "Start the toy", "Stop the toy if this stack started it", "Restart the toy", "Probe the toy",
        "Show the log of the toy"]
    assert makefile.recipe("logs-toy", tmp_path).splitlines()[-1] == ".venv/bin/python -m llmops logs toy"
    assert not re.search(r"^\s*undescribed\s", "\n".join(entries), re.M)
