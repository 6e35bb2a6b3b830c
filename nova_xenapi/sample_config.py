"""``nova-xenapi-config``: print a commented sample of the [xenserver] options."""

from __future__ import annotations

import sys

from oslo_config import generator


def main(argv: list[str] | None = None) -> None:
    generator.main(["--namespace", "nova_xenapi", *(argv if argv is not None else sys.argv[1:])])
