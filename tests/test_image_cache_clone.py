"""A clone of the cached image whose answer is lost is found and removed (image_cache.clone).

Found by the fault sweep (direct_vhd spawn): xapi restarting while it cloned
the cached base took the clone's task (tasks are not persisted), and the
clone, a copy of the base with its cache marks, stayed behind looking like a
second cached image.
"""
from __future__ import annotations

import pytest

from nova_xenapi.errors import HostConnectionError
from nova_xenapi.session import XenAPISession
from nova_xenapi.storage import disks, image_cache
from tests.conftest import PASSWORD


def _cached(s: XenAPISession) -> tuple[str, str]:
    sr = disks.find_sr(s, "default-sr:true")
    base = disks.create_vdi(s, sr, "u", "user", "Glance image img-1", 4 << 20)
    s.call_xenapi("VDI.set_other_config", base, {image_cache.CACHE_KEY: "img-1",
                                                 image_cache.BYTES_KEY: "4194304"})
    return sr, base


def _copies(s: XenAPISession) -> list[str]:
    return [r for r, rec in s.call_xenapi("VDI.get_all_records").items()
            if rec["other_config"].get(image_cache.CACHE_KEY) == "img-1"]


@pytest.mark.parametrize("made", [True, False], ids=["made, answer lost", "never made"])
def test_a_clone_whose_answer_is_lost_is_removed_and_the_failure_stays(sim, made):
    """The answer lost after xapi made the clone (its task gone with a restart, the connection
    dropped), or before: either way the failure reaches the caller and only the base is left."""
    s = XenAPISession(sim.url, "root", PASSWORD)
    sr, base = _cached(s)
    real = s.call_async

    def lost(method, *args, **kwargs):
        if made:
            real(method, *args, **kwargs)
        raise HostConnectionError("the answer was lost")
    s.call_async = lost
    with pytest.raises(HostConnectionError):
        image_cache.clone(s, sr, base, "inst-1", "instance-1 root", 8 << 20)
    assert _copies(s) == [base]
    s.close()


def test_two_unowned_copies_at_once_are_left_alone(sim):
    """Another host cloning the same base in the same moment: neither copy is ours to remove."""
    s = XenAPISession(sim.url, "root", PASSWORD)
    sr, base = _cached(s)
    real = s.call_async

    def lost(method, *args, **kwargs):
        real(method, *args, **kwargs)
        real(method, *args, **kwargs)  # the other host's clone, untagged yet
        raise HostConnectionError("the answer was lost")
    s.call_async = lost
    with pytest.raises(HostConnectionError):
        image_cache.clone(s, sr, base, "inst-1", "instance-1 root", 8 << 20)
    assert len(_copies(s)) == 3
    s.close()


def test_a_clone_that_worked_is_kept_and_owned(sim):
    s = XenAPISession(sim.url, "root", PASSWORD)
    sr, base = _cached(s)
    root = image_cache.clone(s, sr, base, "inst-1", "instance-1 root", 8 << 20)
    other = s.call_xenapi("VDI.get_other_config", root)
    assert other["nova_instance_uuid"] == "inst-1" and _copies(s) == [base]  # its own marks
    s.close()
