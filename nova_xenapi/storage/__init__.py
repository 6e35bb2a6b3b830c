"""The driver's storage: who owns what.

* ``disks``: VDIs and VBDs. It chooses the SR, makes, attaches, fills, reads and
  removes disks. Every other module here builds on it.
* ``images``: the two streaming image handlers (``vdi_remote_stream``,
  ``vdi_local_dev``), the image formats, and root disk sizing.
* ``image_checks``: an image's bytes checked as they stream from Glance (format,
  qcow2 backing and data files, differencing VHDs, size), before a disk holds them.
* ``direct_vhd``: the ``direct_vhd`` handler. dom0 moves VHD chains between
  Glance and a file SR.
* ``handlers``: picks the handler that ``[xenserver] image_handler`` names.
* ``image_cache``: ``cache_images``. Base images stay in the SR, are cloned for
  each instance, and are aged out.
* ``coalesce``: waits for the SR's garbage collector to coalesce a VHD chain
  after a snapshot.
* ``kernels``: AMI kernels and ramdisks in dom0's ``/boot/guest``.
* ``blank_disks``: swap and ephemeral disks, formatted here and sent as VHD.
* ``root_partition``: ``auto_disk_config``. It grows the root partition and
  filesystem.
* ``volume_sources``: what Cinder's connection info names (an iSCSI LUN or an
  NFS file), its SR, and how it becomes a VDI.
* ``volumes``: Cinder volumes' SR, PBD and VBD lifecycle: attach, detach,
  extend, swap, and what migrations do with them.

Imports flow one way: ``handlers`` → ``direct_vhd`` → ``images`` → ``disks``
→ the session layer (``images`` also → ``image_checks``), and ``volumes`` →
``volume_sources`` → the session layer and the plugin calls. Nothing here imports the modules that use storage
(spawn, snapshot, migration).
"""
