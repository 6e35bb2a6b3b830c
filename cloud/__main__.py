"""``scripts/cloud up|down|status|smoke``: a real OpenStack cloud on simulated XenServer hosts.

``up`` starts, from this checkout's virtualenv and the system's packages,
MariaDB, RabbitMQ, Keystone, Glance, Placement, Nova's API, conductor and
scheduler, Neutron's API and RPC server, a xapisim process with N hosts, and
per host a nova-compute with ``compute_driver = xenapi.XenAPIDriver``; it
waits for all of them, registers an image, a flavor and a provider network,
and writes ``clouds.yaml`` and ``openrc``.  A second ``up`` resumes the same
state directory.  ``down`` stops what ``up`` started, by pid, and deletes
the state directory unless ``--keep-state``.  ``check`` is up, smoke and down
in one, as the tests run it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from . import computes, configs, control_plane, infra, processes, resources
from .state import State

#: every service in start order; down stops them in reverse
CONTROL = ["mariadb", "epmd", "rabbitmq", "keystone", "glance", "placement", "nova-api",
           "nova-conductor", "nova-scheduler", "nova-novncproxy", "neutron-api",
           "neutron-rpc-server"]


def service_names(state: State) -> list[str]:
    hosts = sorted(p.stem for p in state.run.glob("compute-*.pid"))  # with their agents
    return [*CONTROL, "xapisim", *hosts]


def _step(what: str, fn, *args):
    t = time.monotonic()
    print(f"  {what} ...", end="", flush=True)
    result = fn(*args)
    print(f" {time.monotonic() - t:.1f} s", flush=True)
    return result


def up(state: State, hosts: int) -> int:
    state.make()
    print(f"cloud: state in {state.root}", flush=True)
    _step("MariaDB", infra.start_mariadb, state)
    _step("RabbitMQ", infra.start_rabbitmq, state)
    _step("Keystone (and its catalog)", control_plane.start_keystone, state)
    _step("Glance, Placement, Nova API/conductor/scheduler, Neutron API/RPC",
          control_plane.start_services, state)
    _step(f"xapisim with {hosts} hosts, xenapi-bootstrap, nova-compute per host",
          computes.start_computes, state, hosts)
    _step("every nova-compute reporting in", computes.wait_for_computes, state, hosts)
    _step("image, flavor, provider network", resources.ensure, state)
    path = configs.clouds_yaml(state)
    print(f"cloud: up. clouds.yaml: {path} (cloud nova-xenapi); openrc: {state.root / 'openrc'}")
    print(f"  export OS_CLIENT_CONFIG_FILE={path} OS_CLOUD=nova-xenapi; openstack server list")
    return 0


def down(state: State, keep_state: bool) -> int:
    if not state.root.exists():
        print(f"cloud: nothing at {state.root}")
        return 0
    names = service_names(state)
    infra = [n for n in names if n in ("mariadb", "epmd", "rabbitmq")]
    # the OpenStack services and the simulated hosts first, all at once; then the message bus
    # and the database they were using
    for group in ([n for n in names if n not in infra], ["rabbitmq", "epmd"], ["mariadb"]):
        for name in processes.stop_all(state, group):
            print(f"  stopped {name}")
    if not keep_state:
        shutil.rmtree(state.root)
        print(f"cloud: down; {state.root} removed")
    else:
        print(f"cloud: down; state kept in {state.root} (up resumes it)")
    return 0


def secrets_in_logs(state: State) -> list[str]:
    """Log files that hold any of the cloud's generated passwords (there must be none)."""
    values = json.loads((state.root / "secrets.json").read_text()).values()
    hits = []
    for log in sorted(state.logs.glob("*.log")) + sorted(state.data.rglob("*.log")):
        text = log.read_text(errors="replace")
        hits += [str(log) for v in values if v in text][:1]
    return hits


def check(state: State, hosts: int) -> int:
    """up, smoke and down in one go, as the tests run it: down always runs, and the logs are
    searched for the generated passwords before the state goes."""
    code = 1
    try:
        code = up(state, hosts)
        if code == 0:
            from . import smoke
            code = smoke.run(state)
        leaked = secrets_in_logs(state)
        if leaked:
            print(f"cloud check: a password is in {', '.join(leaked)}", file=sys.stderr)
            code = 1
    finally:
        down(state, keep_state=code != 0)
    return code


def status(state: State) -> int:
    if not state.root.exists():
        print(f"cloud: no cloud at {state.root}")
        return 1
    missing = 0
    for name in service_names(state):
        pid = processes.running(state, name)
        missing += pid is None
        print(f"  {name:<20} {'running, pid ' + str(pid) if pid else 'STOPPED'}")
    return 1 if missing else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/cloud", description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=("up", "down", "status", "smoke", "check"),
                    help="check: up, smoke, look for passwords in the logs, down (state kept "
                         "for a look if anything failed)")
    ap.add_argument("--state-dir", type=Path, default=Path(".cloud"))
    ap.add_argument("--hosts", type=int, default=2, help="simulated XenServer hosts (up)")
    ap.add_argument("--keep-state", action="store_true", help="down: keep the state directory")
    args = ap.parse_args(argv)
    state = State(args.state_dir)
    try:
        if args.command == "up":
            return up(state, args.hosts)
        if args.command == "down":
            return down(state, args.keep_state)
        if args.command == "status":
            return status(state)
        if args.command == "check":
            return check(state, args.hosts)
        from . import smoke
        return smoke.run(state)
    except (processes.NotReady, RuntimeError) as exc:
        print(f"\ncloud: {args.command} failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
