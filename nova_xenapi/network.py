"""VIFs on Open vSwitch's integration bridge, for neutron's OVS agent.

Each Nova VIF becomes a XAPI VIF on the network whose bridge (or name label)
is ``[xenserver] ovs_integration_bridge``, with neutron's port id in
``other_config:nicira-iface-id`` so the agent in dom0 can find and wire the
port, as the old XenAPIOpenVswitchDriver did.
"""

from __future__ import annotations

from typing import Any

from nova import exception

from nova_xenapi.session import XenAPISession

DEFAULT_MTU = 1500


class XenAPIOpenVswitchDriver:
    """Plugs Nova VIFs into the integration bridge network."""

    def __init__(self, session: XenAPISession, bridge: str) -> None:
        self._session = session
        self._bridge = bridge
        self._network: str | None = None

    def integration_network(self) -> str:
        if self._network is None:
            for ref, rec in self._session.call_xenapi("network.get_all_records").items():
                if self._bridge in (rec["bridge"], rec["name_label"]):
                    self._network = ref
                    break
            else:
                raise exception.NetworkNotFoundForBridge(bridge=self._bridge)
        return self._network

    def create(self, vm: str, device: int, vif: Any) -> str:
        mtu = (vif.get("network") or {}).get("meta", {}).get("mtu") or DEFAULT_MTU
        return self._session.call_xenapi("VIF.create", {
            "device": str(device),
            "network": self.integration_network(),
            "VM": vm,
            "MAC": vif["address"],
            "MTU": str(mtu),
            "other_config": {"nicira-iface-id": vif["id"]},
            "qos_algorithm_type": "",
            "qos_algorithm_params": {},
            "locking_mode": "network_default",
        })

    def plug_all(self, vm: str, network_info: Any) -> list[str]:
        return [self.create(vm, i, vif) for i, vif in enumerate(network_info or [])]

    def find(self, vm: str, vif_id: str) -> str | None:
        for ref in self._session.call_xenapi("VM.get_VIFs", vm):
            rec = self._session.get_record("VIF", ref)
            if rec and rec["other_config"].get("nicira-iface-id") == vif_id:
                return ref
        return None

    def attach(self, vm: str, vif: Any) -> str:
        """Add a VIF to a VM, hot-plugged if it is running."""
        allowed = self._session.call_xenapi("VM.get_allowed_VIF_devices", vm)
        if not allowed:
            raise exception.InterfaceAttachFailed(instance_uuid=vif.get("id"))
        ref = self.create(vm, int(allowed[0]), vif)
        try:
            if self._session.call_xenapi("VM.get_power_state", vm) == "Running":
                self._session.call_xenapi("VIF.plug", ref)
        except BaseException:
            self._session.remove("VIF.destroy", ref)
            raise
        return ref

    def detach(self, vm: str, vif_id: str) -> None:
        ref = self.find(vm, vif_id)
        if ref is None:
            return
        if self._session.call_xenapi("VIF.get_currently_attached", ref):
            self._session.remove("VIF.unplug", ref, done=("DEVICE_ALREADY_DETACHED",))
        self._session.remove("VIF.destroy", ref)
