"""Commands that neutron's OVS agent runs through privsep, sent to dom0.

Neutron 29 runs ``ovs-ofctl`` (the OVS firewall's flows, flow dumps) and one
``ovs-vsctl`` (adding an OVSDB manager) through its privsep daemons, which
execute them locally rather than through ``[agent] root_helper``.  On
XenServer the switch is dom0's, so the privsep daemons are started
(``[privsep*] helper_command``, written by ``xenapi-bootstrap``) with
``bin/`` here first on their PATH: its ``ovs-ofctl`` and ``ovs-vsctl`` hand
the command, arguments and standard input to ``xenapi-root-helper``, which
runs them in dom0 through the ``netwrap.py`` plugin.
"""

from __future__ import annotations

from pathlib import Path

TOOLS_DIR = Path(__file__).parent / "bin"
#: the environment variable naming the agent config (its [xenapi] section) for the tools
CONFIG_ENV = "XENAPI_ROOT_HELPER_CONFIG"
