"""The one way the driver talks to XAPI.

``XenAPISession`` owns everything about the conversation with the host: a
bounded pool of logged-in ``XenAPI`` SDK sessions (``connection_concurrent``)
with an originator, the login timeout, following ``HOST_IS_SLAVE`` to the
pool master (at login and whenever the master moves), finding the new
master among the pool's members when the master dies (HA elects one), the
TLS policy, retrying with backoff only calls that are safe to repeat, running
``Async.*`` calls and waiting for their tasks with ``event.from``
(cancelling them on timeout), ``host.call_plugin`` and the HTTP handlers.
No other module opens a connection or handles a session reference, and
neither the password nor a session reference ever reaches a log line or an
exception message.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import socket
import threading
import time
import xmlrpc.client
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import XenAPI
from oslo_log import log as logging

from nova_xenapi import transport
from nova_xenapi.errors import HostConnectionError, TaskTimeout, XenAPIError

LOG = logging.getLogger(__name__)

ORIGINATOR = "nova-xenapi"
CALL_TIMEOUT = 300.0  # seconds a single XML-RPC exchange may take
RETRIES = 3  # attempts of a call that is safe to repeat
RETRY_DELAY = 0.5  # seconds before the first repeat; doubled before each further one
_TASK_RESULT = re.compile(r"<value>(.*?)</value>", re.S)


def is_safe_to_repeat(method: str) -> bool:
    """Read-only messages can be sent again after a lost connection."""
    name = method.rsplit(".", 1)[-1]
    return name.startswith("get_") or method == "event.from"


class XenAPISession:
    """A bounded pool of XAPI sessions to one host or pool."""

    def __init__(self, url: str, username: str, password: str, *, concurrent: int = 5,
                 login_timeout: float = 10, tls: transport.TLSPolicy | None = None,
                 originator: str = ORIGINATOR) -> None:
        self._url = url.rstrip("/")
        self._configured_url = self._url
        self._username = username
        self._password = password
        self._size = concurrent
        self._login_timeout = login_timeout
        self._tls = tls or transport.TLSPolicy()
        self._originator = originator
        self._idle: list[XenAPI.Session] = []  # logged-in sessions not lent out (newest last)
        self._slots = threading.Condition()  # guards _idle and _open; waiters wait for a slot
        self._lock = threading.Lock()
        self._open = 0  # sessions logged in (idle or lent out)
        self._generation = 0  # bumped when the master moves; older sessions are dropped
        self._secrets: set[str] = set()
        self.peak_open = 0
        self.calls = 0
        self.pump = None  # an events.EventPump, when one follows this session's pool
        self.host_ref = self.host_uuid = ""
        self._members: set[str] = set()  # the pool's host addresses, to find a new master
        self._find_named_host()

    @property
    def generation(self) -> int:
        """Bumped each time the session starts talking to another master (or pool)."""
        return self._generation

    def _find_named_host(self) -> None:
        first = self._checkout()
        try:
            #: the host this session's user manages: the one ``url`` names, even when the
            #: calls go to the pool master (which may move); refs outlive master changes
            self.host_ref = self._named_host(first, urlsplit(self._configured_url).hostname or "")
            self.host_uuid = self._call_on(first, "host.get_uuid", self.host_ref)
            self._learn_members(self._call_on(first, "host.get_all_records"))
        finally:
            self._checkin(first)

    def _learn_members(self, hosts: dict[str, dict]) -> None:
        self._members = {rec["address"] for rec in hosts.values() if rec.get("address")}

    def refresh_host(self) -> None:
        """Find this session's host again by its uuid: after ``pool.join`` its ref is the
        new pool's."""
        self.host_ref = self.call_xenapi("host.get_by_uuid", self.host_uuid)
        self._learn_members(self.call_xenapi("host.get_all_records"))

    def _rehome(self) -> None:
        """The host this session manages has left the pool it talked to (``pool.eject``: it
        came back as a pool of its own, with a fresh database).  Log in again where the
        configured URL points, and find the host there."""
        old = self.host_uuid
        with self._lock:
            self._url = self._configured_url
            self._generation += 1  # sessions of the old pool are logged out as they come back
        self._find_named_host()
        LOG.warning("XAPI host %s is no longer in the pool of its former master; it is now "
                    "managed through %s", self.host_uuid, self._url)
        if self.host_uuid != old:
            LOG.warning("the XAPI host's uuid changed from %s to %s", old, self.host_uuid)

    def _named_host(self, sdk: XenAPI.Session, named: str) -> str:
        """The pool member ``named`` (an address or host name of the configured URL)."""
        this = self._call_on(sdk, "session.get_this_host", sdk.handle)
        if urlsplit(self._url).hostname == named:
            return this  # no HOST_IS_SLAVE: the named host is the master itself
        try:
            wanted = {named, socket.gethostbyname(named)}
        except OSError:
            wanted = {named}
        records = self._call_on(sdk, "host.get_all_records")
        for ref, rec in records.items():
            if rec["address"] in wanted or rec["hostname"] == named or rec["name_label"] == named:
                return ref
        raise HostConnectionError(
            f"{named} redirected to the pool master {urlsplit(self._url).hostname}, but no "
            f"member of that pool has the address or name {named}")

    # ------------------------------------------------------------------ pool
    @property
    def url(self) -> str:
        return self._url

    def _login(self) -> XenAPI.Session:
        for _ in range(5):  # a pool has one master; a few hops at most
            tr = transport.XmlRpcTransport(self._url, self._tls, self._login_timeout)
            sdk = XenAPI.Session(self._url, transport=tr)
            try:
                sdk.login_with_password(self._username, self._password, "1.0", self._originator)
            except XenAPI.Failure as exc:
                if exc.details and exc.details[0] == "HOST_IS_SLAVE":
                    self._follow_master(exc.details[1])
                    continue
                raise self._error(exc) from None
            except (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError) as exc:
                raise HostConnectionError(f"cannot log in to {self._url}: {exc}") from None
            tr.timeout = CALL_TIMEOUT
            self._secrets.add(sdk.handle)
            return sdk
        raise HostConnectionError(f"{self._url}: too many HOST_IS_SLAVE redirections")

    def _url_of(self, address: str) -> str:
        parts = urlsplit(self._url)
        netloc = address if parts.port is None else f"{address}:{parts.port}"
        return urlunsplit((parts.scheme, netloc, "", "", ""))

    def _probe(self, url: str) -> tuple[str, str]:
        """What the host at ``url`` says to a login: ("master", ""), ("supporter", its
        master's address) or ("down", "")."""
        tr = transport.XmlRpcTransport(url, self._tls, self._login_timeout)
        sdk = XenAPI.Session(url, transport=tr)
        try:
            sdk.login_with_password(self._username, self._password, "1.0", self._originator)
        except XenAPI.Failure as exc:
            if exc.details and exc.details[0] == "HOST_IS_SLAVE" and len(exc.details) > 1:
                return "supporter", exc.details[1]
            return "down", ""
        except (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError):
            return "down", ""
        with contextlib.suppress(Exception):
            sdk.xenapi.session.logout()
        return "master", ""

    def _find_new_master(self) -> bool:
        """The master did not answer. With HA armed, the pool elects a live member as its
        new master: ask the members this session knows which one it is (a supporter names
        it; the master itself lets the login in) and follow it. True if the session now
        talks to another master; False if the master answers after all (a lost connection,
        not a dead host) or no member knows of another one (no HA: an operator must run
        ``pool-emergency-transition-to-master``)."""
        dead = urlsplit(self._url).hostname or ""
        if self._probe(self._url)[0] != "down":
            return False
        for address in sorted(self._members - {dead}):
            state, master = self._probe(self._url_of(address))
            if state == "master" or (state == "supporter" and master not in ("", dead)):
                LOG.warning("XAPI pool master %s does not answer; %s is the master now",
                            dead, master or address)
                self._follow_master(master or address)
                return True
        return False

    def _follow_master(self, master_address: str) -> None:
        new = self._url_of(master_address)
        with self._lock:
            if new != self._url:
                LOG.info("XAPI pool master is %s; following it", master_address)
                self._url = new
                self._generation += 1

    def _checkout(self) -> XenAPI.Session:
        """An idle session of the current master, or a new one while under the limit, or wait."""
        with self._slots:
            while True:
                sdk = self._idle.pop() if self._idle else None
                if sdk is not None or self._open < self._size:
                    break
                self._slots.wait()
            if sdk is None:
                self._open += 1
                self.peak_open = max(self.peak_open, self._open)
            generation = self._generation
        if sdk is not None:
            if getattr(sdk, "_nx_generation", None) != generation:
                sdk = self._rehome_session(sdk, generation)
            return sdk
        try:
            sdk = self._login()
        except BaseException:
            self._release_slot()
            raise
        sdk._nx_generation = generation
        return sdk

    def _rehome_session(self, old: XenAPI.Session, generation: int) -> XenAPI.Session:
        """A session logged in to a former master, now talking to the current one.

        Sessions live in the pool's database, which the new master holds, so
        the session goes on there; if it did not survive (a master that died
        with it), the SDK logs in again on SESSION_INVALID.  Logging it out
        instead would have to go to the old master, which answers
        HOST_IS_SLAVE or nothing, and would leave it behind.
        """
        tr = transport.XmlRpcTransport(self._url, self._tls, CALL_TIMEOUT)
        sdk = XenAPI.Session(self._url, transport=tr)
        # the SDK keeps the handle and how to log in again in these attributes
        sdk._session = old._session
        sdk.last_login_method = old.last_login_method
        sdk.last_login_params = old.last_login_params
        sdk._nx_generation = generation
        return sdk

    def _checkin(self, sdk: XenAPI.Session) -> None:
        with self._slots:
            self._idle.append(sdk)
            self._slots.notify()

    def _release_slot(self) -> None:
        with self._slots:
            self._open -= 1
            self._slots.notify()

    def _logout(self, sdk: XenAPI.Session) -> None:
        handle = sdk.handle
        with contextlib.suppress(Exception):
            sdk.xenapi.session.logout()
        self._secrets.discard(handle)

    @contextlib.contextmanager
    def _borrow(self) -> Iterator[XenAPI.Session]:
        """A session for one call.  A lost connection does not end the session on the host,
        and the SDK's transport connects again for the next call, so the session goes back
        to the pool either way (a session that did end is logged in again by the SDK)."""
        sdk = self._checkout()
        try:
            yield sdk
        finally:
            self._secrets.add(sdk.handle)  # the SDK may have logged in again
            self._checkin(sdk)

    def close(self) -> None:
        """Log out every idle session."""
        with self._slots:
            idle, self._idle = self._idle, []
            self._open -= len(idle)
            self._slots.notify_all()
        for sdk in idle:
            self._logout(sdk)

    # ----------------------------------------------------------------- calls
    def _error(self, exc: XenAPI.Failure) -> XenAPIError:
        details = [("<session>" if d in self._secrets else str(d)) for d in (exc.details or [])]
        return XenAPIError(details)

    def _call_on(self, sdk: XenAPI.Session, method: str, *args: Any) -> Any:
        self.calls += 1
        try:
            return sdk.xenapi_request(method, args)
        except XenAPI.Failure as exc:
            raise self._error(exc) from None
        except (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError) as exc:
            raise HostConnectionError(f"lost connection to {self._url} during {method}: {exc}") from None
        except xmlrpc.client.Fault as exc:
            raise XenAPIError(["INTERNAL_ERROR", exc.faultString]) from None

    def call_xenapi(self, method: str, *args: Any) -> Any:
        """Call ``Class.message`` with the session prepended; return its value.

        ``HOST_IS_SLAVE`` means the call did not run, so any call is sent again
        to the new master (a few times at most), and so is one that named the
        managed host by a ref it lost when it left its pool; a lost connection
        is retried, with backoff, only for calls that are safe to repeat.
        """
        retries = RETRIES if is_safe_to_repeat(method) else 1
        redirects = 3
        delay = RETRY_DELAY
        attempt = 0
        while True:
            try:
                with self._borrow() as sdk:
                    return self._call_on(sdk, method, *args)
            except XenAPIError as exc:
                old = self.host_ref
                if exc.code == "HANDLE_INVALID" and exc.details[1:3] == ["host", old]:
                    # the managed host has a new ref (it left its pool): the call did not
                    # run, so it is sent again naming the host by its new ref
                    self._rehome()
                    if self.host_ref != old and old in args and redirects > 0:
                        redirects -= 1
                        args = tuple(self.host_ref if a == old else a for a in args)
                        continue
                if exc.code != "HOST_IS_SLAVE" or redirects == 0:
                    raise
                redirects -= 1
                self._follow_master(exc.details[1])
            except HostConnectionError:
                attempt += 1
                if redirects > 0 and self._members and self._find_new_master():
                    redirects -= 1
                    if retries == 1:
                        raise  # it may have run on the master that died: the caller judges
                    continue  # sent again to the new master at once
                if attempt >= retries:
                    raise
                LOG.warning("XAPI call %s lost its connection; retrying in %.1fs", method, delay)
                time.sleep(delay)
                delay *= 2

    def call_async(self, method: str, *args: Any, timeout: float | None = None) -> Any:
        """Run ``Async.<method>`` and wait for its task; return the decoded result."""
        task = self.call_xenapi("Async." + method, *args)
        return self.wait_for_task(task, timeout, what=method)

    def wait_for_task(self, task: str, timeout: float | None, what: str = "task") -> Any:
        """Block until ``task`` ends (through the event pump if one runs, else its own
        ``event.from`` loop); cancel it after ``timeout`` seconds."""
        if self.pump is not None and self.pump.running:
            return self._wait_with_pump(task, timeout, what)
        deadline = None if timeout is None else time.monotonic() + timeout
        token = ""
        try:
            while True:
                wait = 30.0 if deadline is None else max(0.0, min(30.0, deadline - time.monotonic()))
                batch = self.call_xenapi("event.from", ["task/" + task], token, wait)
                token = batch["token"]
                for ev in batch["events"]:
                    if ev["ref"] != task:
                        continue
                    if ev["operation"] == "del":
                        raise XenAPIError(["HANDLE_INVALID", "task", task])
                    snap = ev["snapshot"]
                    if snap["status"] == "success":
                        return _decode_task_result(snap["result"])
                    if snap["status"] in ("failure", "cancelled"):
                        info = snap["error_info"] or ["TASK_CANCELLED", task]
                        raise XenAPIError(list(info))
                if deadline is not None and time.monotonic() >= deadline:
                    with contextlib.suppress(XenAPIError, HostConnectionError):
                        self.call_xenapi("task.cancel", task)
                    raise TaskTimeout(f"{what} did not finish within {timeout:.0f}s; it was cancelled")
        finally:
            self.discard_task(task)

    def _wait_with_pump(self, task: str, timeout: float | None, what: str) -> Any:
        try:
            snap = self.pump.wait(task, timeout)
            if snap is None:
                with contextlib.suppress(XenAPIError, HostConnectionError):
                    self.call_xenapi("task.cancel", task)
                raise TaskTimeout(f"{what} did not finish within {timeout:.0f}s; it was cancelled")
            return _outcome(task, snap)
        finally:
            self.discard_task(task)

    def follow_task(self, task: str, on_progress, every: float = 1.0, patience: int = 5) -> Any:
        """Wait for a long task without a deadline, calling ``on_progress(fraction)`` about
        every ``every`` seconds; the decoded result, or the task's error.  The task is
        destroyed at the end.  Reading the task may fail ``patience`` times in a row before
        that failure is raised: the task runs on regardless of our looking.

        For what may run for minutes and be cancelled by someone else (a live migration).
        """
        misses = 0
        try:
            while True:
                try:
                    snap = self._task_snapshot(task, every)
                    misses = 0
                except (XenAPIError, HostConnectionError):
                    misses += 1
                    if misses >= patience:
                        raise
                    time.sleep(every)
                    continue
                if snap["status"] == "pending":
                    on_progress(float(snap["progress"]))
                    continue
                return _outcome(task, snap)
        finally:
            self.discard_task(task)

    def remove(self, method: str, *args: Any, done: tuple[str, ...] = ("HANDLE_INVALID",),
               attempts: int = 3) -> None:
        """Call a message that removes something (``VDI.destroy``, ``VBD.unplug``, ...).

        A removal that gives up leaves an orphan on the host, so after a lost
        connection or an error it is asked again (``again``); an error code in
        ``done`` says the thing is gone already, which is success (so is the
        repeat of a removal whose answer was lost).
        """
        self.again(self.call_xenapi, method, *args, done=done, attempts=attempts)

    @staticmethod
    def again(fn: Any, *args: Any, done: tuple[str, ...] = (), attempts: int = 3) -> Any:
        """``fn(*args)``, called again after a XAPI error or a lost connection, ``attempts``
        times in all; a XAPI error whose code is in ``done`` counts as success (None)."""
        for attempt in range(1, attempts + 1):
            try:
                return fn(*args)
            except XenAPIError as exc:
                if exc.code in done:
                    return None
                if attempt == attempts:
                    raise
            except HostConnectionError:
                if attempt == attempts:
                    raise
            time.sleep(0.1 * attempt)
        return None

    def discard_task(self, task: str) -> None:
        """Destroy a finished task: a task left behind stays in the host's task list until
        xapi's own garbage collector gets to it, so failing here is only worth a warning."""
        try:
            self.remove("task.destroy", task)
        except (XenAPIError, HostConnectionError) as exc:
            LOG.warning("could not destroy XAPI task %s: %s", task, exc)

    def _task_snapshot(self, task: str, wait: float) -> dict:
        """The task's record once it ends or ``wait`` seconds pass; status ``gone`` if destroyed."""
        if self.pump is not None and self.pump.running:
            snap = self.pump.wait(task, wait)
            if snap is not None:
                return snap
        else:
            time.sleep(wait)
        rec = self.get_record("task", task)
        return rec if rec is not None else {"status": "gone"}

    def call_plugin(self, plugin: str, fn: str, args: dict[str, str], host: str | None = None) -> str:
        """Run a dom0 plugin function on ``host`` (default: this host)."""
        return self.call_xenapi("host.call_plugin", host or self.host_ref, plugin, fn, args)

    def get_record(self, cls: str, ref: str) -> dict | None:
        """A record, or None if the object is gone."""
        try:
            return self.call_xenapi(f"{cls}.get_record", ref)
        except XenAPIError as exc:
            if exc.code == "HANDLE_INVALID":
                return None
            raise

    # ------------------------------------------------------------------ HTTP
    def console_path(self, path: str, console_ref: str) -> str:
        """The /console request target a VNC proxy uses; it carries a pooled session."""
        with self._borrow() as sdk:
            return path + "?" + urlencode({"ref": console_ref, "session_id": sdk.handle})

    @contextlib.contextmanager
    def http_request(self, method: str, path: str, query: dict[str, str],
                     timeout: float = CALL_TIMEOUT, address: str | None = None
                     ) -> Iterator[tuple[http.client.HTTPConnection, str]]:
        """A connection to the master (or the pool's host at ``address``, for a handler each
        host serves for itself, such as /rrd_updates) and the request target for a XAPI
        HTTP handler.

        The session reference is added to the query here and never leaves
        this method in an error message.
        """
        with self._borrow() as sdk:
            target = path + "?" + urlencode({**query, "session_id": sdk.handle})
            url = self._url_of(address) if address else self._url
            conn = transport.open_connection(url, self._tls, timeout)
            try:
                yield conn, target
            except (OSError, http.client.HTTPException) as exc:
                raise HostConnectionError(f"{method} {path} to {url} failed: {exc}") from None
            finally:
                conn.close()


def _outcome(task: str, snap: dict) -> Any:
    """A finished task's decoded result, or its error (HANDLE_INVALID if it is gone)."""
    if snap["status"] == "gone":
        raise XenAPIError(["HANDLE_INVALID", "task", task])
    if snap["status"] == "success":
        return _decode_task_result(snap["result"])
    raise XenAPIError(list(snap["error_info"] or ["TASK_CANCELLED", task]))


def _decode_task_result(result: str) -> Any:
    """Task results are XML-RPC value fragments; return the string inside."""
    if not result:
        return ""
    m = _TASK_RESULT.search(result)
    return m.group(1) if m else result


def from_conf(conf: Any) -> XenAPISession:
    """Build a session from the [xenserver] options."""
    xs = conf.xenserver
    if not xs.connection_url or xs.connection_password is None:
        raise ValueError("[xenserver] connection_url and connection_password must be set")
    tls = transport.TLSPolicy(verify=xs.verify_ssl, ca_file=xs.ca_file,
                              thumbprint=xs.certificate_thumbprint)
    return XenAPISession(xs.connection_url, xs.connection_username, xs.connection_password,
                         concurrent=xs.connection_concurrent, login_timeout=xs.login_timeout, tls=tls)

