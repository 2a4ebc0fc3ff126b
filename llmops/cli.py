"""`llmops COMMAND` (or `python -m llmops COMMAND`): the one command line behind the Makefile targets and scripts.

The stack's own commands (setup, start, stop, restart, status, health, logs, show-key) are handled here; the
commands of the parts (traffic, backend serve, dashboard serve|screenshot, requests export, proxy check|launch) hand the
rest of the command line to that part's own parser, so `llmops traffic --help` is the generator's help.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable

import requests

from . import settings as settings_module
from .errors import StackError
from .health import probe_proxy_detail
from .proxy.key import redact
from .stack import Stack, bootstrap, envfile, probe


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def cmd_status(stack: Stack, args: argparse.Namespace) -> int:
    rows = stack.status()
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        header = f"{'SERVICE':<15}{'STATE':<21}{'PID':>8}  {'ADDRESS':<22}{'UPTIME':>8}  {'HEALTH':<8}{'LATENCY':>9}  DETAIL"
        print(header)
        for r in rows:
            latency = f"{r['latency_ms']:.1f}ms" if r["latency_ms"] is not None else "-"
            health = "ok" if r["healthy"] else ("skipped" if r["optional"] and not r["healthy"] else "FAIL")
            print(f"{r['name']:<15}{r['state']:<21}{r['pid'] or '-':>8}  {r['address']:<22}"
                  f"{_uptime(r['uptime_s']):>8}  {health:<8}{latency:>9}  {r['health']}")
        _print_models(stack)
        changed = stack.changed_settings() if stack.supervisor.running() else []
        if changed:
            print(f"note: the running stack was started with other settings ({'; '.join(changed)}); "
                  "`make start` or `make restart` applies these")
    return 0 if all(r["healthy"] for r in rows if not r["optional"]) else 1


def _print_models(stack: Stack) -> None:
    """Routed by the proxy vs present on the backends, one line a model (mismatches named)."""
    import requests

    from .stack import modelview

    view = modelview.stack_models(stack.settings, requests.Session())
    print("\n" + modelview.STATUS_HEADER)
    for line in modelview.status_lines(view):
        print(line)


def cmd_health(stack: Stack, args: argparse.Namespace) -> int:
    services = {s.name: s for s in stack.services()}
    if args.service not in services:
        print(f"error: unknown service {args.service!r}; expected one of {', '.join(services)}", file=sys.stderr)
        return 2
    service = services[args.service]
    health = probe(service, stack.key)
    latency = f" in {health.latency_ms:.1f} ms" if health.latency_ms is not None else ""
    print(f"{service.name} at {service.address}: {'healthy' if health.ok else 'UNHEALTHY'}{latency}: {health.detail}")
    if service.name == "litellm" and health.ok:
        print("LiteLLM's own /health (a real generation per deployment; detail only):")
        detail = probe_proxy_detail(requests, service.url, stack.key, timeout=60)
        if detail.data.get("healthy_count") is None:
            print(f"  /health did not answer: {redact(detail.detail, stack.key)}")
        else:
            print(f"  healthy deployments: {detail.data['healthy_count']}, unhealthy: {detail.data['unhealthy_count']}")
            for item in detail.data.get("unhealthy_endpoints", []):
                print(f"  unhealthy: {item['model']} at {item['api_base']}: {redact(item['error'][:160], stack.key)}")
    return 0 if health.ok else 1


def cmd_logs(stack: Stack, args: argparse.Namespace) -> int:
    names = [args.service] if args.service else [s.name for s in stack.services() if s.kind == "supervised"]
    for name in names:
        print(f"==> {stack.log_path(name)} <==")
        print(stack.log_tail(name, args.lines))
    if args.follow and args.service:
        path = stack.log_path(args.service)
        with path.open(errors="replace") as handle:
            handle.seek(0, 2)
            try:
                while True:
                    line = handle.readline()
                    if line:
                        print(redact(line.rstrip("\n"), stack.key), flush=True)
                    else:
                        time.sleep(0.3)
            except KeyboardInterrupt:
                return 0
    return 0


def _with_env(stack: Stack) -> Stack:
    """start and restart create .env with a fresh key when it is missing (then read the settings again)."""
    if envfile.ensure(stack.settings.env_file):
        print(f"wrote {stack.settings.env_file} (mode 0600): a new LITELLM_MASTER_KEY and ALERT_RECEIVER_TOKEN where unset")
        return Stack(settings_module.load())
    return stack


def cmd_setup(stack: Stack, args: argparse.Namespace) -> int:
    return 0 if bootstrap.setup(stack.settings, with_test_tools=args.test_tools) else 1


def cmd_start(stack: Stack, args: argparse.Namespace) -> int:
    stack = _with_env(stack)
    started = time.monotonic()
    stack.start(args.service)
    print(f"ready in {time.monotonic() - started:.1f} s; dashboard: {stack.settings.dashboard_url}")
    return 0


def cmd_stop(stack: Stack, args: argparse.Namespace) -> int:
    stack.stop(args.service)
    return 0


def cmd_restart(stack: Stack, args: argparse.Namespace) -> int:
    _with_env(stack).restart(args.service)
    return 0


def cmd_show_key(stack: Stack, args: argparse.Namespace) -> int:
    print(stack.settings.litellm_master_key)
    return 0


def run(main: Callable[[], int | None]) -> None:
    """sys.exit(main()), except that a closed stdout (`... | head -1`) ends the program without a traceback.

    This is the recipe of Python's signal module docs ("Note on SIGPIPE"): point stdout at devnull so the
    interpreter's final flush cannot fail again, and exit 1.
    """
    try:
        code = main()
        sys.stdout.flush()  # inside the try: a pipe closed early fails here, not at interpreter exit
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
    sys.exit(code)


def _traffic(argv: list[str]) -> int:
    from .traffic.cli import main as traffic_main

    return traffic_main(argv)


def _backend_serve(argv: list[str]) -> int:
    from .backend.serve import main as serve_main

    return serve_main(argv)


def _dashboard_serve(argv: list[str]) -> int:
    from .dashboard import main as dashboard_main

    dashboard_main(argv)
    return 0


def _dashboard_screenshot(argv: list[str]) -> int:
    from .dashboard.screenshot import main as screenshot_main

    return screenshot_main(argv)


def _requests_export(argv: list[str]) -> int:
    from .requestlog.export import main as export_main

    return export_main(argv)


def _proxy_check(argv: list[str]) -> int:
    """Validate the proxy's config file (default: litellm_config.yaml); errors name the file and line."""
    from pathlib import Path

    from .errors import ConfigError
    from .proxy import config

    parser = argparse.ArgumentParser(prog="llmops proxy check", description=_proxy_check.__doc__)
    parser.add_argument("file", nargs="?", type=Path, default=config.CONFIG, help=f"default: {config.CONFIG.name}")
    args = parser.parse_args(argv)
    try:
        config.validate(args.file)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.file}: ok")
    return 0


def _proxy_launch(argv: list[str]) -> int:
    """Validate, render with this run's settings and exec the LiteLLM proxy (what the supervisor runs)."""
    from .errors import ConfigError
    from .proxy import launch

    argparse.ArgumentParser(prog="llmops proxy launch", description=_proxy_launch.__doc__).parse_args(argv)
    try:
        launch.launch(settings_module.load())
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _alerts_check(argv: list[str]) -> int:
    """Render Alertmanager's config from .env into a temporary folder and run `amtool check-config` on it."""
    import tempfile
    from pathlib import Path

    from .errors import ConfigError
    from .render import alertmanager_config as amconfig

    argparse.ArgumentParser(prog="llmops alerts check", description=_alerts_check.__doc__).parse_args(argv)
    if amconfig.amtool() is None:
        print("amtool not installed: Alertmanager's config not checked (make setup installs it)")
        return 0
    try:
        settings = settings_module.load()
        with tempfile.TemporaryDirectory() as folder:
            settings.values["LLMOPS_STATE_DIR"] = str(Path(folder))
            print(amconfig.check(amconfig.write(settings), settings))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _alerts_test(argv: list[str]) -> int:
    """Send a test alert through Alertmanager to every receiver and say, per receiver, whether it went out."""
    import requests

    from .alerts import selftest
    from .durations import promql_seconds
    from .errors import ConfigError, ServiceError
    from .render import alertmanager_config as amconfig

    parser = argparse.ArgumentParser(prog="llmops alerts test", description=_alerts_test.__doc__)
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds to wait for every receiver (default: ALERT_GROUP_WAIT + 30)")
    args = parser.parse_args(argv)
    try:
        settings = settings_module.load()
        if not settings.alertmanager_enabled:
            print("Alertmanager is off (ALERTMANAGER_ENABLED=false): no alert is sent anywhere", file=sys.stderr)
            return 1
        receivers = selftest.integrations(amconfig.render(settings))
        timeout = args.timeout if args.timeout is not None else promql_seconds(settings.values["ALERT_GROUP_WAIT"]) + 30
        print(f"sending {selftest.TEST_ALERT} through {settings.alertmanager_url} to "
              f"{', '.join(name for name, _ in receivers)} (waiting up to {timeout:g} s)")
        results = selftest.run(requests.Session(), settings.alertmanager_url, receivers,
                               settings.log_dir / "alertmanager.log", timeout,
                               lambda text: amconfig.redact(text, settings))
    except (ConfigError, ServiceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for r in results:
        word = {True: "sent", False: "FAILED", None: "UNKNOWN"}[r.ok]
        print(f"  {r.receiver:<10} {r.integration:<8} {word}{': ' + r.reason if r.reason else ''}")
    return 0 if all(r.ok for r in results) else 1


def _gpu_probe(argv: list[str]) -> int:
    from .telemetry.gpuprobe import main as probe_main

    return probe_main(argv)


def _settings_table(argv: list[str]) -> int:
    """Print the README's settings table from settings.SETTINGS; --write rewrites it in README.md (or FILE)."""
    from pathlib import Path

    from .errors import ConfigError

    parser = argparse.ArgumentParser(prog="llmops settings table", description=_settings_table.__doc__)
    parser.add_argument("--write", nargs="?", type=Path, const=settings_module.ROOT / "README.md", metavar="FILE",
                        help="rewrite the table between the README's markers in place (default: README.md)")
    args = parser.parse_args(argv)
    if args.write is None:
        print(settings_module.markdown_table())
        return 0
    try:
        text = args.write.read_text()
        new = settings_module.with_table(text)
    except (OSError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if new != text:
        args.write.write_text(new)
    print(f"{args.write}: settings table {'rewritten' if new != text else 'already current'}")
    return 0


# Commands whose arguments belong to a part's own parser: (command, subcommand or None) -> handler(argv).
PARTS: dict[tuple[str, str | None], tuple[Callable[[list[str]], int], str]] = {
    ("traffic", None): (_traffic, "the traffic generator (`llmops traffic --help`)"),
    ("backend", "serve"): (_backend_serve, "run the embedded Ollama-compatible backend"),
    ("dashboard", "serve"): (_dashboard_serve, "serve the dashboard under waitress"),
    ("dashboard", "screenshot"): (_dashboard_screenshot, "save a screenshot of the running dashboard (headless Chromium)"),
    ("requests", "export"): (_requests_export, "write the proxy's request log as JSON Lines"),
    ("proxy", "check"): (_proxy_check, "validate litellm_config.yaml (or FILE)"),
    ("proxy", "launch"): (_proxy_launch, "validate, render and exec the LiteLLM proxy"),
    ("gpu", "probe"): (_gpu_probe, "print what NVML reads from the NVIDIA GPUs as JSON (--metrics: the /metrics text)"),
    ("settings", "table"): (_settings_table, "print the README's settings table (--write rewrites README.md)"),
    ("alerts", "check"): (_alerts_check, "render Alertmanager's config from .env and run amtool check-config on it"),
    ("alerts", "test"): (_alerts_test, "send a test alert to every receiver and report, per receiver, whether it went out"),
}


def _part(argv: list[str]) -> tuple[Callable[[list[str]], int], list[str]] | None:
    """The part's handler and its own arguments when argv names one of PARTS, else None."""
    if not argv:
        return None
    if (argv[0], None) in PARTS:
        return PARTS[(argv[0], None)][0], argv[1:]
    if len(argv) > 1 and (argv[0], argv[1]) in PARTS:
        return PARTS[(argv[0], argv[1])][0], argv[2:]
    return None


def parser() -> argparse.ArgumentParser:
    """The subcommands behind the Makefile targets; each names its handler."""
    top = argparse.ArgumentParser(prog="llmops", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    setup = sub.add_parser("setup", help="create .env and install system programs")
    setup.add_argument("--test-tools", action="store_true", help="also install what the tests need (Chromium)")
    setup.set_defaults(func=cmd_setup)
    for name, func in (("start", cmd_start), ("stop", cmd_stop), ("restart", cmd_restart)):
        sub.add_parser(name).add_argument("service", nargs="?")
        sub.choices[name].set_defaults(func=func)
    status = sub.add_parser("status")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)
    health = sub.add_parser("health")
    health.add_argument("service")
    health.set_defaults(func=cmd_health)
    logs = sub.add_parser("logs")
    logs.add_argument("service", nargs="?")
    logs.add_argument("-n", "--lines", type=int, default=50)
    logs.add_argument("-f", "--follow", action="store_true")
    logs.set_defaults(func=cmd_logs)
    sub.add_parser("show-key").set_defaults(func=cmd_show_key)
    parts: dict[str, list[str]] = {}
    for (command, subcommand), (_, help_text) in PARTS.items():
        parts.setdefault(command, []).append(f"{subcommand}: {help_text}" if subcommand else help_text)
    for command, helps in parts.items():
        sub.add_parser(command, help="; ".join(helps), add_help=False)  # parsed by the part itself (see main)
    return top


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    part = _part(argv)
    if part is not None:
        handler, rest = part
        try:
            return handler(rest)
        except StackError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    if argv and argv[0] in {command for command, _ in PARTS}:
        wanted = [sub for command, sub in PARTS if command == argv[0]]
        print(f"usage: llmops {argv[0]} {{{','.join(wanted)}}} ...", file=sys.stderr)
        return 2
    args = parser().parse_args(argv)
    try:
        return args.func(Stack(settings_module.load()), args)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    run(main)
