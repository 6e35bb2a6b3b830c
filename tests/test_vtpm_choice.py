"""Which vTPM requests the driver takes (``nova_xenapi/vtpm.py``), and the refusals."""
from __future__ import annotations

import types

import pytest
from nova import exception, objects

from nova_xenapi import vtpm

objects.register_all()
OK = {"hw:tpm_version": "2.0", "hw:tpm_model": "tpm-crb", "hw:tpm_secret_security": "host"}


def _instance(specs: dict) -> types.SimpleNamespace:
    return types.SimpleNamespace(name="instance-1", flavor=objects.Flavor(extra_specs=specs))


def _image(**props) -> objects.ImageMeta:
    return objects.ImageMeta.from_dict({"properties": props})


def test_no_request_no_vtpm():
    assert vtpm.wanted(_instance({}), _image(), "hvm") is False


def test_what_xenserver_offers_is_taken_from_the_flavor_or_the_image():
    assert vtpm.wanted(_instance(OK), _image(), "uefi") is True
    image = _image(hw_tpm_version="2.0", hw_tpm_model="tpm-crb")
    assert vtpm.wanted(_instance({"hw:tpm_secret_security": "host"}), image, "uefi") is True


@pytest.mark.parametrize("change, mode, says", [
    ({"hw:tpm_version": "1.2", "hw:tpm_model": "tpm-tis"}, "uefi", "TPM 2.0 only"),
    ({"hw:tpm_model": "tpm-tis"}, "uefi", "CRB device"),
    ({"hw:tpm_secret_security": "user"}, "uefi", "hw:tpm_secret_security=host"),
    ({"hw:tpm_secret_security": "deployment"}, "uefi", "hw:tpm_secret_security=host"),
    ({}, "hvm", "UEFI guests only"),
])
def test_what_it_cannot_give_is_refused_clearly(change, mode, says):
    with pytest.raises(exception.InvalidInput, match=says):
        vtpm.wanted(_instance({**OK, **change}), _image(), mode)
