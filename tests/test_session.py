"""The driver's session layer against a running xapisim, over real sockets."""
from __future__ import annotations

import hashlib
import logging
import ssl
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from nova_xenapi import transport
from nova_xenapi.errors import HostConnectionError, XenAPIError
from nova_xenapi.session import XenAPISession, is_safe_to_repeat
from tests.conftest import PASSWORD
from xapisim import SimConfig, Simulator, host_configs


def _session(url: str, **kw) -> XenAPISession:
    return XenAPISession(url, "root", PASSWORD, **kw)


def _sessions_on_host(sim) -> int:
    return len(sim.backend.store.all("session"))


def _busy(s: XenAPISession, method: str, threads: int) -> None:
    """``threads`` callers at once, five calls each, so the pool opens all it may."""
    running = [threading.Thread(target=lambda: [s.call_xenapi(method) for _ in range(5)])
               for _ in range(threads)]
    for t in running:
        t.start()
    for t in running:
        t.join()


def test_a_pool_member_url_is_followed_to_the_master(sim):
    s = _session(sim.host_urls[1])
    assert s.url == sim.host_urls[0]
    # the calls go to the master, but the host the session manages is the member it names
    member = sim.backend.host_by_address("127.0.0.2")
    assert s.host_ref == member != sim.backend.master_ref
    assert len(s.call_xenapi("host.get_all")) == 2
    assert _session(sim.host_urls[0]).host_ref == sim.backend.master_ref


def test_the_managed_host_outlives_a_master_move(sim):
    s = _session(sim.host_urls[1])
    member = s.host_ref
    s.call_xenapi("pool.designate_new_master", member)
    s.call_xenapi("pool.designate_new_master", sim.backend.host_by_address("127.0.0.1"))
    assert s.host_ref == member and s.call_xenapi("host.get_address", member) == "127.0.0.2"


def test_a_member_url_that_names_no_member_is_refused(sim):
    """127.0.0.2 answers HOST_IS_SLAVE, but if no host has that address or name: a clear error."""
    sim.backend.store.set("host", sim.backend.host_by_address("127.0.0.2"), address="10.9.9.9",
                          hostname="elsewhere", name_label="elsewhere")
    with pytest.raises(HostConnectionError, match="no member of that pool"):
        _session(sim.host_urls[1])


def test_master_moves_and_the_session_follows(sim):
    s = _session(sim.url)
    old, new = sim.backend.master_ref, s.call_xenapi("host.get_all")
    new = [h for h in new if h != old][0]
    a_vm = s.call_xenapi("VM.get_all")[0]
    s.call_xenapi("pool.designate_new_master", new)
    # a call that is not safe to repeat is still sent again: HOST_IS_SLAVE means it did not run
    s.call_xenapi("VM.set_name_description", a_vm, "moved")
    assert s.url == sim.host_urls[1]
    assert len(s.call_xenapi("VM.get_all")) > 0  # answered by the new master


def test_sessions_go_on_at_the_new_master_and_none_is_left_behind(sim):
    """Sessions are in the pool's database: after a move they are used at the new master,
    not logged out through the old one (which answers HOST_IS_SLAVE) and left behind."""
    s = _session(sim.url, concurrent=3)
    _busy(s, "VM.get_all", 6)
    before = _sessions_on_host(sim)
    hosts = s.call_xenapi("host.get_all")
    for n in range(4):  # there and back, twice
        sim.faults.add("VM.get_all", "move_master")
        assert s.call_xenapi("VM.get_all")
        assert s.url == sim.host_urls[(n + 1) % 2]
    assert _sessions_on_host(sim) == before
    assert len(hosts) == 2


def test_pool_of_sessions_is_bounded_and_reused(sim):
    s = _session(sim.url, concurrent=3)
    _busy(s, "VM.get_all_records", 12)
    assert s.peak_open <= 3
    assert _sessions_on_host(sim) <= 3


def test_expired_sessions_log_in_again(sim):
    s = _session(sim.url)
    sim.faults.add("VM.get_all", "expire_sessions")
    assert isinstance(s.call_xenapi("VM.get_all"), list)


def test_safe_calls_are_retried_after_a_lost_connection_and_unsafe_ones_are_not(sim):
    assert is_safe_to_repeat("VM.get_record") and not is_safe_to_repeat("VM.start")
    s = _session(sim.url)
    sim.faults.add("VM.get_all", "drop", count=3)  # xmlrpc.client itself resends once
    assert isinstance(s.call_xenapi("VM.get_all"), list)
    sim.faults.add("VM.destroy", "drop", count=2)
    with pytest.raises(HostConnectionError):
        s.call_xenapi("VM.destroy", "OpaqueRef:whatever")


def test_errors_carry_xapi_codes_and_no_secrets(sim, caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(XenAPIError) as e:
        XenAPISession(sim.url, "root", "wrong-password")
    assert e.value.code == "SESSION_AUTHENTICATION_FAILED"
    s = _session(sim.url)
    with pytest.raises(XenAPIError) as e:
        s.call_xenapi("VM.get_record", "OpaqueRef:nope")
    assert e.value.details == ["HANDLE_INVALID", "VM", "OpaqueRef:nope"]
    handles = {r["uuid"] for r in sim.backend.store.all_records("session").values()} \
        if hasattr(sim.backend.store, "all_records") else set()
    text = caplog.text + str(e.value)
    assert PASSWORD not in text and "wrong-password" not in text
    for ref in sim.backend.store.all("session"):
        assert ref not in text
    assert not handles & set(text.split())


def test_async_calls_wait_with_event_from_and_clean_up_their_tasks(sim):
    s = _session(sim.url)
    template = [r for r, v in s.call_xenapi("VM.get_all_records").items() if v["is_a_template"]][0]
    vm = s.call_async("VM.clone", template, "clone-1", timeout=30)
    assert s.call_xenapi("VM.get_name_label", vm) == "clone-1"
    with pytest.raises(XenAPIError) as e:
        s.call_async("VM.start", template, False, False, timeout=30)
    assert e.value.code == "VM_IS_TEMPLATE"
    assert s.call_xenapi("task.get_all") == []


def _tls_sim(tmp_path):
    config = SimConfig(password=PASSWORD, hosts=host_configs(1, 8192, 4))
    return Simulator(config, tmp_path / "tls-state", tls=True)


def test_tls_is_verified_by_default_and_a_ca_file_or_thumbprint_is_trusted(tmp_path):
    with _tls_sim(tmp_path) as sim:
        with pytest.raises(HostConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            _session(sim.url)
        assert _session(sim.url, tls=transport.TLSPolicy(ca_file=str(sim.certificate))).host_ref
        pem = sim.certificate.read_bytes()
        cert = x509.load_pem_x509_certificate(pem[pem.index(b"-----BEGIN CERTIFICATE"):])
        der = cert.public_bytes(serialization.Encoding.DER)
        good = ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
        assert _session(sim.url, tls=transport.TLSPolicy(thumbprint=good)).host_ref
        with pytest.raises((HostConnectionError, ssl.SSLError), match="thumbprint"):
            _session(sim.url, tls=transport.TLSPolicy(thumbprint="00" * 32))


def test_a_caller_waiting_for_a_session_gets_the_slot_a_broken_one_frees(sim):
    s = _session(sim.url, concurrent=1)
    holding = threading.Event()
    got: list = []

    def breaks_its_session():
        with pytest.raises(HostConnectionError), s._borrow():
            holding.set()
            time.sleep(0.3)
            raise HostConnectionError("connection reset")

    a = threading.Thread(target=breaks_its_session)
    a.start()
    holding.wait(5)
    b = threading.Thread(target=lambda: got.append(s.call_xenapi("VM.get_all")))
    b.start()
    a.join(5)
    b.join(10)
    assert got and isinstance(got[0], list), "the waiting caller never got a session"
    assert s.peak_open == 1


@pytest.fixture
def ha_pool(tmp_path):
    """Two hosts with a shared SR and HA armed, as XenServer HA wants them."""
    config = SimConfig(password=PASSWORD, hosts=host_configs(2, 16384, 8), shared_sr="nfs",
                       auth_failure_delay=0)
    with Simulator(config, tmp_path / "state") as sim:
        admin = _session(sim.url, originator="ha-admin")
        pool = admin.call_xenapi("pool.get_all")[0]
        admin.call_xenapi("pool.enable_ha", [], {})
        assert admin.call_xenapi("pool.get_ha_enabled", pool)
        with pytest.raises(XenAPIError, match="HA_IS_ENABLED"):
            admin.call_xenapi("pool.enable_ha", [], {})
        admin.close()
        yield sim


def test_the_master_dies_and_ha_elects_another_the_session_finds_it(ha_pool):
    """xapi_ha.ml: with HA armed a live member becomes master when the master dies. The
    session asks the members it knows which one is master now, and goes on there."""
    sim = ha_pool
    s = _session(sim.host_urls[1])  # manages the supporter
    managed = s.host_ref
    sim.faults.add("VM.get_all", "kill_master")
    assert s.call_xenapi("VM.get_all")  # safe to repeat: sent again to the new master
    assert s.url == sim.host_urls[1] and s.host_ref == managed
    assert sim.backend.master_address() == "127.0.0.2"
    # a call that may have run on the master that died is not sent again: its caller judges
    sim.faults.clear()
    s.call_xenapi("pool.designate_new_master", sim.backend.host_by_address("127.0.0.1"))
    a_vm = s.call_xenapi("VM.get_all")[0]
    sim.faults.add("VM.set_name_description", "kill_master")
    with pytest.raises(HostConnectionError):
        s.call_xenapi("VM.set_name_description", a_vm, "x")
    assert s.call_xenapi("VM.get_name_label", a_vm) is not None  # the next call works
    assert s.url == sim.host_urls[1]


def test_without_ha_a_dead_master_is_a_clear_error(sim):
    s = _session(sim.host_urls[1])
    sim.faults.add("VM.get_all", "kill_master")
    with pytest.raises(HostConnectionError):
        s.call_xenapi("VM.get_all")
    assert s.url == sim.host_urls[0]  # nobody else is master: nothing to follow


def test_ha_needs_a_shared_sr_for_its_statefile(sim):
    s = _session(sim.url)
    with pytest.raises(XenAPIError, match="CANNOT_CREATE_STATE_FILE"):
        s.call_xenapi("pool.enable_ha", [], {})
    with pytest.raises(XenAPIError, match="HA_NOT_ENABLED"):
        s.call_xenapi("pool.disable_ha")
