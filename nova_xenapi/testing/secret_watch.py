"""A logging handler that reads every record, DEBUG included, for secrets the test used.

The functional tests install it for their whole run: the XAPI password, every
XAPI session handed out (xapisim reports each login to it), the Glance token
and the CHAP secrets must appear in no log line and no logged traceback.
"""

from __future__ import annotations

import logging
import threading
import traceback

#: loggers whose DEBUG records are read too (the third-party ones below sit at WARNING
#: otherwise); SQL and AMQP are left out, they carry no XAPI secret and flood at DEBUG
DEBUG_LOGGERS = ("nova", "nova_xenapi", "xapisim", "oslo", "oslo_concurrency", "keystoneauth",
                 "glanceclient", "urllib3", "XenAPI", "os_brick", "paramiko", "stevedore")


class SecretWatch(logging.Handler):
    """Collects the log records that hold any of ``secrets`` (the secret itself is not kept)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.secrets: set[str] = set()
        self.found: list[str] = []
        self._guard = threading.Lock()

    def add(self, secret: str) -> None:
        with self._guard:
            self.secrets = self.secrets | {secret}

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a record that cannot format holds nothing to find
            return
        if record.exc_info and record.exc_info[1] is not None:
            text += "".join(traceback.format_exception(*record.exc_info))
        for secret in self.secrets:
            if secret in text:
                with self._guard:
                    self.found.append(f"{record.name} {record.levelname}: "
                                      + text.replace(secret, "<SECRET>")[:300])

    def install(self) -> None:
        root = logging.getLogger()
        root.addHandler(self)
        for name in DEBUG_LOGGERS:
            logging.getLogger(name).setLevel(logging.DEBUG)

    def remove(self) -> None:
        logging.getLogger().removeHandler(self)
