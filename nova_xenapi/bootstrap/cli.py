"""``xenapi-bootstrap``: make a XenServer 8 / XCP-ng 8.3 host ready for nova-xenapi.

Run it from the compute VM (or anywhere for independent compute) with the
connection options; it reaches XAPI over HTTPS and dom0 as root over SSH
(host key checked), and then, step by step: checks the SR type against the
image handler, installs or upgrades the dom0 plugins, links ``/images`` and
``/boot/guest`` into the local SR, gives the compute VM its HIMN interface,
opens OVSDB on port 6640 for neutron's agent, and writes the ``[xenserver]``
part of nova.conf and the ``[xenapi]`` part of neutron's configuration.

``--check`` only reports (exit 1 if anything is missing), ``--dry-run`` says
what it would do; a second run changes nothing.  Kolla-style deployments call
it as their single bootstrap step.
"""

from __future__ import annotations

import argparse
import os
import sys
from urllib.parse import urlsplit

from nova_xenapi import transport
from nova_xenapi.bootstrap import steps
from nova_xenapi.bootstrap.dom0_ssh import Dom0, HostKeyRefused
from nova_xenapi.conf import IMAGE_HANDLERS
from nova_xenapi.errors import HostConnectionError, XenAPIError
from nova_xenapi.session import XenAPISession


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xenapi-bootstrap", description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True, help="XAPI URL of the host or pool master")
    p.add_argument("--username", default="root")
    p.add_argument("--password-file", help="file holding the root password (else $XENAPI_PASSWORD)")
    p.add_argument("--ca-file")
    p.add_argument("--certificate-thumbprint")
    p.add_argument("--no-verify", action="store_true", help="do not verify the host's TLS certificate")
    p.add_argument("--ssh-host", help="dom0's address for SSH (default: the URL's host)")
    p.add_argument("--ssh-port", type=int, default=22)
    p.add_argument("--known-hosts", help="known_hosts file with dom0's host key")
    p.add_argument("--host-key-fingerprint", help="dom0's SSH host key, as SHA256:...")
    p.add_argument("--compute-vm-uuid", help="this compute VM (default: /sys/hypervisor/uuid; "
                   "none means independent compute, without HIMN)")
    p.add_argument("--image-handler", default="direct_vhd", choices=IMAGE_HANDLERS)
    p.add_argument("--integration-bridge", default="br-int")
    p.add_argument("--nova-conf", help="nova.conf to write [xenserver] into")
    p.add_argument("--neutron-conf", help="neutron agent config to write [xenapi] into")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="report what is missing; change nothing")
    mode.add_argument("--dry-run", action="store_true", help="say what would be done; change nothing")
    return p


def _password(args: argparse.Namespace) -> str:
    if args.password_file:
        with open(args.password_file) as f:
            return f.read().strip()
    password = os.environ.get("XENAPI_PASSWORD")
    if password is None:
        raise SystemExit("xenapi-bootstrap: give --password-file or set XENAPI_PASSWORD")
    return password


def _compute_vm(args: argparse.Namespace) -> str | None:
    if args.compute_vm_uuid:
        return args.compute_vm_uuid
    try:
        with open("/sys/hypervisor/uuid") as f:
            return f.read().strip()
    except OSError:
        return None


def run(args: argparse.Namespace, out=sys.stdout) -> int:
    password = _password(args)
    tls = transport.TLSPolicy(verify=not args.no_verify, ca_file=args.ca_file,
                              thumbprint=args.certificate_thumbprint)
    try:
        session = XenAPISession(args.url, args.username, password, concurrent=1, tls=tls,
                                originator="xenapi-bootstrap")
        dom0 = Dom0(args.ssh_host or urlsplit(args.url).hostname, args.ssh_port, password,
                    known_hosts=args.known_hosts, fingerprint=args.host_key_fingerprint)
    except (XenAPIError, HostConnectionError, HostKeyRefused, OSError) as exc:
        print(f"xenapi-bootstrap: {exc}", file=out)
        return 2
    vm = _compute_vm(args)
    nova = {"connection_url": args.url, "connection_username": args.username,
            "connection_password": password, "image_handler": args.image_handler,
            "ovs_integration_bridge": args.integration_bridge,
            "independent_compute": "False" if vm else "True"}
    if vm is None:
        # the driver refuses check_host with independent compute (there is no compute VM to check)
        nova["check_host"] = "False"
    if args.certificate_thumbprint:
        nova["certificate_thumbprint"] = args.certificate_thumbprint
    if args.ca_file:
        nova["ca_file"] = args.ca_file
    neutron = {"connection_url": args.url, "connection_username": args.username,
               "connection_password": password}
    for key in ("certificate_thumbprint", "ca_file"):
        if key in nova:  # xenapi-root-helper checks the host's certificate as the driver does
            neutron[key] = nova[key]
    ctx = steps.Context(session, dom0, args.image_handler, vm)
    missing = unfixable = 0
    try:
        for step in steps.all_steps(args.nova_conf, nova, args.neutron_conf, neutron):
            problem = step.check(ctx)
            if problem is None:
                print(f"ok        {step.name}", file=out)
                continue
            missing += 1
            if step.fix is None:
                unfixable += 1
                print(f"ERROR     {step.name}: {problem}", file=out)
            elif args.check:
                print(f"MISSING   {step.name}: {problem}", file=out)
            elif args.dry_run:
                print(f"WOULD FIX {step.name}: {problem}", file=out)
            else:
                step.fix(ctx)
                again = step.check(ctx)
                if again:
                    unfixable += 1
                    print(f"ERROR     {step.name}: still wrong after fixing: {again}", file=out)
                else:
                    print(f"FIXED     {step.name}: {problem}", file=out)
    finally:
        dom0.close()
        session.close()
    if vm is None:
        print("note: no compute VM (not a Xen guest): independent compute, no HIMN step", file=out)
    if args.check:
        return 1 if missing else 0
    return 1 if unfixable else 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
