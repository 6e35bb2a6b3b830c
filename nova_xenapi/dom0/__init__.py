"""The dom0 side of nova-xenapi: the XAPI plugins installed in /etc/xapi.d/plugins."""

from pathlib import Path

PLUGIN_DIR = Path(__file__).parent / "plugins"
PLUGIN_API_VERSION = "3.5"  # must match plugins/dom0_pluginlib.py
# SR types whose VDIs are VHD files under /var/run/sr-mount, as the direct_vhd plugin needs
FILE_SR_TYPES = ("ext", "nfs", "file")
