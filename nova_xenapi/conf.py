"""The ``[xenserver]`` option group of nova.conf.

Option names and defaults follow the removed in-tree driver
(nova/conf/xenserver.py at nova 21.0.0) so that existing nova.conf files keep
working; the pre-2014 ``[DEFAULT] xenapi_*`` spellings (nova 2014.1
nova/virt/xenapi/*.py ``deprecated_name``) are accepted as deprecated aliases,
and oslo.config logs a deprecation warning when one is used.  The TLS options
(``ca_file``, ``verify_ssl``, ``certificate_thumbprint``) are new.
"""

from __future__ import annotations

import socket

from oslo_config import cfg
from oslo_utils import units

GROUP = cfg.OptGroup(
    "xenserver",
    title="XenServer / XCP-ng options",
    help="Options for compute_driver = xenapi.XenAPIDriver.  connection_url "
    "and connection_password are required.",
)

# Old [DEFAULT] names, as nova 2014.1 declared them (deprecated_name=...).
LEGACY_DEFAULT_NAMES = {
    "agent_path": "xenapi_agent_path",
    "agent_resetnetwork_timeout": "agent_resetnetwork_timeout",
    "agent_timeout": "agent_timeout",
    "agent_version_timeout": "agent_version_timeout",
    "block_device_creation_timeout": "block_device_creation_timeout",
    "check_host": "xenapi_check_host",
    "connection_concurrent": "xenapi_connection_concurrent",
    "connection_password": "xenapi_connection_password",
    "connection_url": "xenapi_connection_url",
    "connection_username": "xenapi_connection_username",
    "default_os_type": "default_os_type",
    "disable_agent": "xenapi_disable_agent",
    "image_compression_level": "xenapi_image_compression_level",
    "image_upload_handler": "xenapi_image_upload_handler",
    "ipxe_boot_menu_url": "xenapi_ipxe_boot_menu_url",
    "ipxe_mkisofs_cmd": "xenapi_ipxe_mkisofs_cmd",
    "ipxe_network_name": "xenapi_ipxe_network_name",
    "iqn_prefix": "iqn_prefix",
    "login_timeout": "xenapi_login_timeout",
    "max_kernel_ramdisk_size": "max_kernel_ramdisk_size",
    "num_vbd_unplug_retries": "xenapi_num_vbd_unplug_retries",
    "ovs_integration_bridge": "xenapi_ovs_integration_bridge",
    "remap_vbd_dev": "xenapi_remap_vbd_dev",
    "remap_vbd_dev_prefix": "xenapi_remap_vbd_dev_prefix",
    "running_timeout": "xenapi_running_timeout",
    "sparse_copy": "xenapi_sparse_copy",
    "sr_base_path": "xenapi_sr_base_path",
    "sr_matching_filter": "sr_matching_filter",
    "target_host": "target_host",
    "target_port": "target_port",
    "use_agent_default": "xenapi_use_agent_default",
    "vhd_coalesce_max_attempts": "xenapi_vhd_coalesce_max_attempts",
    "vhd_coalesce_poll_interval": "xenapi_vhd_coalesce_poll_interval",
    "vif_driver": "xenapi_vif_driver",
}

IMAGE_HANDLERS = ("direct_vhd", "vdi_local_dev", "vdi_remote_stream")

_OPTS = [
    # Connection and session.
    cfg.URIOpt("connection_url", schemes=["http", "https"],
               help="URL of the XAPI host or pool master, e.g. https://192.0.2.10. "
               "A pool member's address also works: the driver follows HOST_IS_SLAVE."),
    cfg.StrOpt("connection_username", default="root", help="XAPI user name."),
    cfg.StrOpt("connection_password", secret=True, help="XAPI password."),
    cfg.IntOpt("connection_concurrent", default=5, min=1,
               help="Most XAPI sessions (and connections) the driver opens at once."),
    cfg.IntOpt("login_timeout", default=10, min=0, help="Seconds to wait for a login to answer."),
    cfg.BoolOpt("verify_ssl", default=True,
                help="Verify the host's TLS certificate for https connection URLs."),
    cfg.StrOpt("ca_file", help="CA bundle that signed the host's certificate (PEM)."),
    cfg.StrOpt("certificate_thumbprint",
               help="SHA-256 fingerprint of the host's certificate (hex, colons allowed). "
               "When set, the certificate is accepted if and only if it matches, which is "
               "how a host's default self-signed certificate is trusted."),
    cfg.IntOpt("pool_reconcile_interval", default=60, min=0,
               help="Seconds between rounds that bring this host into the XAPI pools of the "
                    "host aggregates it is in (metadata hypervisor_pool=true); 0 turns it off."),
    cfg.BoolOpt("check_host", default=True,
                help="Check at start that this compute VM runs on the host it manages."),
    cfg.BoolOpt("independent_compute", default=False,
                help="Run nova-compute outside the host (no HIMN, no dom0 access from the "
                "compute VM); features that need either are refused with clear errors."),
    # Storage and images.
    cfg.StrOpt("sr_matching_filter", default="default-sr:true",
               help="Which SR holds instance disks: 'default-sr:true' (the pool's default SR) "
               "or 'other-config:<key>=<value>'."),
    cfg.StrOpt("image_handler", default="direct_vhd",
               choices=[(h, None) for h in IMAGE_HANDLERS],
               help="How images move between Glance and the SR. direct_vhd (as the old driver): "
               "dom0's glance_vhd plugin moves VHD chains between Glance and a file SR (ext or "
               "nfs; refused on others). vdi_remote_stream streams through XAPI's "
               "/import_raw_vdi and /export_raw_vdi and works on every SR type. vdi_local_dev "
               "writes through the VDI plugged into this compute VM."),
    cfg.StrOpt("image_upload_handler", default="", deprecated_for_removal=True,
               deprecated_reason="Use image_handler.", help="Ignored; use image_handler."),
    cfg.StrOpt("cache_images", default="all", choices=["all", "some", "none"],
               help="Keep base images in the SR for copy-on-write clones."),
    cfg.IntOpt("image_compression_level", min=1, max=9,
               help="gzip level for image upload, or unset for none."),
    cfg.StrOpt("default_os_type", default="linux", help="os_type when the image has none."),
    cfg.IntOpt("block_device_creation_timeout", default=10, min=0,
               help="Seconds to wait for a block device to appear."),
    cfg.IntOpt("max_kernel_ramdisk_size", default=16 * units.Mi, min=0,
               help="Largest kernel or ramdisk accepted, in bytes."),
    cfg.BoolOpt("sparse_copy", default=True, help="Skip zero blocks when copying disks."),
    cfg.StrOpt("sr_base_path", default="/var/run/sr-mount", help="Where file SRs are mounted in dom0."),
    cfg.FloatOpt("vhd_coalesce_poll_interval", default=5.0, min=0,
                 help="Seconds between checks that a VHD chain coalesced."),
    cfg.IntOpt("vhd_coalesce_max_attempts", default=20, min=0,
               help="Checks before giving up waiting for a coalesce after a snapshot "
                    "(0: do not wait)."),
    cfg.BoolOpt("remap_vbd_dev", default=False, help="Rename VBD devices (e.g. sd -> xvd)."),
    cfg.StrOpt("remap_vbd_dev_prefix", default="sd", help="Prefix of remapped VBD devices."),
    cfg.PortOpt("dom0_ssh_port", default=22,
                help="SSH port of this host's dom0. Resize and cold migration copy disks "
                     "from the source dom0 to the destination's over SFTP as root, so every "
                     "dom0 must trust the others' root keys (and know their host keys)."),
    cfg.PortOpt("console_http_port", default=80,
                help="XAPI's plain-HTTP port, where nova-novncproxy (which cannot speak TLS "
                     "to the host) sends CONNECT /console, as the old driver did on 80. A "
                     "host set to https_only has no such port: its consoles are refused."),
    cfg.IntOpt("num_vbd_unplug_retries", default=10, min=0,
               help="Retries of VBD.unplug when the guest holds the device."),
    # VM behaviour.
    cfg.IntOpt("running_timeout", default=60, min=0,
               help="Seconds to wait for an instance to reach Running."),
    cfg.StrOpt("vif_driver", default="nova_xenapi.network.XenAPIOpenVswitchDriver",
               help="VIF driver (only Open vSwitch with neutron is supported)."),
    cfg.StrOpt("ovs_integration_bridge", default="br-int",
               help="Name label or bridge of the XAPI network that is OVS's integration bridge."),
    cfg.BoolOpt("use_join_force", default=True, help="Force pool joins across CPU differences."),
    cfg.StrOpt("console_public_hostname", default=socket.gethostname(),
               sample_default="<current_hostname>", help="Public name of this console host."),
    # Guest agent.
    cfg.IntOpt("agent_timeout", default=30, min=0, help="Seconds to wait for the guest agent."),
    cfg.IntOpt("agent_version_timeout", default=300, min=0,
               help="Seconds to wait for the guest agent to report its version."),
    cfg.IntOpt("agent_resetnetwork_timeout", default=60, min=0,
               help="Seconds to wait for the guest agent to reset networking."),
    cfg.StrOpt("agent_path", default="usr/sbin/xe-update-networking",
               help="Path of the agent's networking script in the guest image."),
    cfg.BoolOpt("disable_agent", default=False, help="Never use the guest agent."),
    cfg.BoolOpt("use_agent_default", default=False,
                help="Use the agent when the image does not say (xenapi_use_agent_disabled)."),
    # iSCSI volumes: Cinder's connection info names the portal and the IQN, so these old
    # nova-volume defaults are only accepted, so that old configs still load
    cfg.HostAddressOpt("target_host", deprecated_for_removal=True,
                       deprecated_reason="Cinder's connection info gives the target portal",
                       help="Unused: the iSCSI target comes from Cinder's connection info."),
    cfg.PortOpt("target_port", default=3260, deprecated_for_removal=True,
                deprecated_reason="Cinder's connection info gives the target portal",
                help="Unused: the iSCSI port comes from Cinder's connection info."),
    cfg.StrOpt("iqn_prefix", default="iqn.2010-10.org.openstack", deprecated_for_removal=True,
               deprecated_reason="Cinder's connection info gives the target IQN",
               help="Unused: the target IQN comes from Cinder's connection info."),
    # iPXE.
    cfg.StrOpt("ipxe_network_name", help="Network for iPXE boot ISOs."),
    cfg.StrOpt("ipxe_boot_menu_url", help="URL of the iPXE boot menu."),
    cfg.StrOpt("ipxe_mkisofs_cmd", default="mkisofs", help="mkisofs used for iPXE ISOs."),
]

for _opt in _OPTS:
    _old = LEGACY_DEFAULT_NAMES.get(_opt.name)
    if _old:
        _opt.deprecated_opts.append(cfg.DeprecatedOpt(_old, group="DEFAULT"))

ALL_OPTS = _OPTS


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the [xenserver] group on ``conf`` (idempotent)."""
    conf.register_group(GROUP)
    conf.register_opts(ALL_OPTS, group=GROUP)


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    """Entry point for oslo-config-generator (namespace ``nova_xenapi``)."""
    return [(GROUP, ALL_OPTS)]


CONF = cfg.CONF
register_opts(CONF)
