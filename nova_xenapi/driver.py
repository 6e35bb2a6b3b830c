"""XenAPIDriver: Nova's ComputeDriver for XenServer 8 and XCP-ng 8.3.

A facade: each method turns Nova's objects into a call on one of the small
modules (session, vm, disks, images, network, host, console, spawn,
snapshot, lifecycle) and holds no logic of its own beyond that mapping.
"""

from __future__ import annotations

from typing import Any

from nova import exception
from nova.compute import task_states
from nova.virt import driver, hardware
from oslo_log import log as logging

from nova_xenapi import (
    agent,
    console,
    device_metadata,
    events,
    leftovers,
    lifecycle,
    live_migration,
    migration,
    plugins,
    pools,
    session,
    snapshot,
    spawn,
    this_vm,
    vm,
    vtpm,
)
from nova_xenapi import conf as xconf
from nova_xenapi import evacuate as evacuate_mod
from nova_xenapi import host as host_ops
from nova_xenapi.errors import HostConnectionError, XenAPIError
from nova_xenapi.network import XenAPIOpenVswitchDriver
from nova_xenapi.storage import handlers, image_cache, volumes

CONF = xconf.CONF
LOG = logging.getLogger(__name__)


class XenAPIDriver(driver.ComputeDriver):
    """Runs Nova instances as VMs on a XAPI host or pool."""

    capabilities = dict(driver.ComputeDriver.capabilities)
    capabilities.update({
        "has_imagecache": True,  # base images cached in the SR ([xenserver] cache_images)
        "supports_evacuate": True,
        "supports_migrate_to_same_host": False,
        "supports_attach_interface": True,
        # tagged disks and NICs in the config drive and metadata (device_metadata.py)
        "supports_device_tagging": True,
        "supports_tagged_attach_interface": True,
        "supports_tagged_attach_volume": True,
        "supports_extend_volume": True,  # a rescan of the LUN's SR (storage/volumes.py)
        "supports_multiattach": False,
        "supports_trusted_certs": False,
        "supports_pcpus": False,
        "supports_accelerators": False,
        "supports_image_type_raw": True,
        "supports_image_type_vhd": True,
        "supports_image_type_qcow2": True,
        "supports_image_type_ami": True,
        "supports_image_type_aki": False,
        "supports_image_type_ari": False,
        "supports_image_type_iso": False,
        "supports_image_type_vdi": False,
        "supports_image_type_vmdk": False,
        "supports_image_type_ploop": False,
        "supports_secure_boot": True,
        "supports_vtpm": True,  # TPM 2.0 (CRB) on UEFI guests, where the pool allows (vtpm.py)
    })

    def __init__(self, virtapi: Any, read_only: bool = False) -> None:
        super().__init__(virtapi)
        self._session: session.XenAPISession | None = None
        self._host: spawn.Host | None = None
        self._watcher: lifecycle.LifecycleWatcher | None = None
        self._pump: events.EventPump | None = None
        self._migrations: live_migration.Migrations | None = None
        self._pools: pools.PoolReconciler | None = None
        self._node: str | None = None

    # -------------------------------------------------------------- plumbing
    @property
    def session(self) -> session.XenAPISession:
        if self._session is None:
            self._session = session.from_conf(CONF)
        return self._session

    @property
    def host(self) -> spawn.Host:
        if self._host is None:
            xs = CONF.xenserver
            self._host = spawn.Host(
                session=self.session,
                handler=handlers.get_handler(xs.image_handler, xs.independent_compute,
                                           xs.num_vbd_unplug_retries, xs.image_compression_level),
                vifs=XenAPIOpenVswitchDriver(self.session, xs.ovs_integration_bridge),
                sr_filter=xs.sr_matching_filter,
                default_os_type=xs.default_os_type,
                running_timeout=xs.running_timeout,
                independent_compute=xs.independent_compute,
                cache_images=xs.cache_images,
                max_kernel_size=xs.max_kernel_ramdisk_size,
                unplug_retries=xs.num_vbd_unplug_retries,
                coalesce_max_attempts=xs.vhd_coalesce_max_attempts,
                coalesce_poll_interval=xs.vhd_coalesce_poll_interval,
                virtapi=self.virtapi,
            )
        return self._host

    def init_host(self, host: str) -> None:
        xs = CONF.xenserver
        if xs.independent_compute:
            # as the old driver did: what needs the compute VM inside the host is refused
            for option, value in (("[xenserver] check_host", xs.check_host),
                                  ("[DEFAULT] flat_injected", CONF.flat_injected)):
                if value:
                    raise exception.NotSupportedWithOption(
                        operation=f"{option} = True", option="[xenserver] independent_compute")
        elif xs.check_host:
            self._check_runs_on_host()
        self.host.handler.check_sr(self.session, spawn.disks.find_sr(self.session, xs.sr_matching_filter))
        plugins.check_version(self.session)  # refuses a mismatched plugin set
        # what this host's compute was doing when it last stopped is over: remove its leftovers
        leftovers.sweep_at_start(self.session, xs.num_vbd_unplug_retries)
        host_ops.keep_node_identity(self.session.host_uuid)
        self._pump = events.EventPump(self.session)
        self._watcher = lifecycle.LifecycleWatcher(self.session, self.emit_event)
        self._watcher.follow(self._pump)
        self.session.pump = self._pump  # task waits share this one event stream
        self._pump.start()
        if xs.pool_reconcile_interval:
            self.pool_reconciler(host).start(xs.pool_reconcile_interval)

    def pool_reconciler(self, compute_host: str) -> pools.PoolReconciler:
        """What makes XAPI pools of this host's hypervisor_pool aggregates (pools.py)."""
        if self._pools is None:
            xs = CONF.xenserver
            self._pools = pools.PoolReconciler(self.session, compute_host, xs.connection_username,
                                               xs.connection_password, xs.independent_compute)
        return self._pools

    def _check_runs_on_host(self) -> None:
        my_uuid = this_vm.own_uuid()
        if my_uuid is None:
            raise exception.NovaException(
                "[xenserver] check_host is set but this machine is not a Xen guest "
                "(/sys/hypervisor/uuid is missing); set independent_compute = True to run "
                "outside the host, or check_host = False")
        me = self.session.call_xenapi("VM.get_by_uuid", my_uuid)
        if self.session.call_xenapi("VM.get_resident_on", me) != self.session.host_ref:
            raise exception.NovaException(
                "this compute VM does not run on the host named by [xenserver] connection_url")

    def cleanup_host(self, host: str) -> None:
        if self._pools:
            self._pools.stop()
        if self._pump:
            self._pump.stop()
        if self._session:
            self._session.close()

    # ------------------------------------------------------------- the host
    def _stats(self) -> host_ops.HostStats:
        return host_ops.stats(self.session, CONF.xenserver.sr_matching_filter)

    def _nodename(self) -> str:
        """The node is the XAPI host, named by its hostname: read once (Nova treats a new
        name as a new node anyway), so resource updates do not depend on one more call."""
        if self._node is None:
            self._node = self.session.call_xenapi("host.get_hostname", self.session.host_ref)
        return self._node

    def get_available_nodes(self, refresh: bool = False) -> list[str]:
        return [self._nodename()]

    def get_nodenames_by_uuid(self, refresh: bool = False) -> dict[str, str]:
        return {self.session.host_uuid: self._nodename()}

    def get_available_resource(self, nodename: str) -> dict:
        return host_ops.available_resource(self._stats())

    def update_provider_tree(self, provider_tree: Any, nodename: str, allocations: Any = None) -> None:
        existing = provider_tree.data(nodename).inventory
        provider_tree.update_inventory(nodename, host_ops.inventory(self._stats(), existing))
        vtpm.update_traits(self.session, provider_tree, nodename)

    def get_host_uptime(self) -> str:
        return host_ops.uptime(self.session)

    def get_host_ip_addr(self) -> str:
        return self.session.call_xenapi("host.get_address", self.session.host_ref)

    def host_power_action(self, action: str) -> str:
        return host_ops.power_action(self.session, action)

    def set_host_enabled(self, enabled: bool) -> str:
        return host_ops.set_enabled(self.session, enabled)

    def host_maintenance_mode(self, host: str, mode: bool) -> str:
        return host_ops.maintenance_mode(self.session, mode)

    def manage_image_cache(self, context: Any, all_instances: Any) -> None:
        """Remove cached base images that no instance on this host uses any more."""
        if not CONF.image_cache.remove_unused_base_images:
            return
        in_use = {i.image_ref for i in all_instances if i.image_ref}
        removed = image_cache.remove_unused(self.session, in_use)
        if removed:
            LOG.info("Removed unused cached images %s", ", ".join(removed))

    def poll_rebooting_instances(self, timeout: int, instances: Any) -> None:
        """XAPI finishes reboots itself; nothing is left to poll."""

    # -------------------------------------------------------------- listing
    def _nova_vms(self, records: dict[str, dict] | None = None) -> dict[str, dict]:
        if records is None:
            records = self.session.call_xenapi("VM.get_all_records")
        return {ref: rec for ref, rec in records.items()
                if not rec["is_a_template"] and not rec["is_control_domain"]
                and rec["other_config"].get("nova_uuid") and vm.on_host(rec, self.session.host_ref)}

    def list_instances(self) -> list[str]:
        return [rec["name_label"] for rec in self._nova_vms().values()]

    def list_instance_uuids(self) -> list[str]:
        """The instances with a VM on this host, including VMs a resize set aside here
        (``-orig``): a server deleted while its migration had failed elsewhere has nothing
        else on this host, and Nova's periodic ``_cleanup_running_deleted_instances`` then
        finds it here and has it destroyed."""
        records = self.session.call_xenapi("VM.get_all_records")
        uuids = [rec["other_config"]["nova_uuid"] for rec in self._nova_vms(records).values()]
        for rec in records.values():
            orig_of = rec["other_config"].get(migration.ORIG_KEY)
            if orig_of and orig_of not in uuids and not rec["is_a_template"] and \
                    vm.on_host(rec, self.session.host_ref):
                uuids.append(orig_of)
        return uuids

    def instance_exists(self, instance: Any) -> bool:
        """Whether the instance's VM is on this compute's host (a pool holds other hosts' VMs)."""
        ref = vm.lookup(self.session, instance.name)
        rec = self.session.get_record("VM", ref) if ref else None
        return rec is not None and vm.on_host(rec, self.session.host_ref)

    def instance_on_disk(self, instance: Any) -> bool:
        """Whether this host sees all of the instance's disks (shared storage in its pool)."""
        return evacuate_mod.disks_reachable(self.session, instance)

    def rebuild(self, context: Any, instance: Any, image_meta: Any, injected_files: Any,
                admin_password: Any, allocations: Any, bdms: Any, detach_block_devices: Any,
                attach_block_devices: Any, network_info: Any = None, evacuate: bool = False,
                block_device_info: Any = None, preserve_ephemeral: bool = False,
                accel_uuids: Any = None, reimage_boot_volume: bool = False) -> None:
        if not evacuate:
            raise NotImplementedError()  # Nova's own rebuild: destroy, then spawn from the image
        evacuate_mod.check_possible(self.session, instance)
        # the task states Nova's manager expects a driver's rebuild to pass through
        detach_block_devices(context, bdms, detach_root_bdm=True)
        instance.task_state = task_states.REBUILD_BLOCK_DEVICE_MAPPING
        instance.save(expected_task_state=[task_states.REBUILDING])
        attach_block_devices(context, instance, bdms)
        instance.task_state = task_states.REBUILD_SPAWNING
        instance.save(expected_task_state=[task_states.REBUILD_BLOCK_DEVICE_MAPPING])
        evacuate_mod.recover_here(self.session, instance)

    def get_info(self, instance: Any, use_cache: bool = True) -> hardware.InstanceInfo:
        """The power state; from the event.from cache when allowed (no XAPI call), else from XAPI."""
        cached = self._watcher.cached_state(instance.uuid) if self._watcher else None
        state = cached if use_cache else None
        if state is None:
            try:
                ref = (vm.lookup(self.session, instance.name + vm.RESCUE_SUFFIX)
                       or vm.find(self.session, instance))
                state = vm.get_state(self.session, ref)
            except (XenAPIError, HostConnectionError):
                if cached is None:
                    raise
                state = cached  # XAPI did not answer this once: the event stream's state
        return hardware.InstanceInfo(state=vm.nova_power_state(state))

    def get_num_instances(self) -> int:
        known = self._watcher.known_instances() if self._watcher else None
        return known if known is not None else len(self._nova_vms())

    # ---------------------------------------------------------- lifecycle
    def spawn(self, context: Any, instance: Any, image_meta: Any, injected_files: Any,
              admin_password: Any, allocations: Any, network_info: Any = None,
              block_device_info: Any = None, power_on: bool = True, accel_info: Any = None) -> None:
        spawn.spawn(self.host, context, instance, image_meta, injected_files, admin_password,
                    network_info, power_on, block_device_info)

    def destroy(self, context: Any, instance: Any, network_info: Any, block_device_info: Any = None,
                destroy_disks: bool = True, destroy_secrets: bool = True) -> None:
        spawn.destroy(self.host, instance, destroy_disks)
        if destroy_disks and (instance.deleted or instance.task_state == task_states.DELETING):
            # a server deleted while its resize had failed: what the resize set aside here
            # (not when Nova reverts a resize, which destroys the new VM beside the -orig one)
            migration.discard_set_aside(self.host, instance)
        volumes.release_all(self.session, block_device_info)  # the volumes' data stays Cinder's

    def delete_instance_files(self, instance: Any) -> bool:
        """Nova's clean-up of a deleted server's leftovers on a host (its periodic
        ``_run_pending_deletes`` and ``_cleanup_incomplete_migrations``): what a resize set
        aside here, and the server's disks that no VM uses."""
        migration.discard_set_aside(self.host, instance)
        spawn.destroy_orphan_disks(self.session, instance.uuid)
        return True

    # ------------------------------------------------------------- volumes
    def get_volume_connector(self, instance: Any) -> dict:
        return volumes.connector(self.session, CONF.my_ip, CONF.host)

    def attach_volume(self, context: Any, connection_info: dict, instance: Any, mountpoint: str,
                      disk_bus: Any = None, device_type: Any = None, encryption: Any = None) -> None:
        if encryption:
            raise exception.VolumeEncryptionNotSupported(
                volume_type="encrypted", volume_id=connection_info.get("data", {}).get("volume_id"))
        volumes.attach_to(self.session, vm.find(self.session, instance), connection_info, mountpoint)
        device_metadata.update(context, instance)

    def detach_volume(self, context: Any, connection_info: dict, instance: Any, mountpoint: str,
                      encryption: Any = None) -> None:
        ref = vm.lookup(self.session, instance.name)
        volumes.detach_from(self.session, ref, connection_info, self.host.unplug_retries)
        device_metadata.forget(instance, serial=(connection_info.get("data") or {}).get(
            "volume_id") or connection_info.get("serial"))

    def swap_volume(self, context: Any, old_connection_info: dict, new_connection_info: dict,
                    instance: Any, mountpoint: str, resize_to: int) -> None:
        # resize_to needs nothing here: the new volume's VDI is already as big as Cinder made it
        volumes.swap(self.session, vm.find(self.session, instance), old_connection_info,
                     new_connection_info, self.host.unplug_retries)

    def extend_volume(self, context: Any, connection_info: dict, instance: Any,
                      requested_size: int) -> int:
        return volumes.extend(self.session, connection_info, requested_size)

    def default_root_device_name(self, instance: Any, image_meta: Any, root_bdm: Any) -> str:
        return "/dev/xvda"

    def default_device_names_for_instance(self, instance: Any, root_device_name: str,
                                          *block_device_lists: Any) -> None:
        """Names where spawn puts the disks: swap xvdb, ephemeral xvdc, the config drive's xvdd
        kept free, volumes from xvde on (unless Nova's caller named them)."""
        from nova.block_device import new_format_is_ephemeral, new_format_is_swap
        bdms = [b for lst in block_device_lists for b in lst]
        names = [b.device_name for b in bdms if b.device_name] + [root_device_name]
        for bdm in bdms:
            if bdm.device_name:
                continue
            if new_format_is_swap(bdm):
                bdm.device_name = volumes.device_name(int(spawn.disks.SWAP))
            elif new_format_is_ephemeral(bdm):
                bdm.device_name = volumes.device_name(int(spawn.disks.EPHEMERAL))
            else:
                bdm.device_name = volumes.next_device_name(self.session, None, names, first=4)
            names.append(bdm.device_name)
            bdm.save()

    def get_device_name_for_instance(self, instance: Any, bdms: Any, block_device_obj: Any) -> str:
        """Free on the VM too: swap, ephemeral and config drive hold userdevices 1-3 that Nova
        may not have in its mappings."""
        names = [b.device_name for b in bdms if b.device_name]
        return volumes.next_device_name(self.session, vm.lookup(self.session, instance.name), names)

    def cleanup(self, context: Any, instance: Any, network_info: Any, block_device_info: Any = None,
                destroy_disks: bool = True, migrate_data: Any = None, destroy_vifs: bool = True,
                destroy_secrets: bool = True) -> None:
        spawn.destroy(self.host, instance, destroy_disks)

    # ------------------------------------------------- resize, cold migration
    def migrate_disk_and_power_off(self, context: Any, instance: Any, dest: str, flavor: Any,
                                   network_info: Any, block_device_info: Any = None,
                                   timeout: int = 0, retry_interval: int = 0) -> str:
        return migration.migrate_disk_and_power_off(self.host, instance, flavor, timeout,
                                                    CONF.xenserver.dom0_ssh_port, block_device_info)

    def finish_migration(self, context: Any, migration_: Any, instance: Any, disk_info: str,
                         network_info: Any, image_meta: Any, resize_instance: bool,
                         allocations: Any, block_device_info: Any = None,
                         power_on: bool = True, share_info: Any = None) -> None:
        migration.finish_migration(self.host, context, instance, image_meta, disk_info,
                                   network_info, power_on, block_device_info)

    def confirm_migration(self, context: Any, migration_: Any, instance: Any,
                          network_info: Any) -> None:
        migration.confirm_migration(self.host, instance)

    def finish_revert_migration(self, context: Any, instance: Any, network_info: Any,
                                migration_: Any, block_device_info: Any = None,
                                power_on: bool = True, share_info: Any = None) -> None:
        migration.finish_revert_migration(self.host, instance, power_on, block_device_info)

    def reboot(self, context: Any, instance: Any, network_info: Any, reboot_type: str,
               block_device_info: Any = None, bad_volumes_callback: Any = None,
               accel_info: Any = None, share_info: Any = None) -> None:
        vm.reboot(self.session, vm.find(self.session, instance), reboot_type == "HARD",
                  CONF.xenserver.running_timeout)

    def power_off(self, instance: Any, timeout: int = 0, retry_interval: int = 0) -> None:
        vm.power_off(self.session, vm.find(self.session, instance), timeout)

    def power_on(self, context: Any, instance: Any, network_info: Any, block_device_info: Any = None,
                 accel_info: Any = None, share_info: Any = None) -> None:
        ref = vm.find(self.session, instance)
        if vm.get_state(self.session, ref) == "Halted":
            vm.start(self.session, ref, CONF.xenserver.running_timeout)

    def pause(self, instance: Any) -> None:
        vm.pause(self.session, vm.find(self.session, instance))

    def unpause(self, instance: Any) -> None:
        vm.unpause(self.session, vm.find(self.session, instance))

    def suspend(self, context: Any, instance: Any) -> None:
        vm.suspend(self.session, vm.find(self.session, instance))

    def resume(self, context: Any, instance: Any, network_info: Any, block_device_info: Any = None,
               share_info: Any = None) -> None:
        vm.resume(self.session, vm.find(self.session, instance), CONF.xenserver.running_timeout)

    def resume_state_on_host_boot(self, context: Any, instance: Any, network_info: Any,
                                  share_info: Any = None, block_device_info: Any = None) -> None:
        self.power_on(context, instance, network_info, block_device_info)

    def rescue(self, context: Any, instance: Any, network_info: Any, image_meta: Any,
               rescue_password: Any, block_device_info: Any, share_info: Any = None) -> None:
        snapshot.rescue(self.host, context, instance, network_info, image_meta)

    def unrescue(self, context: Any, instance: Any) -> None:
        snapshot.unrescue(self.host, instance)

    def snapshot(self, context: Any, instance: Any, image_id: str, update_task_state: Any) -> None:
        snapshot.snapshot(self.host, context, instance, image_id, update_task_state)

    # ---------------------------------------------------------- live migration
    @property
    def _live(self) -> live_migration.Migrations:
        if self._migrations is None:
            self._migrations = live_migration.Migrations(self.session)
        return self._migrations

    def check_can_live_migrate_destination(self, context: Any, instance: Any, src_compute_info: Any,
                                           dst_compute_info: Any, block_migration: bool | None = False,
                                           disk_over_commit: bool = False) -> Any:
        return live_migration.check_destination(self.session, instance, block_migration,
                                                CONF.xenserver.sr_matching_filter)

    def cleanup_live_migration_destination_check(self, context: Any, dest_check_data: Any) -> None:
        pass  # the destination check makes nothing

    def check_can_live_migrate_source(self, context: Any, instance: Any, dest_check_data: Any,
                                      block_device_info: Any = None) -> Any:
        return live_migration.check_source(self.session, instance, dest_check_data,
                                           block_device_info)

    def get_instance_disk_info(self, instance: Any, block_device_info: Any = None) -> str:
        return "[]"  # XAPI moves the disks itself

    def pre_live_migration(self, context: Any, instance: Any, block_device_info: Any,
                           network_info: Any, disk_info: Any, migrate_data: Any) -> Any:
        volumes.connect_all(self.session, block_device_info)  # the volumes' SRs plugged here
        return live_migration.prepare_destination(self.session, migrate_data,
                                                  self.host.vifs.integration_network())

    def live_migration(self, context: Any, instance: Any, dest: str, post_method: Any,
                       recover_method: Any, block_migration: bool = False,
                       migrate_data: Any = None) -> None:
        self._live.run(context, instance, dest, post_method, recover_method, block_migration,
                       migrate_data)

    def live_migration_abort(self, instance: Any) -> None:
        self._live.abort(instance)

    def live_migration_force_complete(self, instance: Any) -> None:
        raise NotImplementedError("XAPI cannot force a live migration to complete: VM.pool_migrate "
                                  "and VM.migrate_send have no post-copy or pause-and-finish mode")

    def post_live_migration(self, context: Any, instance: Any, block_device_info: Any,
                            migrate_data: Any = None) -> None:
        # XAPI has moved the VM (and, for block migration, its disks); this host lets go of
        # the volumes' SRs if nothing here uses them any more
        volumes.release_all_here(self.session, block_device_info)

    def post_live_migration_at_source(self, context: Any, instance: Any, network_info: Any) -> None:
        pass  # the VIFs left the source's switch with the domain

    def post_live_migration_at_destination(self, context: Any, instance: Any, network_info: Any,
                                           block_migration: bool = False,
                                           block_device_info: Any = None) -> None:
        live_migration.finish_at_destination(self.session, instance)

    def rollback_live_migration_at_destination(self, context: Any, instance: Any, network_info: Any,
                                               block_device_info: Any, destroy_disks: bool = True,
                                               migrate_data: Any = None) -> None:
        # A failed or cancelled VM.pool_migrate/migrate_send leaves the VM on the source and
        # removes what it made here; the VM may be in this pool (shared storage), so never
        # destroy it by name. What pre_live_migration plugged here for the volumes goes.
        volumes.release_all_here(self.session, block_device_info)

    # ------------------------------------------------------------ networks
    def plug_vifs(self, instance: Any, network_info: Any) -> None:
        """VIFs are created with the VM at spawn; XAPI plugs them when it starts."""

    def unplug_vifs(self, instance: Any, network_info: Any) -> None:
        """VIFs go with the VM at destroy."""

    def attach_interface(self, context: Any, instance: Any, image_meta: Any, vif: Any) -> None:
        self.host.vifs.attach(vm.find(self.session, instance), vif)
        device_metadata.update(context, instance)

    def detach_interface(self, context: Any, instance: Any, vif: Any) -> None:
        self.host.vifs.detach(vm.find(self.session, instance), vif["id"])
        device_metadata.forget(instance, mac=vif["address"])

    # ------------------------------------------------------- guest access
    def get_vnc_console(self, context: Any, instance: Any) -> Any:
        return console.vnc_console(self.session, instance, CONF.xenserver.console_http_port)

    def get_console_output(self, context: Any, instance: Any) -> str:
        ref = vm.find(self.session, instance)
        domid = int(self.session.call_xenapi("VM.get_domid", ref))
        if domid <= 0:
            return ""  # not running: no console
        try:
            return plugins.console_log(self.session, domid)
        except plugins.PluginsMissing as exc:
            raise NotImplementedError(str(exc)) from None

    def trigger_crash_dump(self, instance: Any) -> None:
        """An NMI for the guest, sent from dom0 with ``xl trigger``: XAPI's ``VM.send_trigger``
        answers NOT_IMPLEMENTED (xapi_vm.ml). What the guest does with it (a kdump, a panic)
        is its own configuration's."""
        ref = vm.find(self.session, instance)
        domid = int(self.session.call_xenapi("VM.get_domid", ref))
        if vm.get_state(self.session, ref) != "Running" or domid <= 0:
            raise exception.InstanceNotRunning(instance_id=instance.uuid)
        try:
            plugins.call(self.session, "xenhost.py", "trigger_nmi", {"dom_id": str(domid)})
        except plugins.PluginsMissing:
            raise exception.TriggerCrashDumpNotSupported() from None
        LOG.info("Sent an NMI to %s (domain %d)", instance.name, domid, instance=instance)

    def set_admin_password(self, instance: Any, new_pass: str) -> None:
        """Through the guest agent (agent.py), for an image that has one."""
        if not agent.should_use(instance):
            raise exception.InstanceAgentNotEnabled()
        agent.GuestAgent(self.session, instance, vm.find(self.session, instance)) \
            .set_admin_password(new_pass)

