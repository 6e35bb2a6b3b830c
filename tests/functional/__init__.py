"""Functional tests through Nova's own in-process stack.

``nova.tests.functional`` applies Nova's eventlet monkey patching when it is
imported (unless OS_NOVA_DISABLE_EVENTLET_PATCHING is set); it must happen
before anything else creates locks or sockets, so it is imported here, ahead
of every test module.
"""
import nova.tests.functional  # noqa: F401
