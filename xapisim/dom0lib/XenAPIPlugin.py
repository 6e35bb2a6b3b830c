"""The dom0 library XAPI plugins import (``import XenAPIPlugin``), as a XenServer dom0 has it.

Behaviour follows the published protocol (xen-api python3/examples/XenAPIPlugin.py):
argv[1] is an XML-RPC methodCall whose params are (session ref, struct of
string arguments); the function's result is printed as an XML-RPC response
``{Status: Success, Value: result}``; ``Failure(code, params)`` prints
``{Status: Failure, ErrorDescription: [code, *params]}``; any other exception
prints ``XENAPI_PLUGIN_FAILURE [method, exception class, message]``; an
unknown function ``UNKNOWN_XENAPI_PLUGIN_FUNCTION [method]``.  xapisim puts
this file on the plugins' import path; it is not part of any plugin set.
"""

import sys
import xmlrpc.client


class Failure(Exception):
    """A plugin failure with a XAPI-style error code and parameters."""

    def __init__(self, code, params):
        Exception.__init__(self)
        self.params = [code] + list(params)

    def __str__(self):
        return str(self.params)


def success_message(result):
    return xmlrpc.client.dumps(({"Status": "Success", "Value": result},), "", True)


def failure_message(description):
    return xmlrpc.client.dumps(({"Status": "Failure", "ErrorDescription": description},), "", True)


class _LocalSession:
    """The session a plugin is handed: ``XenAPI.xapi_local()`` in the caller's session, made
    when the plugin first uses it. Importing the SDK costs more than most plugins take to
    run, and most never call XAPI back."""

    def __init__(self, session_id):
        self._ref = session_id
        self._sdk = None

    def __getattr__(self, name):
        if self._sdk is None:
            import XenAPI  # a dom0 has it
            self._sdk = XenAPI.xapi_local()
            self._sdk._session = self._ref
        return getattr(self._sdk, name)


def dispatch(fn_table):
    if len(sys.argv) != 2:
        raise Exception("Incorrect number of commandline arguments")
    params, methodname = xmlrpc.client.loads(sys.argv[1])
    session_id, args = params[0], params[1]
    if methodname not in fn_table:
        print(failure_message(["UNKNOWN_XENAPI_PLUGIN_FUNCTION", methodname]))
        return
    try:
        result = fn_table[methodname](_LocalSession(session_id), args)
        print(success_message(result))
    except Failure as e:
        print(failure_message(e.params))
    except Exception as e:  # noqa: BLE001 - reported as xapi reports it
        print(failure_message(["XENAPI_PLUGIN_FAILURE", methodname, e.__class__.__name__, str(e)]))
