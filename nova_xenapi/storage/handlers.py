"""Which image handler ``[xenserver] image_handler`` names, built with the options it takes."""

from __future__ import annotations

from nova import exception

from nova_xenapi.storage.direct_vhd import DirectVhdHandler
from nova_xenapi.storage.images import HandlerNotAvailable, LocalDevHandler, RemoteStreamHandler


def get_handler(name: str, independent_compute: bool = False, unplug_retries: int = 10,
                compression_level: int | None = None):
    """The handler called ``name``; vdi_local_dev needs a compute VM on the host."""
    if name == RemoteStreamHandler.name:
        return RemoteStreamHandler()
    if name == LocalDevHandler.name:
        if independent_compute:
            raise exception.NotSupportedWithOption(operation="image_handler = vdi_local_dev",
                                                   option="[xenserver] independent_compute")
        return LocalDevHandler(unplug_retries=unplug_retries)
    if name == DirectVhdHandler.name:
        return DirectVhdHandler(compression_level=compression_level)
    raise HandlerNotAvailable(name=name, reason="unknown handler")
