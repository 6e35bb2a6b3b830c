"""xenapi-bootstrap: prepare a XenServer or XCP-ng host for nova-xenapi."""
