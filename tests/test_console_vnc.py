"""xapisim's /console handler and the domain's VNC server, over a raw socket.

console.ml ``real_proxy'`` answers CONNECT with http.ml's ``http_200_ok``
(Connection: keep-alive, Cache-Control: no-cache, no-store) and relays to
QEMU's VNC server; RFB 3.8 is RFC 6143. Not confirmed against a real host:
what xapi answers for a halted VM's console (we give 404).
"""
from __future__ import annotations

import socket
import struct

import pytest
from PIL import Image

from tests.conftest import diskless_vm
from xapisim import console_vnc


def _read(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, f"closed after {len(data)} of {n} bytes"
        data += chunk
    return data


def _connect(sim, path: str) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", sim.port), timeout=10)
    sock.sendall(f"CONNECT {path} HTTP/1.1\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    return sock, head


@pytest.fixture
def running(xapi):
    x = xapi.xenapi
    vm = diskless_vm(x, "screen")
    x.VM.set_HVM_boot_policy(vm, "BIOS order")
    x.VM.start(vm, False, False)
    return vm


def test_connect_then_rfb_38_with_the_pixel_format_the_client_sets(sim, xapi, running):
    x = xapi.xenapi
    [con] = [c for c in x.VM.get_consoles(running) if x.console.get_protocol(c) == "rfb"]
    assert x.console.get_location(con).startswith(f"{sim.url}/console?uuid=")
    sock, head = _connect(sim, f"/console?ref={con}&session_id={xapi._session}")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Cache-Control: no-cache, no-store" in head
    assert _read(sock, 12) == b"RFB 003.008\n"
    sock.sendall(b"RFB 003.008\n")
    assert _read(sock, 2) == bytes([1, 1])  # one security type: None
    sock.sendall(b"\x01")
    assert _read(sock, 4) == b"\0\0\0\0"
    sock.sendall(b"\x01")  # shared
    width, height = struct.unpack("!HH", _read(sock, 4))
    _read(sock, 16)
    (length,) = struct.unpack("!I", _read(sock, 4))
    assert (width, height, _read(sock, length)) == (640, 400, b"screen")
    # RGB565, big-endian
    fmt = console_vnc.PixelFormat(16, 16, True, True, (31, 63, 31), (11, 5, 0))
    sock.sendall(b"\0\0\0\0" + fmt.pack() + struct.pack("!BxHi", 2, 1, 0))
    sock.sendall(struct.pack("!BBHHHH", 3, 0, 0, 0, width, height))
    assert _read(sock, 4) == struct.pack("!BxH", 0, 1)
    assert struct.unpack("!HHHHi", _read(sock, 12)) == (0, 0, 640, 400, 0)
    pixels = _read(sock, 640 * 400 * 2)
    text = (sim.dom0_of("127.0.0.1") / "var/log/xen/guest"
            / f"console.{x.VM.get_domid(running)}").read_text()
    expected = console_vnc.render(text)
    assert pixels == fmt.encode(expected)
    assert pixels.count(b"\0") < len(pixels)  # not a blank screen: the text is drawn
    # an incremental request is answered once the guest writes more
    sock.sendall(struct.pack("!BBHHHH", 3, 1, 0, 0, width, height))
    sock.settimeout(0.5)
    with pytest.raises(TimeoutError):
        sock.recv(1)
    sock.settimeout(10)
    with open(sim.dom0_of("127.0.0.1") / "var/log/xen/guest"
              / f"console.{x.VM.get_domid(running)}", "a") as f:
        f.write("hello from the guest\n")
    assert _read(sock, 4) == struct.pack("!BxH", 0, 1)
    _read(sock, 12)
    assert _read(sock, 640 * 400 * 2) == fmt.encode(console_vnc.render(text + "hello from the guest\n"))
    sock.close()


def test_no_session_no_halted_vm(sim, xapi, running):
    x = xapi.xenapi
    [con] = [c for c in x.VM.get_consoles(running) if x.console.get_protocol(c) == "rfb"]
    sock, head = _connect(sim, f"/console?ref={con}")
    assert not head.startswith(b"HTTP/1.1 200")
    sock.close()
    x.VM.hard_shutdown(running)
    sock, head = _connect(sim, f"/console?ref={running}&session_id={xapi._session}")
    assert head.startswith(b"HTTP/1.1 404")
    sock.close()


def test_pixel_formats_are_encoded_as_the_client_asked():
    image = Image.new("RGB", (2, 1), (255, 128, 0))
    image.putpixel((1, 0), (0, 0, 255))
    little_bgrx = console_vnc.PixelFormat()  # shifts 16/8/0, little-endian: B G R X
    assert little_bgrx.encode(image) == bytes([0, 128, 255, 0, 255, 0, 0, 0])
    big = console_vnc.PixelFormat(big_endian=True)  # X R G B
    assert big.encode(image) == bytes([0, 255, 128, 0, 0, 0, 0, 255])
    rgb565 = console_vnc.PixelFormat(16, 16, True, True, (31, 63, 31), (11, 5, 0))
    assert rgb565.encode(image) == bytes([0xFB, 0xE0, 0x00, 0x1F])  # 31<<11 | 31<<5; 31
    with pytest.raises(ValueError):
        console_vnc.PixelFormat(true_colour=False).encode(image)


def test_over_tls_the_proxy_is_sent_to_the_plain_http_port(tmp_path):
    """xapi answers plain HTTP beside HTTPS (80 and 443); nova-novncproxy speaks plain TCP, so
    the driver names the plain port, and refuses a host set to https_only, which has none."""
    import re
    import types

    import XenAPI
    from nova import exception

    from nova_xenapi import console, transport
    from nova_xenapi.session import XenAPISession
    from tests.conftest import PASSWORD
    from xapisim import SimConfig, Simulator

    with Simulator(SimConfig(password=PASSWORD), tmp_path / "state", tls=True, http_port=0) as sim:
        pem = open(sim.certificate).read()
        ca = tmp_path / "ca.pem"
        ca.write_text(re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----",
                                pem, re.S).group(0))
        sdk = XenAPI.Session(sim.url, ignore_ssl=True)
        sdk.xenapi.login_with_password("root", PASSWORD, "2.21", "tests")
        x = sdk.xenapi
        vm = diskless_vm(x, "tls-guest")
        x.VM.set_HVM_boot_policy(vm, "BIOS order")
        x.VM.start(vm, False, False)
        session = XenAPISession(sim.url, "root", PASSWORD,
                                tls=transport.TLSPolicy(ca_file=str(ca)))
        instance = types.SimpleNamespace(name="tls-guest", uuid="u")
        info = console.vnc_console(session, instance, sim.http_port)
        assert (info.host, info.port) == ("127.0.0.1", sim.http_port) != ("127.0.0.1", sim.port)
        sock = socket.create_connection(("127.0.0.1", info.port), timeout=10)
        sock.sendall(f"CONNECT {info.internal_access_path} HTTP/1.1\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        assert head.startswith(b"HTTP/1.1 200 OK") and _read(sock, 12) == b"RFB 003.008\n"
        sock.close()
        x.host.set_https_only(x.host.get_all()[0], True)
        with pytest.raises(exception.ConsoleTypeUnavailable, match="HTTPS only"):
            console.vnc_console(session, instance, sim.http_port)
        with pytest.raises(OSError):  # the plain port is closed now
            sock = socket.create_connection(("127.0.0.1", sim.http_port), timeout=10)
            sock.sendall(f"CONNECT {info.internal_access_path} HTTP/1.1\r\n\r\n".encode())
            if not sock.recv(1):
                raise ConnectionResetError("closed")
        session.close()
        sdk.xenapi.session.logout()
