"""The simulated dom0's Open vSwitch and links, for the dom0 commands xapisim provides.

When the dom0 runs a real Open vSwitch (xapisim's ``real_ovs``: its
``/var/run/openvswitch`` then holds ``db.sock``), ``ovs-vsctl``, ``ovs-ofctl``
and ``ovs-appctl`` are the real tools, pointed at that dom0 through
``OVS_RUNDIR``; see ``xapisim/dom0_ovs.py``.  Otherwise state lives in
``<dom0>/etc/openvswitch/conf.json``.  Only a subset of each
tool is simulated; anything else exits 1 saying so, rather than pretending.
Output and error texts follow the real tools for what is covered.
"""

import json
import os
import sys


def _root():
    return os.environ.get("XAPISIM_DOM0_ROOT", "/")


def _path():
    return os.path.join(_root(), "etc/openvswitch/conf.json")


def exec_real_ovs(tool):
    """Become the real ``tool`` for this dom0's switch, if it has one; else return."""
    rundir = os.path.join(_root(), "var/run/openvswitch")
    if not os.path.exists(os.path.join(rundir, "db.sock")):
        return
    real = os.path.realpath(rundir)
    env = dict(os.environ, OVS_RUNDIR=real, OVS_DBDIR=os.path.join(_root(), "etc/openvswitch"),
               OVS_LOGDIR=os.path.join(_root(), "var/log/openvswitch"))
    for d in ("/usr/bin", "/usr/sbin"):
        path = os.path.join(d, tool)
        if os.path.exists(path):
            os.execve(path, [tool] + sys.argv[1:], env)
    sys.stderr.write(f"{tool}: not installed on this machine\n")
    sys.exit(127)


def load():
    try:
        with open(_path()) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {"bridges": {}, "managers": [], "flows": {}}


def save(state):
    os.makedirs(os.path.dirname(_path()), exist_ok=True)
    tmp = _path() + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
    os.replace(tmp, _path())


def _fail(tool, message, code=1):
    sys.stderr.write(f"{tool}: {message}\n")
    return code


def ovs_vsctl(argv):
    state = load()
    out = []
    commands, current = [], []
    for a in argv:
        if a == "--":
            commands.append(current)
            current = []
        elif a.startswith("--timeout") or a in ("--no-wait", "-t"):
            continue
        else:
            current.append(a)
    commands.append(current)
    for cmd in [c for c in commands if c]:
        opts = {a for a in cmd if a.startswith("--")}
        words = [a for a in cmd if not a.startswith("--")]
        name, args = words[0], words[1:]
        bridges = state["bridges"]
        if name == "add-br":
            if args[0] in bridges and "--may-exist" not in opts:
                return _fail("ovs-vsctl", f"cannot create a bridge named {args[0]} because a bridge "
                             f"named {args[0]} already exists")
            bridges.setdefault(args[0], {"ports": []})
        elif name == "del-br":
            if args[0] not in bridges:
                if "--if-exists" in opts:
                    continue
                return _fail("ovs-vsctl", f"no bridge named {args[0]}")
            del bridges[args[0]]
            state["flows"].pop(args[0], None)
        elif name == "br-exists":
            if args[0] not in bridges:
                return 2
        elif name == "list-br":
            out += sorted(bridges)
        elif name == "add-port":
            br, port = args[0], args[1]
            if br not in bridges:
                return _fail("ovs-vsctl", f"no bridge named {br}")
            if port in bridges[br]["ports"]:
                if "--may-exist" not in opts:
                    return _fail("ovs-vsctl", f"cannot create a port named {port} because a port "
                                 f"named {port} already exists on bridge {br}")
            else:
                bridges[br]["ports"].append(port)
        elif name == "del-port":
            port = args[-1]
            hit = [b for b, r in bridges.items() if port in r["ports"]]
            if not hit:
                if "--if-exists" in opts:
                    continue
                return _fail("ovs-vsctl", f"no port named {port}")
            bridges[hit[0]]["ports"].remove(port)
        elif name == "list-ports":
            if args[0] not in bridges:
                return _fail("ovs-vsctl", f"no bridge named {args[0]}")
            out += sorted(bridges[args[0]]["ports"])
        elif name == "get-manager":
            out += state["managers"]
        elif name == "set-manager":
            state["managers"] = list(args)
        elif name == "del-manager":
            state["managers"] = []
        else:
            return _fail("ovs-vsctl", f"'{name}' is not simulated by xapisim")
    save(state)
    sys.stdout.write("".join(line + "\n" for line in out))
    return 0


def ovs_ofctl(argv, stdin):
    state = load()
    words = [a for a in argv if not a.startswith("-") or a == "-"]
    if len(words) < 2:
        return _fail("ovs-ofctl", "missing command or bridge")
    name, br = words[0], words[1]
    if br not in state["bridges"]:
        return _fail("ovs-ofctl", f"{br} is not a bridge or a socket")
    flows = state["flows"].setdefault(br, [])
    if name == "dump-flows":
        sys.stdout.write("NXST_FLOW reply (xid=0x4):\n" + "".join(f" {f}\n" for f in flows))
        return 0
    if name == "add-flow":
        flows.append(words[2])
    elif name == "add-flows":
        source = stdin if words[2:] == ["-"] else ""
        flows += [line.strip() for line in source.splitlines() if line.strip()]
    elif name == "del-flows":
        state["flows"][br] = [] if len(words) == 2 else [f for f in flows if words[2] not in f]
    else:
        return _fail("ovs-ofctl", f"'{name}' is not simulated by xapisim")
    save(state)
    return 0


def ip(argv):
    words = [a for a in argv if not a.startswith("-")]
    if not words or words[0] not in ("link", "addr", "address") or words[1:2] not in ([], ["show"]):
        return _fail("ip", f"'{' '.join(argv)}' is not simulated by xapisim")
    names = ["lo", "eth0", "xenbr0", "xenapi"] + sorted(load()["bridges"])
    if "dev" in words:
        dev = words[words.index("dev") + 1]
        if dev not in names:
            return _fail("ip", f'Device "{dev}" does not exist.')
        names = [dev]
    for i, n in enumerate(names, 1):
        sys.stdout.write(f"{i}: {n}: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 state UP\n")
    return 0
