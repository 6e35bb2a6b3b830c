"""What an operator sets up on dom0s for resize and migration, done to simulated ones.

``link_images`` makes dom0's ``/images`` a link into the host's SR, as
xenapi-bootstrap does; ``trust`` gives the destination dom0 a root key that
the source dom0 accepts and the source's host key in its known_hosts (the
root trust between dom0s that migrations need).
"""

from __future__ import annotations

from pathlib import Path

import paramiko


def link_images(dom0_root: Path, sr_dir: Path) -> None:
    (sr_dir / "os-images").mkdir(exist_ok=True)
    link = dom0_root / "images"
    if not link.is_symlink():
        link.symlink_to(sr_dir / "os-images")


def trust(sim, source: str, dest: str) -> None:
    """The dom0 at ``dest`` may log into the one at ``source`` (xapisim addresses) as root."""
    ssh = sim.dom0_of(dest) / "root/.ssh"
    ssh.mkdir(parents=True, exist_ok=True)
    key_file = ssh / "id_ecdsa"
    if key_file.exists():
        key = paramiko.ECDSAKey(filename=str(key_file))
    else:
        key = paramiko.ECDSAKey.generate()
        key.write_private_key_file(str(key_file))
    host_key = paramiko.RSAKey(filename=str(sim.state_dir / "ssh_host_rsa_key"))
    with open(ssh / "known_hosts", "a") as f:
        f.write(f"[{source}]:{sim.ssh_port} {host_key.get_name()} {host_key.get_base64()}\n")
    auth = sim.dom0_of(source) / "root/.ssh"
    auth.mkdir(parents=True, exist_ok=True)
    with open(auth / "authorized_keys", "a") as f:
        f.write(f"{key.get_name()} {key.get_base64()} root@{dest}\n")
