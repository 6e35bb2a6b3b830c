"""xapisim: a XAPI (XenServer / XCP-ng toolstack) host and pool simulator."""
from .backend import HostConfig, SimConfig
from .simulator import Simulator, host_configs

__all__ = ["HostConfig", "SimConfig", "Simulator", "host_configs"]
__version__ = "0.1.0"
