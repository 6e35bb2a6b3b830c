"""network.create names bridges as xapi does (ocaml/xapi/xapi_network.ml: create,
choose_bridge_name, bridge_blacklist), over both wire protocols."""
from __future__ import annotations

import pytest
import XenAPI


def _net(client, **extra):
    return client("network.create", {"name_label": "n", "name_description": "", "MTU": "0",
                                     "other_config": {}, **extra})


def test_an_empty_bridge_gets_the_next_free_xapi_name(client):
    first = client("network.get_bridge", _net(client))
    second = client("network.get_bridge", _net(client))
    assert first.startswith("xapi") and first[4:].isdigit()
    assert second == f"xapi{int(first[4:]) + 1}"
    assert int(client("network.get_MTU", _net(client))) == 1500  # MTU <= 0 becomes 1500


def test_a_given_bridge_name_is_kept(client):
    assert client("network.get_bridge", _net(client, bridge="br-int")) == "br-int"
    with pytest.raises(XenAPI.Failure) as e:
        _net(client, bridge="br-int")
    assert e.value.details == ["BRIDGE_NAME_EXISTS", "br-int"]


@pytest.mark.parametrize("bridge", ["xenbr9", "xapi7", "vif1.0", "tap0", "eth1", "a-very-long-bridge"])
def test_reserved_or_long_bridge_names_are_refused(client, bridge):
    with pytest.raises(XenAPI.Failure) as e:
        _net(client, bridge=bridge)
    assert e.value.details == ["INVALID_VALUE", "bridge", bridge]
