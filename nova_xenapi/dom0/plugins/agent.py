#!/usr/bin/env python3
"""nova-xenapi dom0 plugin: requests to the guest agent through the guest's XenStore.

The protocol of the old XenServer driver's agent: the request
``{"name": ..., "value": ...}`` (JSON) is written at
``/local/domain/<dom_id>/data/host/<id>``; the agent answers
``{"returncode": ..., "message": ...}`` at ``.../data/guest/<id>``. The
plugin waits up to ``timeout`` seconds for the answer, removes both nodes,
and returns the answer as JSON; a guest that does not answer in time gets
its request taken back and the failure ``AGENT_TIMEOUT``. Only dom0's
``xenstore-read``/``-write``/``-rm`` are run, never a shell.
"""

import json
import re
import subprocess
import time

import dom0_pluginlib
import XenAPIPlugin

_ID = re.compile(r"\A[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_B64 = re.compile(r"\A[A-Za-z0-9+/=\n]*\Z")
POLL = 0.2
MAX_VALUE = 1 << 20  # XenStore values are small; an injected file is at most this (base64)


def _xenstore(*argv):
    try:
        return subprocess.check_output(["xenstore-" + argv[0], *argv[1:]],
                                       stderr=subprocess.DEVNULL).decode().strip()
    except subprocess.CalledProcessError:
        return None


def _request(args, name, value):
    request_id = dom0_pluginlib.arg(args, "id")
    if not _ID.match(request_id):
        dom0_pluginlib.invalid("id", request_id, "not a lowercase UUID")
    dom_id = dom0_pluginlib.int_arg(args, "dom_id", 1, 2 ** 31 - 1)
    timeout = dom0_pluginlib.int_arg(args, "timeout", 1, 3600)
    base = f"/local/domain/{dom_id}/data"
    request, reply = base + "/host/" + request_id, base + "/guest/" + request_id
    if _xenstore("write", request, json.dumps({"name": name, "value": value})) is None:
        raise XenAPIPlugin.Failure("AGENT_UNREACHABLE", [str(dom_id)])
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            answer = _xenstore("read", reply)
            if answer is not None:
                json.loads(answer)  # a guest's garbage is not passed on as an answer
                return answer
            time.sleep(POLL)
    except ValueError:
        raise XenAPIPlugin.Failure("AGENT_BAD_ANSWER", [str(dom_id), name]) from None
    finally:
        _xenstore("rm", request)
        _xenstore("rm", reply)
    raise XenAPIPlugin.Failure("AGENT_TIMEOUT", [str(dom_id), name, str(timeout)])


def _b64_arg(args, name):
    value = dom0_pluginlib.arg(args, name)
    if len(value) > MAX_VALUE or not _B64.match(value):
        dom0_pluginlib.invalid(name, value, f"not base64 of at most {MAX_VALUE} bytes")
    return value


def version(session, args):
    return _request(args, "version", "agent")


def key_init(session, args):
    pub = dom0_pluginlib.arg(args, "pub")  # a Diffie-Hellman public number: up to 2**128
    if not re.match(r"\A[1-9][0-9]{0,38}\Z", pub) or int(pub) >= 2 ** 128:
        dom0_pluginlib.invalid("pub", pub, "not a decimal number below 2**128")
    return _request(args, "keyinit", pub)


def password(session, args):
    return _request(args, "password", _b64_arg(args, "enc_pass"))


def inject_file(session, args):
    value = json.dumps({"b64_path": _b64_arg(args, "b64_path"),
                        "b64_contents": _b64_arg(args, "b64_contents")})
    return _request(args, "inject_file", value)


def resetnetwork(session, args):
    return _request(args, "resetnetwork", "")


def agent_update(session, args):
    url = dom0_pluginlib.arg(args, "url")
    md5sum = dom0_pluginlib.arg(args, "md5sum")
    if not re.match(r"\Ahttps?://[!-~]{1,2000}\Z", url):
        dom0_pluginlib.invalid("url", url, "not an http(s) URL")
    if not re.match(r"\A[0-9a-f]{32}\Z", md5sum):
        dom0_pluginlib.invalid("md5sum", md5sum, "not an MD5 digest")
    return _request(args, "agentupdate", f"{url},{md5sum}")


if __name__ == "__main__":
    XenAPIPlugin.dispatch({"version": version, "key_init": key_init, "password": password,
                           "inject_file": inject_file, "resetnetwork": resetnetwork,
                           "agent_update": agent_update})
