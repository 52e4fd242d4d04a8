"""Events to wazuh-analysisd: one datagram each on the queue socket, in Wazuh's integration format.

    1:opencti:{"integration":"opencti","opencti":{...}}                      (manager, agent 000, no agent)
    1:[004] (app01) 192.168.20.14->opencti:{"integration":"opencti",...}     (agent alerts; | and : escaped)
"""
import _socket
import time

from socstack_core import jsonio

from .observables import as_dict, clip
from .settings import INTEGRATION

MAX_MESSAGE_BYTES = 63 * 1024  # analysisd drops queue messages of 64 KiB (OS_MAXSTR) and more
_TIMEOUTS = (TimeoutError, getattr(_socket, "timeout", TimeoutError))  # distinct classes on Python 3.9

# Parts dropped, in this order, from an event that does not fit in one queue message.
TRIM_ORDER = (
    ("source", "command_line"), ("source", "execve"), ("source", "query_results"), ("source", "hashes"),
    ("indicator", "references"), ("indicator", "labels"), ("indicator", "pattern"),
    ("related", "indicator"), ("source",), ("indicator",),
)  # fmt: skip


class QueueError(Exception):
    """An event could not be handed to wazuh-analysisd."""


def prune(value):
    """Drop None, empty strings, lists and dicts (booleans and zeros stay)."""
    if isinstance(value, dict):
        cleaned = {k: prune(v) for k, v in value.items()}
        return {k: v for k, v in cleaned.items() if not _empty(v)}
    if isinstance(value, list):
        return [v for v in (prune(v) for v in value) if not _empty(v)]
    return value


def _empty(value):
    return value is None or (isinstance(value, (str, list, dict)) and not value)


def queue_location(alert):
    """'opencti' for the manager, else '[id] (name) ip->opencti' escaped as analysisd expects."""
    agent = as_dict(alert.get("agent"))
    agent_id = str(agent.get("id") or "000")
    if agent_id == "000":
        return INTEGRATION
    location = f"[{agent_id}] ({agent.get('name') or 'unknown'}) {agent.get('ip') or 'any'}"
    return location.replace("|", "||").replace(":", "|:") + "->" + INTEGRATION


def _message(location, body):
    return f"1:{location}:{jsonio.dumps({'integration': INTEGRATION, INTEGRATION: body}, ensure_ascii=True)}".encode()


def encode_message(event, location):
    """'1:<location>:<json>' below the queue size limit, trimming the event when needed."""
    body = prune(event)
    for path in (*TRIM_ORDER, None):
        message = _message(location, body)
        if len(message) <= MAX_MESSAGE_BYTES:
            return message
        if path is None:
            break
        parent = body
        for part in path[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if isinstance(parent, dict):
            parent.pop(path[-1], None)
    minimal = {"event_type": body.get("event_type"), "error": clip(str(body.get("error") or ""), 200)}
    return _message(clip(location, 1024), prune(minimal))


def send_events(events, alert, socket_path, deadline):
    """One datagram per event to the analysisd queue socket; gives up (QueueError) at deadline."""
    location = queue_location(alert)
    messages = [encode_message(event, location) for event in events]
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM)
    try:
        for step, message in enumerate([None, *messages]):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no time left before the run's deadline")
            sock.settimeout(remaining)
            if step == 0:
                sock.connect(socket_path)
            else:
                sock.send(message)
    except OSError as exc:
        reason = "timed out (the queue is full)" if isinstance(exc, _TIMEOUTS) else (exc.strerror or exc)
        raise QueueError(f"cannot send to the Wazuh queue socket {socket_path}: {reason}") from None
    finally:
        sock.close()
