#!/usr/bin/env python3
"""nova-xenapi dom0 plugin: the version of this plugin set, so the driver can refuse a mismatch."""

import dom0_pluginlib
import XenAPIPlugin


def get_version(session, args):
    return dom0_pluginlib.PLUGIN_API_VERSION


if __name__ == "__main__":
    XenAPIPlugin.dispatch({"get_version": get_version})
