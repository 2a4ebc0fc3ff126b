"""`python -m llmops COMMAND`: the stack commands behind the Makefile targets."""
from __future__ import annotations

import argparse
import json
import sys
import time

import requests

from . import bootstrap
from . import settings as settings_module
from .errors import StackError
from .stack import Stack, redact


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

    from . import modelview

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
    from .stack import probe

    health = probe(service, stack.key)
    latency = f" in {health.latency_ms:.1f} ms" if health.latency_ms is not None else ""
    print(f"{service.name} at {service.address}: {'healthy' if health.ok else 'UNHEALTHY'}{latency}: {health.detail}")
    if service.name == "litellm" and health.ok:
        print("LiteLLM's own /health (a real generation per deployment; detail only):")
        try:
            body = requests.get(service.url + "/health", headers={"Authorization": f"Bearer {stack.key}"},
                                timeout=60).json()
            print(f"  healthy deployments: {body.get('healthy_count')}, unhealthy: {body.get('unhealthy_count')}")
            for item in body.get("unhealthy_endpoints", []):
                print(f"  unhealthy: {item.get('model')} at {item.get('api_base')}: "
                      f"{redact(str(item.get('error', ''))[:160], stack.key)}")
        except (requests.RequestException, ValueError) as exc:
            print(f"  /health did not answer: {type(exc).__name__}")
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llmops", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("setup", help="create .env and install system programs").add_argument(
        "--test-tools", action="store_true", help="also install what the tests need (Chromium)")
    for name in ("start", "stop", "restart"):
        sub.add_parser(name).add_argument("service", nargs="?")
    sub.add_parser("status").add_argument("--json", action="store_true")
    sub.add_parser("health").add_argument("service")
    logs = sub.add_parser("logs")
    logs.add_argument("service", nargs="?")
    logs.add_argument("-n", "--lines", type=int, default=50)
    logs.add_argument("-f", "--follow", action="store_true")
    sub.add_parser("show-key")
    args = parser.parse_args(argv)
    try:
        settings = settings_module.load()
        if args.command == "setup":
            return 0 if bootstrap.setup(settings, with_test_tools=args.test_tools) else 1
        if args.command in ("start", "restart"):
            from . import envfile

            if envfile.ensure(settings.env_file):
                print(f"created {settings.env_file} (mode 0600) with a new LITELLM_MASTER_KEY")
                settings = settings_module.load()
        stack = Stack(settings)
        if args.command == "start":
            started = time.monotonic()
            stack.start(args.service)
            print(f"ready in {time.monotonic() - started:.1f} s; dashboard: {settings.dashboard_url}")
            return 0
        if args.command == "stop":
            stack.stop(args.service)
            return 0
        if args.command == "restart":
            stack.restart(args.service)
            return 0
        if args.command == "status":
            return cmd_status(stack, args)
        if args.command == "health":
            return cmd_health(stack, args)
        if args.command == "logs":
            return cmd_logs(stack, args)
        if args.command == "show-key":
            print(settings.litellm_master_key)
            return 0
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
