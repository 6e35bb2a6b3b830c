"""nova_xenapi: the OpenStack Nova compute driver for XenServer / XCP-ng.

The driver itself is not written yet (see the core driver issue); this
package exists so the distribution has its final shape.
"""
