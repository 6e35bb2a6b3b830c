"""Live migration: inside a pool on shared storage (``VM.pool_migrate``) and between hosts
that share nothing (Storage XenMotion: ``host.migrate_receive`` + ``VM.migrate_send``).

Nova 34 has no XenAPI ``LiveMigrateData``, and nova-conductor deserializes
the object ``check_can_live_migrate_destination`` returns without importing
any driver.  So the migrate data is Nova's own ``LibvirtLiveMigrateData``,
which every conductor knows (Nova's ``FakeDriver`` uses it the same way),
with fields Nova's compute manager and conductor never read for themselves:

* ``block_migration``: storage motion or not;
* ``is_shared_instance_path`` and ``is_shared_block_storage`` true: XAPI
  itself removes the source's VM and disks, so Nova must not call the source
  driver's ``cleanup`` after the move;
* ``target_connect_addr``: the uuid of the destination XAPI host;
* ``filename``: the uuid of the destination SR, for block migration;
* ``instance_relative_path``: what ``pre_live_migration`` on the destination
  adds for block migration, as JSON: the ``host.migrate_receive`` map (it
  carries a session of the destination pool, so it is never logged) and the
  destination's integration bridge network;
* ``image_type`` ``"xapi"``, so the object says whose it is.

``block_migration`` ``auto`` (Nova passes None) means shared storage when the
instance's VM is in the destination's pool and all its disks are on SRs the
destination host sees, block migration otherwise.  Progress comes from the
XAPI task into the migration's ``memory_processed``/``memory_remaining``;
``live_migration_abort`` cancels that task; XAPI offers nothing to force a
live migration to complete, so ``live_migration_force_complete`` says so.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from typing import Any

from nova import exception
from nova.objects import migrate_data as migrate_data_obj
from oslo_log import log as logging

from nova_xenapi import vm
from nova_xenapi.errors import HostConnectionError, XenAPIError
from nova_xenapi.session import XenAPISession
from nova_xenapi.storage import disks, volumes

LOG = logging.getLogger(__name__)
MARK = "xapi"


def _prechecked(fn):
    """A pre-check that fails on a XAPI error says so as a pre-check error: Nova then leaves
    the server as it is, where any other exception would put it in ERROR."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (XenAPIError, HostConnectionError) as exc:
            raise exception.MigrationPreCheckError(reason=f"XAPI: {exc}") from None
    return wrapper


@_prechecked
def check_destination(session: XenAPISession, instance: Any, block_migration: bool | None,
                      sr_filter: str) -> migrate_data_obj.LibvirtLiveMigrateData:
    """On the destination: which kind of migration, and where to."""
    here = vm.lookup(session, instance.name)  # the instance's VM is in this pool?
    if here is not None and vm.on_host(session.get_record("VM", here) or {}, session.host_ref):
        raise exception.MigrationPreCheckError(
            reason="the instance already runs on this XAPI host")
    # volumes do not decide it: pre_live_migration plugs their SRs on this host
    shared = here is not None and vm.disks_seen_from(session, here, session.host_ref,
                                                     skip_srs_marked=volumes.SR_MARK)
    block = (not shared) if block_migration is None else bool(block_migration)
    if not block and here is None:
        raise exception.MigrationPreCheckError(
            reason="live migration without block migration needs both hosts in one XAPI pool; "
                   "use block migration (Storage XenMotion) between pools")
    if not block and not shared:
        raise exception.MigrationPreCheckError(
            reason="the instance's disks are on storage this host cannot see; use block migration")
    data = migrate_data_obj.LibvirtLiveMigrateData()
    data.block_migration = block
    data.is_shared_instance_path = True
    data.is_shared_block_storage = True
    data.image_type = MARK
    data.target_connect_addr = session.host_uuid
    data.filename = session.call_xenapi("SR.get_uuid", disks.find_sr(session, sr_filter)) \
        if block else ""
    data.instance_relative_path = ""
    data.serial_listen_addr = None
    return data


@_prechecked
def check_source(session: XenAPISession, instance: Any, data: Any,
                 block_device_info: dict | None) -> Any:
    """On the source: what cannot move yet is refused before anything happens."""
    if getattr(data, "image_type", None) != MARK:
        raise exception.MigrationPreCheckError(reason="the destination is not a XenAPI host")
    if volumes.mappings(block_device_info) and data.block_migration:
        # Storage XenMotion copies every VDI it moves; a volume must stay Cinder's LUN
        raise exception.MigrationPreCheckError(
            reason="block live migration of a server with volumes attached is not supported: "
                   "its volumes can move only inside a pool (shared storage)")
    vm_ref = vm.find(session, instance)
    if not data.block_migration:
        dest = session.call_xenapi("host.get_by_uuid", data.target_connect_addr)
        free = int(session.call_xenapi("host.compute_free_memory", dest))
        need = int(session.call_xenapi("VM.get_memory_static_max", vm_ref))
        if need > free:
            raise exception.MigrationPreCheckError(
                reason=f"the destination host has {free >> 20} MiB free, the server needs "
                       f"{need >> 20} MiB")
    return data


def prepare_destination(session: XenAPISession, data: Any, network: str) -> Any:
    """On the destination before the move: the receive map for Storage XenMotion."""
    if data.block_migration:
        mgmt = session.call_xenapi("host.get_management_interface", session.host_ref)
        receive = session.call_xenapi("host.migrate_receive", session.host_ref,
                                      session.call_xenapi("PIF.get_network", mgmt), {})
        sr = session.call_xenapi("SR.get_by_uuid", data.filename)
        pool = session.call_xenapi("pool.get_all")[0]
        data.instance_relative_path = json.dumps({
            "dest": receive, "sr": sr, "network": network,
            "pool": session.call_xenapi("pool.get_uuid", pool)})
    return data


class Migrations:
    """The live migrations this compute runs: their XAPI tasks, so they can be aborted."""

    def __init__(self, session: XenAPISession) -> None:
        self._session = session
        self._tasks: dict[str, str] = {}
        self._lock = threading.Lock()

    def run(self, context: Any, instance: Any, dest: str, post_method, recover_method,
            block_migration: bool, data: Any) -> None:
        session = self._session
        try:
            vm_ref = vm.find(session, instance)
            # read before the task starts: once it runs, a failed read must not end in a
            # rollback while XAPI goes on moving the VM
            memory = int(session.call_xenapi("VM.get_memory_static_max", vm_ref))
            if data.block_migration:
                info = json.loads(data.instance_relative_path)
                vdi_map = {vdi: info["sr"] for _, vdi in vm.disk_vdis(session, vm_ref)}
                pool = session.call_xenapi("pool.get_all")[0]
                same_pool = session.call_xenapi("pool.get_uuid", pool) == info["pool"]
                # inside a pool the VIFs keep their networks (xapi refuses a vif_map there)
                vif_map = {} if same_pool else {
                    vif: info["network"] for vif in session.call_xenapi("VM.get_VIFs", vm_ref)}
                task = session.call_xenapi("Async.VM.migrate_send", vm_ref, info["dest"], True,
                                           vdi_map, vif_map, {}, {})
            else:
                dest_host = session.call_xenapi("host.get_by_uuid", data.target_connect_addr)
                task = session.call_xenapi("Async.VM.pool_migrate", vm_ref, dest_host,
                                           {"live": "true"})
            with self._lock:
                self._tasks[instance.uuid] = task
            session.follow_task(task, lambda p: _report(data, memory, p))
        except Exception as exc:  # noqa: BLE001 - XAPI decides what happened, not the exception
            cancelled = isinstance(exc, XenAPIError) and exc.code == "TASK_CANCELLED"
            if not cancelled and _arrived(session, instance, data):
                # the move happened even though following it failed: tell Nova the truth
                LOG.warning("live migration of %s: %s, but XAPI has it on the destination",
                            instance.uuid, exc, instance=instance)
            else:
                LOG.warning("live migration of %s to %s %s: %s", instance.uuid, dest,
                            "was aborted" if cancelled else "failed", exc, instance=instance)
                recover_method(context, instance, dest, data,
                               migration_status="cancelled" if cancelled else "error")
                return
        finally:
            with self._lock:
                self._tasks.pop(instance.uuid, None)
        post_method(context, instance, dest, block_migration, data)

    def abort(self, instance: Any) -> None:
        with self._lock:
            task = self._tasks.get(instance.uuid)
        if task is None:
            raise exception.NoActiveMigrationForInstance(instance_id=instance.uuid)
        self._session.call_xenapi("task.cancel", task)


def _arrived(session: XenAPISession, instance: Any, data: Any, attempts: int = 5) -> bool:
    """Whether XAPI has the VM on the destination now (asked again while XAPI errs)."""
    for attempt in range(attempts):
        try:
            ref = vm.lookup(session, instance.name)
            if data.block_migration:
                return ref is None  # migrate_send removed it from this pool
            dest = session.call_xenapi("host.get_by_uuid", data.target_connect_addr)
            return ref is not None and session.call_xenapi("VM.get_resident_on", ref) == dest
        except (XenAPIError, HostConnectionError):
            time.sleep(0.2 * (attempt + 1))
    return False


def _report(data: Any, memory: int, fraction: float) -> None:
    migration = getattr(data, "migration", None) if data.obj_attr_is_set("migration") else None
    if migration is None:
        return
    try:
        migration.memory_total = memory
        migration.memory_processed = int(memory * fraction)
        migration.memory_remaining = memory - migration.memory_processed
        migration.save()
    except Exception:  # noqa: BLE001 - progress is informative, never fatal
        LOG.debug("could not record live migration progress", exc_info=True)


def finish_at_destination(session: XenAPISession, instance: Any, attempts: int = 3) -> None:
    """The VM now runs here: make it this compute's (affinity follows the move).

    The move has already happened, so a failure here must not fail the
    migration (Nova would put a running server in ERROR): the setter, safe to
    repeat, is tried again, and then only warned about.
    """
    vm_ref = vm.find(session, instance)
    for attempt in range(1, attempts + 1):
        try:
            session.call_xenapi("VM.set_affinity", vm_ref, session.host_ref)
            return
        except XenAPIError as exc:
            if attempt == attempts:
                LOG.warning("%s runs here, but its affinity could not follow it: %s",
                            instance.uuid, exc, instance=instance)
