"""A real OpenStack cloud on one machine, on simulated XenServer hosts (``scripts/cloud``)."""
