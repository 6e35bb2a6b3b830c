"""The fault sweep (``sweep.py``) over every server operation, through Nova's API.

Each test sweeps one or more operations and prints a line of totals for each
(also appended to ``$XENAPI_SWEEP_REPORT`` when set); ``docs/reliability.md``
keeps them. Not named ``test_*``, so that ``unittest discover`` leaves it to
a process of its own (``scripts/test`` runs it beside the other functional
tests): ``python -m unittest tests.functional.fault_sweep``.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator

from nova.tests.functional.api import client

from nova_xenapi.testing import nova_stack as base
from nova_xenapi.testing import vhd_images
from tests.functional.sweep import Operation, SweepMixin

REPORT = os.environ.get("XENAPI_SWEEP_REPORT")
#: the costliest sweeps, which the test command's workers take first (parallel.py)
COSTLIEST = ("ResizeSweepTest", "PoolMasterSweepTest")


class _SweepBase(SweepMixin, base.XenAPIFunctionalBase):
    secrets = (base.PASSWORD,)

    def report(self, *ops: Operation, part: tuple[int, int] = (0, 1)) -> None:
        """Sweep ``ops`` (together, if more than one, and ``part`` of them: see
        ``sweep_together``) and print a line of totals for each."""
        results = self.sweep_together(list(ops), part)
        for result in results:
            print("\n" + result.line())
            if REPORT:  # the README's test command prints the totals at the end
                with open(REPORT, "a") as f:
                    f.write(result.line() + "\n")
        problems = [p for result in results for p in result.problems]
        self.assertEqual([], problems, "\n".join(problems))

    # ------------------------------------------------------ boot checks
    def instance_objects(self, server: dict) -> list[str]:
        """What the host still holds for a server: its VMs and disks."""
        x = self.api_x
        name = server["OS-EXT-SRV-ATTR:instance_name"]
        vms = [r["name_label"] for r in x.VM.get_all_records().values()
               if r["name_label"].startswith(name)]
        vdis = [r["name_label"] for r in x.VDI.get_all_records().values()
                if r["other_config"].get("nova_instance_uuid") == server["id"]]
        return vms + vdis

    def boot_outcome(self, ctx: dict) -> list[str]:
        """A boot ends ACTIVE with a running VM, or ERROR with a fault and nothing on the host."""
        server = self.api.get_server(ctx["server"]["id"])
        if server["status"] == "ACTIVE":
            if self.vm_of(server)["power_state"] != "Running":
                return ["ACTIVE but its VM is not running"]
            return []
        if server["status"] != "ERROR":
            return [f"ended {server['status']}"]
        problems = []
        if not server.get("fault", {}).get("message"):
            problems.append("ERROR without a fault")
        left = self.instance_objects(server)
        if left:
            problems.append(f"a failed boot left {left} before the server was deleted")
        return problems

    def boot_operation(self, name: str, body: Callable[[], dict]) -> Operation:
        return Operation(
            name, prepare=lambda: {"body": body()},
            run=lambda ctx: ctx.update(server=self.boot(ctx["body"])),
            check=self.boot_outcome, finish=lambda ctx: self.delete(ctx["server"]))


    def uncached_spawn(self, body: Callable[[], dict]) -> Operation:
        """A boot through this stack's image handler with the image cache off, so that every
        run fetches the image through the handler: a boot from the warm cache clones the
        cached disk instead, and never reaches the handler. The calls it makes as a boot from
        the warm cache makes them, in order, are left to the sweep of that boot (the plain
        spawn's, through vdi_remote_stream)."""
        op = self.swapped(self.boot_operation(f"spawn ({self.IMAGE_HANDLER}, fetched)", body),
                          cache_images="none")
        cached = self.boot_operation(f"spawn ({self.IMAGE_HANDLER}, cached)", body)
        ctx = cached.prepare()  # the cached boot is recorded from a warm cache
        cached.run(ctx)
        cached.finish(ctx)
        op.shares_with = cached
        return op

    def swapped(self, op: Operation, **settings: object) -> Operation:
        """``op`` with this compute's spawn settings (``cache_images``, ``handler``) changed
        while it runs."""
        host = self.computes["compute"].manager.driver.host
        run = op.run

        def with_settings(ctx: dict) -> None:
            saved = {k: getattr(host, k) for k in settings}
            for k, v in settings.items():
                setattr(host, k, v)
            try:
                run(ctx)
            finally:
                for k, v in saved.items():
                    setattr(host, k, v)
        op.run = with_settings
        return op

    # ------------------------------------------- actions on a running server
    def running_server(self, image: str, **body) -> dict:
        server = self.boot(self._build_server(image_uuid=image, networks="none", **body))
        self.assertEqual("ACTIVE", server["status"], server.get("fault"))
        return {"server": server, "before": self.inventory()}

    def action(self, name: str, image: str, body: dict | Callable[[dict], None],
               check: Callable[[dict], list[str]], prepare=None,
               reusable: Callable[[dict], bool] | None = None,
               undo: dict | Callable[[dict], None] | None = None) -> Operation:
        """``body`` is a server action's body, or a function that asks Nova itself.  The
        server is used again by the next run while it is as ``prepare`` left it (ACTIVE and
        running, unless ``reusable`` says otherwise), or once ``undo`` (the opposite
        action's body, or a function) has brought it back there."""
        def run(ctx: dict) -> None:
            if callable(body):
                body(ctx)
            else:
                ctx["answer"] = self.call_api(
                    lambda: self.api.post_server_action(ctx["server"]["id"], body))
            ctx["server"] = self.settled(ctx["server"])
        return Operation(name, prepare=prepare or (lambda: self.running_server(image)), run=run,
                         check=check, finish=lambda ctx: self.delete(ctx["server"]),
                         reusable=reusable or self.in_state("ACTIVE", "Running"),
                         renew=self.asking(undo) if isinstance(undo, dict) else undo)

    def asking(self, body: dict) -> Callable[[dict], None]:
        """Ask Nova for a server action and wait until it has settled."""
        def ask(ctx: dict) -> None:
            self.api.post_server_action(ctx["server"]["id"], body)
            ctx["server"] = self.settled(ctx["server"])
        return ask

    def in_state(self, status: str, power: str) -> Callable[[dict], bool]:
        def check(ctx: dict) -> bool:
            server = self.api.get_server(ctx["server"]["id"])
            return server["status"] == status and self.vm_of(server)["power_state"] == power
        return check

    def unchanged(self, ctx: dict, made: set[str] = frozenset()) -> list[str]:
        """The host holds what it held before the action (the action makes nothing lasting
        but ``made``)."""
        now = self.inventory()
        now["VDI"] -= made
        gained = {k: v - ctx["before"][k] for k, v in now.items() if v - ctx["before"][k]}
        lost = {k: ctx["before"][k] - v for k, v in now.items() if ctx["before"][k] - v}
        out = []
        if gained:
            out.append(f"left {sorted((k, len(v)) for k, v in gained.items())} behind")
        if lost:
            out.append(f"lost {sorted((k, len(v)) for k, v in lost.items())}")
        return out

    def power_outcome(self, want: str, power: str) -> Callable[[dict], list[str]]:
        """The action reached ``want`` with the VM ``power``, or Nova shows where it is: the
        state before (ACTIVE), or ERROR with a fault; the host holds what it held."""
        def check(ctx: dict) -> list[str]:
            server = self.api.get_server(ctx["server"]["id"])
            record = self.vm_of(server)
            actual = record["power_state"]
            # a suspended VM's memory image is a VDI of its own
            out = self.unchanged(ctx, {record["suspend_VDI"]} if actual == "Suspended" else set())
            expected = {"ACTIVE": "Running", "SHUTOFF": "Halted", "PAUSED": "Paused",
                        "SUSPENDED": "Suspended", "ERROR": actual}.get(server["status"])
            if server["status"] not in (want, "ACTIVE", "ERROR"):
                out.append(f"ended {server['status']}")
            elif server["status"] == want and actual != power:
                out.append(f"{want} but its VM is {actual}")
            elif expected != actual:
                out.append(f"{server['status']} but its VM is {actual}")
            return out
        return check


    def image_status(self, image_id: str) -> str:
        try:
            if self.REAL_GLANCE:
                return vhd_images.image(self.glance_server.url, image_id)["status"]
            return self.glance.show(None, image_id)["status"]
        except Exception:  # noqa: BLE001 - Nova deletes the image of a failed snapshot
            return "deleted"

    def snapshot_operation(self, image: str) -> Operation:
        def check(ctx: dict) -> list[str]:
            out = self.power_outcome("ACTIVE", "Running")(ctx)
            answer = ctx.get("answer")
            image_id = answer.get("image_id") if isinstance(answer, dict) else None
            if image_id:
                # Glance may still be storing an upload that went through
                deadline = time.monotonic() + 30
                while (status := self.image_status(image_id)) == "saving" and \
                        time.monotonic() < deadline:
                    time.sleep(0.05)
                if status not in ("active", "deleted"):
                    out.append(f"image left {status}")
            return out
        op = self.action(f"snapshot ({self.IMAGE_HANDLER})", image,
                         {"createImage": {"name": "sweep"}}, check)
        if self.IMAGE_HANDLER != "vdi_remote_stream":
            # the same steps but the upload (snapshot.py); vdi_remote_stream's sweep fails those
            from nova_xenapi.storage.images import RemoteStreamHandler
            op.shares_with = self.swapped(
                self.action("snapshot (vdi_remote_stream)", image,
                            {"createImage": {"name": "sweep"}}, check),
                handler=RemoteStreamHandler())
        return op


class ServerSweepTest(_SweepBase):
    """Boots and actions with the default image handler (vdi_remote_stream)."""

    def setUp(self) -> None:
        super().setUp()
        self.image = self.make_image(base.image_data())

    def plain_spawn(self) -> Operation:
        return self.boot_operation("spawn (vdi_remote_stream)", lambda: self._build_server(
            image_uuid=self.image, networks="none"))

    def test_spawn_fetching_the_image(self):
        self.report(self.uncached_spawn(lambda: self._build_server(image_uuid=self.image,
                                                                   networks="none")))

    def test_spawn_with_swap_ephemeral_config_drive_and_a_port(self):
        flavor = self._create_flavor(memory_mb=512, vcpu=1, disk=1, ephemeral=1, swap=64)

        def body() -> dict:
            b = self._build_server(image_uuid=self.image, flavor_id=flavor,
                                   networks=[{"port": self.neutron.port_1["id"]}])
            b["config_drive"] = True
            return b
        op = self.boot_operation("spawn, swap+ephemeral+config drive+VIF", body)
        op.shares_with = self.plain_spawn()
        self.report(op)

    def test_spawn_ami(self):
        kernel = self.make_image(base.image_data(3, 1 << 20), "aki")
        ramdisk = self.make_image(base.image_data(5, 300 * 1024), "ari")
        image = self.make_image(base.image_data(7), "ami", kernel_id=kernel, ramdisk_id=ramdisk)
        op = self.boot_operation("spawn AMI (kernel, ramdisk)", lambda: self._build_server(
            image_uuid=image, networks="none"))
        op.shares_with = self.plain_spawn()
        self.report(op)

    def test_spawn_and_destroy(self):
        """Swept together: a boot that goes through leaves the running server that the next
        destroy run deletes."""
        def run(ctx: dict) -> None:
            # a failed delete answers 500 here: Nova's test base makes RPC casts calls
            self.call_api(lambda: self.api.delete_server(ctx["server"]["id"]))
            try:
                ctx["server"] = self.settled(ctx["server"])
            except client.OpenStackApiNotFoundException:
                ctx["gone"] = True

        def check(ctx: dict) -> list[str]:
            if ctx.get("gone"):
                return []  # what is left is counted after finish
            server = self.api.get_server(ctx["server"]["id"])
            return [] if server.get("fault") else ["a failed delete without a fault"]

        def finish(ctx: dict) -> None:
            if not ctx.get("gone"):
                self.delete(ctx["server"])  # deleting again finishes the job
        self.report(self.plain_spawn(),
                    Operation("destroy", lambda: self.running_server(self.image), run, check,
                              finish, reusable=self.in_state("ACTIVE", "Running")))

    def test_reboot(self):
        self.report(self.action("reboot (soft)", self.image, {"reboot": {"type": "SOFT"}},
                                self.power_outcome("ACTIVE", "Running")))
        self.report(self.action("reboot (hard)", self.image, {"reboot": {"type": "HARD"}},
                                self.power_outcome("ACTIVE", "Running")))

    def test_stop_and_start(self):
        """Swept together: a stop that goes through leaves the server where a start begins,
        and the other way round."""
        stop = self.action("stop", self.image, {"os-stop": None},
                           self.power_outcome("SHUTOFF", "Halted"), undo={"os-start": None})

        def stopped() -> dict:
            ctx = self.running_server(self.image)
            self.api.post_server_action(ctx["server"]["id"], {"os-stop": None})
            ctx["server"] = self.settled(ctx["server"])
            return ctx

        def start_check(ctx: dict) -> list[str]:
            server = self.api.get_server(ctx["server"]["id"])
            out = self.unchanged(ctx)
            power = self.vm_of(server)["power_state"]
            if (server["status"], power) not in (("ACTIVE", "Running"), ("SHUTOFF", "Halted"),
                                                 ("ERROR", power)):
                out.append(f"{server['status']} with its VM {power}")
            return out
        self.report(stop, self.action("start", self.image, {"os-start": None}, start_check,
                                      prepare=stopped,
                                      reusable=self.in_state("SHUTOFF", "Halted"),
                                      undo={"os-stop": None}))

    def test_snapshot(self):
        self.report(self.snapshot_operation(self.image))

    def test_rescue_and_unrescue(self):
        """Swept together: a rescue that goes through leaves the server where an unrescue
        begins, and the other way round."""
        def rescued(ctx: dict) -> list[str]:
            server = self.api.get_server(ctx["server"]["id"])
            name = server["OS-EXT-SRV-ATTR:instance_name"]
            rescue = self.api_x.VM.get_by_name_label(name + "-rescue")
            if server["status"] == "RESCUE":
                return [] if rescue else ["RESCUE without a rescue VM"]
            out = self.unchanged(ctx)
            if server["status"] not in ("ACTIVE", "ERROR"):
                out.append(f"ended {server['status']}")
            return out
        def ask_rescue(ctx: dict) -> None:
            """Rescue, and note the rescue VM it made, which unrescue must remove."""
            ctx["answer"] = self.call_api(lambda: self.api.post_server_action(
                ctx["server"]["id"], {"rescue": {}}))
            ctx["server"] = self.settled(ctx["server"])
            ctx["rescue_vm"] = self.inventory()["VM"] - ctx["before"]["VM"]
        rescue_op = self.action("rescue", self.image, ask_rescue, rescued,
                                undo={"unrescue": None})

        def rescue(ctx: dict) -> None:
            ask_rescue(ctx)
            self.assertEqual("RESCUE", ctx["server"]["status"])

        def in_rescue() -> dict:
            ctx = self.running_server(self.image)
            rescue(ctx)
            return ctx

        def unrescued(ctx: dict) -> list[str]:
            server = self.api.get_server(ctx["server"]["id"])
            left = self.inventory()["VM"] & ctx["rescue_vm"]
            if server["status"] == "ACTIVE":
                out = self.unchanged(ctx)
                if self.vm_of(server)["power_state"] != "Running":
                    out.append("ACTIVE but its VM is not running")
                return out
            if server["status"] not in ("RESCUE", "ERROR"):
                return [f"ended {server['status']}"]
            return [] if left or server["status"] == "ERROR" else ["RESCUE without a rescue VM"]
        def still_rescued(ctx: dict) -> bool:
            x = self.api_x
            return self.in_state("RESCUE", "Halted")(ctx) and all(
                x.VM.get_power_state(vm) == "Running" for vm in ctx["rescue_vm"]
                if vm in set(x.VM.get_all())) and ctx["rescue_vm"] <= set(x.VM.get_all())
        self.report(rescue_op, self.action("unrescue", self.image, {"unrescue": None},
                                           unrescued, prepare=in_rescue,
                                           reusable=still_rescued, undo=rescue))

    def test_attach_and_detach_an_interface(self):
        port = self.neutron.port_1["id"]

        def attach(ctx: dict) -> None:
            ctx["answer"] = self.call_api(lambda: self.api.attach_interface(
                ctx["server"]["id"], {"interfaceAttachment": {"port_id": port}}))

        def attached(ctx: dict) -> list[str]:
            server = self.api.get_server(ctx["server"]["id"])
            vifs = self.vm_of(server)["VIFs"]
            if isinstance(ctx.get("answer"), Exception):
                return self.unchanged(ctx) + ([] if server["status"] in ("ACTIVE", "ERROR")
                                              else [f"ended {server['status']}"])
            if len(vifs) != 1:
                return [f"attached, but the VM has {len(vifs)} VIFs"]
            return []
        def no_port(ctx: dict) -> bool:
            server = self.api.get_server(ctx["server"]["id"])
            return server["status"] == "ACTIVE" and not self.vm_of(server)["VIFs"] and \
                not self.api.get_port_interfaces(server["id"])
        self.report(self.action("attach interface", self.image, attach, attached,
                                reusable=no_port))

        def with_port() -> dict:
            ctx = self.running_server(self.image)
            self.api.attach_interface(ctx["server"]["id"],
                                      {"interfaceAttachment": {"port_id": port}})
            ctx["before"] = self.inventory()
            return ctx

        def detach(ctx: dict) -> None:
            ctx["answer"] = self.call_api(lambda: self.api.detach_interface(
                ctx["server"]["id"], port))

        def detached(ctx: dict) -> list[str]:
            server = self.api.get_server(ctx["server"]["id"])
            vifs = self.vm_of(server)["VIFs"]
            ports = [p["port_id"] for p in self.api.get_port_interfaces(server["id"])]
            if (port in ports) != bool(vifs):
                return [f"Nova says the port is {'' if port in ports else 'not '}attached; "
                        f"the VM has {len(vifs)} VIFs"]
            return []
        def one_port(ctx: dict) -> bool:
            server = self.api.get_server(ctx["server"]["id"])
            return server["status"] == "ACTIVE" and len(self.vm_of(server)["VIFs"]) == 1 and \
                len(self.api.get_port_interfaces(server["id"])) == 1
        self.report(self.action("detach interface", self.image, detach, detached,
                                prepare=with_port, reusable=one_port))


class PauseSuspendSweepTest(_SweepBase):
    """Pause and suspend, each brought back by the opposite action between runs."""

    def test_pause_and_suspend(self):
        image = self.make_image(base.image_data())
        for name, body, outcome, undo in (
                ("pause", {"pause": None}, ("PAUSED", "Paused"), {"unpause": None}),
                ("suspend", {"suspend": None}, ("SUSPENDED", "Suspended"), {"resume": None})):
            self.report(self.action(name, image, body, self.power_outcome(*outcome), undo=undo))


class _DirectVhd(_SweepBase):
    """direct_vhd: dom0's glance_vhd plugin between a real Glance and an ext SR."""

    REAL_GLANCE = True
    IMAGE_HANDLER = "direct_vhd"

    def vhd_image(self) -> str:
        return self.make_vhd_image([{0: b"\x5a" * (1 << 20)}, {4096: b"leaf" * 1024}], 4 << 20)


class DirectVhdSweepTest(_DirectVhd):
    def test_spawn(self):
        image = self.vhd_image()
        self.report(self.uncached_spawn(lambda: self._build_server(image_uuid=image,
                                                                   networks="none")))


class DirectVhdSnapshotSweepTest(_DirectVhd):
    """A snapshot uploaded by the glance_vhd plugin."""

    def test_snapshot(self):
        self.report(self.snapshot_operation(self.vhd_image()))


class _LocalDev(_SweepBase):
    """vdi_local_dev: images written through this compute VM's block device."""

    IMAGE_HANDLER = "vdi_local_dev"


class LocalDevSweepTest(_LocalDev):
    def test_spawn(self):
        image = self.make_image(base.image_data())
        self.report(self.uncached_spawn(lambda: self._build_server(image_uuid=image,
                                                                   networks="none")))


class LocalDevSnapshotSweepTest(_LocalDev):
    """A snapshot read through this compute VM's block device."""

    def test_snapshot(self):
        self.report(self.snapshot_operation(self.make_image(base.image_data())))


class _Moves(_SweepBase):
    """Resizes and migrations: staged VHDs fetched over SFTP between dom0s."""

    DOM0_SSH = True

    def setUp(self) -> None:
        super().setUp()
        self.flags(allow_resize_to_same_host=True)
        self.small = self._create_flavor(memory_mb=512, vcpu=1, disk=1, ephemeral=1, name="small")
        self.big = self._create_flavor(memory_mb=1024, vcpu=2, disk=2, ephemeral=1, name="big")
        self.bigger = self._create_flavor(memory_mb=1536, vcpu=2, disk=2, ephemeral=1,
                                          name="bigger")
        self.image = self.make_image(base.image_data(9))
        self.resize_body = {"resize": {"flavorRef": self.big}}

    def on_first_host(self) -> dict:
        server = self.boot(self._build_server(image_uuid=self.image, flavor_id=self.small,
                                              networks="none", host="compute"))
        self.assertEqual("ACTIVE", server["status"], server.get("fault"))
        return {"server": server, "before": self.inventory()}

    @contextlib.contextmanager
    def only_on_its_host(self) -> Iterator[None]:
        """The other compute, if there is one, disabled meanwhile: a resize stays on the
        server's host."""
        if "compute2" not in self.computes:
            yield
            return
        other = self.api.get_services(binary="nova-compute", host="compute2")[0]["id"]
        self.api.put_service(other, {"status": "disabled"})
        try:
            yield
        finally:
            self.api.put_service(other, {"status": "enabled"})

    def resized(self) -> dict:
        """A server resized on its host, awaiting confirm or revert."""
        ctx = self.on_first_host()
        self.resize_again(ctx)
        self.assertEqual("VERIFY_RESIZE", ctx["server"]["status"], ctx["server"].get("fault"))
        return ctx

    def resize_again(self, ctx: dict) -> None:
        """Resize an ACTIVE server on its host to a flavor it does not have (disks never
        shrink: small goes to big, big and bigger take turns)."""
        server = self.api.get_server(ctx["server"]["id"])
        flavor = {512: self.big, 1024: self.bigger}.get(server["flavor"]["ram"], self.big)
        with self.only_on_its_host():
            self.asking({"resize": {"flavorRef": flavor}})(ctx)

    def awaiting_answer(self, ctx: dict) -> bool:
        server = self.api.get_server(ctx["server"]["id"])
        return (server["status"] == "VERIFY_RESIZE" and server["OS-EXT-SRV-ATTR:host"] == "compute"
                and not self.where(server))

    def guests(self, server: dict) -> dict[str, tuple[str, str, int]]:
        """The server's VMs on every host (its own and any ``-orig``), read from xapisim's
        tables: name -> (power state, host, memory in MiB)."""
        name = server["OS-EXT-SRV-ATTR:instance_name"]
        guests = {}
        for backend in self.sim.backends:
            for rec in backend.store.records("VM").values():
                if rec["name_label"].startswith(name):
                    host = backend.store.get("host", rec["resident_on"])["hostname"] \
                        if rec["resident_on"] != "OpaqueRef:NULL" else ""
                    guests[rec["name_label"]] = (rec["power_state"], host,
                                                 int(rec["memory_static_max"]) >> 20)
        return guests

    def where(self, server: dict) -> list[str]:
        """Nova's host and flavor against the guests on the hosts: one running VM where Nova
        says, with the flavor's memory, and no ``-orig`` VM unless a resize awaits its answer."""
        name = server["OS-EXT-SRV-ATTR:instance_name"]
        guests = self.guests(server)
        out = []
        running = {n: g for n, g in guests.items() if g[0] == "Running"}
        if server["status"] in ("ACTIVE", "VERIFY_RESIZE"):
            memory = server["flavor"]["ram"]
            if list(running) != [name] or running[name][2] != memory:
                out.append(f"{server['status']} with {memory} MiB, but the guests are {guests}")
        if server["status"] == "ACTIVE" and name + "-orig" in guests:
            out.append("ACTIVE with an -orig VM left")
        if server["status"] not in ("ACTIVE", "VERIFY_RESIZE", "ERROR"):
            out.append(f"ended {server['status']}")
        if server["status"] == "ERROR" and not server.get("fault"):
            out.append("ERROR without a fault")
        staged = [f for f in self.inventory()["file"] if f not in self.sweep_files]
        if server["status"] == "ACTIVE" and staged:
            out.append(f"staged files left: {staged}")
        return out

    def moving(self, name: str, body: dict, prepare: Callable[[], dict],
               reusable: Callable[[dict], bool] | None = None,
               renew: Callable[[dict], None] | None = None) -> Operation:
        """A resize, a cold migration, or the answer to one; by default a move of a server
        ``on_first_host``, reused when it failed and left the server there, or once a revert
        has brought it back."""
        def run(ctx: dict) -> None:
            ctx["answer"] = self.call_api(lambda: self.api.post_server_action(
                ctx["server"]["id"], body))
            ctx["server"] = self.settled(ctx["server"])

        def finish(ctx: dict) -> None:
            self.delete(ctx["server"])
            # what Nova's periodic task does once a server whose migration failed is
            # deleted: the host it left still has the server's -orig VM, and reaps it
            if self.guests(ctx["server"]):
                for compute in self.computes.values():
                    compute.manager._cleanup_running_deleted_instances(self._admin)

        def as_prepared(ctx: dict) -> bool:
            """A move that failed and put the server back on its host, as ``prepare`` made it."""
            server = self.api.get_server(ctx["server"]["id"])
            return (server["status"] == "ACTIVE"
                    and server["OS-EXT-SRV-ATTR:host"] == "compute"
                    and server["flavor"]["ram"] == 512 and not self.unchanged(ctx))

        return Operation(name, prepare, run,
                         check=lambda ctx: self.where(self.api.get_server(ctx["server"]["id"])),
                         finish=finish, reusable=reusable or as_prepared,
                         renew=renew or self.asking({"revertResize": None}))

    def resize_operation(self) -> Operation:
        op = self.moving("resize (same host)", self.resize_body, self.on_first_host)
        run = op.run

        def on_its_host(ctx: dict) -> None:
            with self.only_on_its_host():
                run(ctx)
        op.run = on_its_host
        return op


class ResizeSweepTest(_Moves):
    """Resize on the server's own host (the only compute), confirmed or reverted.

    The three are swept together: a resize run that goes through leaves the server awaiting
    the answer that the next revert or confirm run gives, and a revert that goes through
    brings it back to where the next resize run starts.

    The costliest sweep (about 280 CPU seconds): two halves, which two processes of the
    test command take first."""

    def sweep_half(self, half: int) -> None:
        self.sweep_files = self.inventory()["file"]
        answer = dict(prepare=self.resized, reusable=self.awaiting_answer,
                      renew=self.resize_again)
        self.report(self.resize_operation(),
                    self.moving("revert resize", {"revertResize": None}, **answer),
                    self.moving("confirm resize", {"confirmResize": None}, **answer),
                    part=(half, 2))

    def test_resize_confirm_and_revert_first_half(self):
        self.sweep_half(0)

    def test_resize_confirm_and_revert_second_half(self):
        self.sweep_half(1)


class ColdMigrationSweepTest(_Moves):
    """Cold migration to a second compute on a host of its own."""

    STANDALONE_HOSTS = 1

    def setUp(self) -> None:
        super().setUp()
        self.start_compute("compute2", "127.0.0.2")

    def test_cold_migration(self):
        """The driver runs the same steps as for a resize, on two hosts: the calls a resize
        makes too, in the same order, are left to the resize's sweep."""
        self.sweep_files = self.inventory()["file"]
        op = self.moving("cold migration", {"migrate": {"host": "compute2"}}, self.on_first_host)
        op.shares_with = self.resize_operation()
        self.report(op)


class _FollowsMaster:
    @property
    def api_x(self):
        """The test's own session follows the master too (the SDK does not)."""
        import XenAPI
        address = self.sim.backend.master_address()
        sessions = self.__dict__.setdefault("_master_sessions", {})
        if address not in sessions:
            s = XenAPI.Session(self.sim.url_of(address))
            s.xenapi.login_with_password("root", base.PASSWORD, "2.21", "functional-check")
            self.addCleanup(_quietly, s.xenapi.session.logout)  # it may be a slave by then
            sessions[address] = s
        return sessions[address].xenapi


class PoolMasterSweepTest(_FollowsMaster, _SweepBase):
    """A pool of two with HA armed (a shared NFS SR holds its statefile); the compute
    manages the supporter. At each step of a boot the master either moves to the
    supporter (``pool.designate_new_master``: the call is answered HOST_IS_SLAVE) or dies
    (HA then makes the supporter master, and the compute's session finds it there,
    session.py), the two going round. Before each boot the first host, back as a
    supporter, is made master again. A reboot is swept with the master moving only: a
    reboot keeps its server from run to run, and the master's death would take the
    reboot's own host with it from the second run on."""

    POOL_HOSTS = 2
    SHARED_SR = "nfs"
    COMPUTE_ADDRESS = "127.0.0.2"
    KINDS = ("master", "kill")

    def setUp(self):
        super().setUp()
        self.api_x.pool.enable_ha([], {})
        # the stack's own sessions were logged in at the first host: it ends as master (set in
        # xapisim's tables: the test's sessions are logged out by then)
        backend = self.sim.backend
        self.addCleanup(lambda: backend.store.set("pool", backend.pool_ref,
                                                  master=backend.host_by_address("127.0.0.1")))

    def _first_host_is_master(self) -> None:
        x = self.api_x
        first = [h for h in x.host.get_all() if x.host.get_address(h) == "127.0.0.1"][0]
        x.pool.designate_new_master(first)

    def test_spawn_and_reboot_while_the_master_moves_or_dies(self):
        image = self.make_image(base.image_data())
        op = self.boot_operation("spawn, master moving or dying", lambda: self._build_server(
            image_uuid=image, networks="none"))
        prepare = op.prepare
        op.prepare = lambda: (self._first_host_is_master(), prepare())[1]
        self.report(op)
        self._first_host_is_master()
        op = self.action("reboot (hard), master moving", image, {"reboot": {"type": "HARD"}},
                         self.power_outcome("ACTIVE", "Running"))
        op.kinds = ("master",)
        self.report(op)


def _quietly(fn: Callable[[], object]) -> None:
    try:
        fn()
    except Exception:  # noqa: BLE001
        pass
