"""The functional tests' secret watch finds a secret in any log record, and keeps none."""
from __future__ import annotations

import logging

from nova_xenapi.testing.secret_watch import SecretWatch


def test_a_secret_in_a_message_an_argument_or_a_traceback_is_found_and_not_kept():
    watch = SecretWatch()
    watch.add("s3cr3t-pw")
    watch.add("OpaqueRef:session-1")
    watch.install()
    log = logging.getLogger("nova_xenapi.some_module")
    try:
        log.debug("nothing here")
        log.debug("logging in with %s", "s3cr3t-pw")
        try:
            raise RuntimeError("bad session OpaqueRef:session-1")
        except RuntimeError:
            log.exception("failed")
    finally:
        watch.remove()
    assert len(watch.found) == 2
    assert not any("s3cr3t-pw" in f or "OpaqueRef:session-1" in f for f in watch.found)
    assert all("<SECRET>" in f for f in watch.found)
