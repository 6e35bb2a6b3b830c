"""xapisim's XenStore, as dom0's tools and the simulated guests reach it (Python 3.6).

Each node is a file under ``<dom0>/run/xapisim-xenstore`` whose path is the
node's (``/local/domain/5/data/host/<id>`` is
``run/xapisim-xenstore/local/domain/5/data/host/<id>``), holding its value;
a node with children is a directory, and its own value is not kept. Writes
go through a temporary file and a rename, so a reader never sees half a
value. Paths are absolute XenStore paths of ``[A-Za-z0-9_/.@:-]`` without
``..``, as xenstored accepts them.
"""

import os
import re

_PATH = re.compile(r"\A(/[A-Za-z0-9_.@:-]+)+\Z")


class XenStoreError(Exception):
    pass


def _root():
    return os.path.join(os.environ.get("XAPISIM_DOM0_ROOT", "/"), "run/xapisim-xenstore")


def node(path, root=None):
    """The file of XenStore node ``path``."""
    if not _PATH.match(path) or "/../" in path + "/" or "/./" in path + "/":
        raise XenStoreError(f"invalid path {path!r}")
    return os.path.join(root or _root(), path.lstrip("/"))


def read(path, root=None):
    try:
        with open(node(path, root)) as f:
            return f.read()
    except (FileNotFoundError, IsADirectoryError):
        raise XenStoreError(f"could not read path {path}") from None


def write(path, value, root=None):
    target = node(path, root)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    tmp = f"{target}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(value)
    os.replace(tmp, target)


def remove(path, root=None):
    import shutil
    target = node(path, root)
    if os.path.isdir(target):
        shutil.rmtree(target, ignore_errors=True)
    else:
        try:
            os.unlink(target)
        except FileNotFoundError:
            pass


def children(path, root=None):
    try:
        return sorted(n for n in os.listdir(node(path, root)) if ".tmp-" not in n)
    except (FileNotFoundError, NotADirectoryError):
        return []
