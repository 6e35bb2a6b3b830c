"""The demo: the main job of nova-xenapi until the driver drives it."""
