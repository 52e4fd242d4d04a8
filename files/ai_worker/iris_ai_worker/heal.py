"""Convergence after late writes (docs/ai-worker.md, "Late writes: replay and heal").

IRIS 2.4.20 has no compare-and-swap, and a write held past its timeout (a saturated IRIS, a database
lock) can be applied at any later time: it then puts back the tag string and owner it was computed from.
The worker cannot stop that, so it makes every such write harmless afterwards. IRIS's own
``modification_history`` is the log: every update leaves ``"alert_tags" from "<old>" to "<new>"`` (and
the same for ``alert_owner_id``) with the user who sent it (reference: iris-2.4.20 transcripts). Replaying
that log gives the state the alert should have:

- an entry of a **worker account** (one that ever added or removed an ``ai-claim:`` tag on this alert)
  contributes only its changes to ``ai-*`` tags: a worker never means to change an analyst's tags or
  owner, so whatever its write did to them was a stale copy and is undone;
- a worker entry that **adds ``ai-pending``** (a claim written on a read older than the review it lands
  after), or that neither found nor left a claim (a final write that landed after its claim was gone),
  is **stale** and skipped whole; so is any entry that wrote a claim token the caller knows it gave up;
- every other entry (analysts, the forwarder, other tools) is applied as it was: an analyst's owner,
  tags and note always win.

The result differs from the alert only when a write went wrong; then one update puts it right. Each
worker also keeps a small journal of the writes it sent whose outcome it cannot know (no answer in time,
killed before the answer): those alerts are re-checked for a while (``Suspects``), with their rounds'
duplicate comments, because no other worker ever looks at a finished alert again.
"""
import os
import re
import time

from socstack_core import files
from socstack_core.jsonio import loads

from .tags import CLAIM_PREFIX, TAG_PENDING, TAG_PROCESSING, join_tags, split_tags

_CHANGE_RE = re.compile(r'"(alert_tags|alert_owner_id)" from "(.*?)" to "(.*?)"(?=,"|$)', re.DOTALL)


class Entry:
    """One modification_history entry: when, who, and its tag and owner changes (``None``: unchanged)."""

    __slots__ = ("owner", "stamp", "tags", "user")

    def __init__(self, stamp, user, tags, owner):
        self.stamp = stamp
        self.user = user
        self.tags = tags  # (old tag list, new tag list) or None
        self.owner = owner  # (old owner, new owner) or None; an owner is an int or None


def _owner(text):
    text = (text or "").strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


def parse_history(history):
    """The entries of a modification_history mapping, oldest first; unreadable entries are left out."""
    entries = []
    for key, item in (history or {}).items() if isinstance(history, dict) else ():
        try:
            stamp = float(key)
        except (TypeError, ValueError):
            continue
        if not isinstance(item, dict):
            continue
        changes = {m.group(1): (m.group(2), m.group(3)) for m in _CHANGE_RE.finditer(str(item.get("action") or ""))}
        tags = changes.get("alert_tags")
        owner = changes.get("alert_owner_id")
        entries.append(Entry(stamp, item.get("user_id"),
                             (split_tags(tags[0]), split_tags(tags[1])) if tags else None,
                             (_owner(owner[0]), _owner(owner[1])) if owner else None))
    entries.sort(key=lambda entry: entry.stamp)
    return entries


def _claims(tags):
    return {tag for tag in tags if tag.startswith(CLAIM_PREFIX)}


def _is_ai(tag):
    return tag.startswith("ai-")


def worker_accounts(entries):
    """Users that added or removed a claim tag on this alert: only workers write ``ai-claim:`` tags."""
    return {e.user for e in entries if e.tags and _claims(e.tags[0]) != _claims(e.tags[1])}


def is_stale(entry, disowned=frozenset()):
    """A worker entry that must not count (see the module docstring)."""
    if not entry.tags:
        return False
    old, new = entry.tags
    if TAG_PENDING in new and TAG_PENDING not in old:
        return True
    if not _claims(old) and not _claims(new):
        return True
    return bool(_claims(new) & set(disowned))


def _apply(tags, entry, only_ai):
    old, new = set(entry.tags[0]), set(entry.tags[1])
    added = [t for t in entry.tags[1] if t not in old and (not only_ai or _is_ai(t))]
    removed = {t for t in old - new if not only_ai or _is_ai(t)}
    return [t for t in tags if t not in removed] + [t for t in added if t not in tags]


def replay(history, current_tags, current_owner, disowned=frozenset()):
    """(tags, owner) the alert should have after its history is replayed (see the module docstring), or
    None when the history does not explain the alert as it is (a change IRIS did not log, a log cut
    short): then nothing is trusted and nothing is changed."""
    entries = parse_history(history)
    workers = worker_accounts(entries)
    first_tags = next((e.tags[0] for e in entries if e.tags), None)
    first_owner = next((e.owner for e in entries if e.owner), None)
    tags = plain = list(first_tags) if first_tags is not None else list(current_tags)
    owner = plain_owner = first_owner[0] if first_owner is not None else current_owner
    for entry in entries:
        worker = entry.user in workers
        if entry.tags:
            plain = _apply(plain, entry, only_ai=False)
        if entry.owner:
            plain_owner = entry.owner[1]
        if worker and is_stale(entry, disowned):
            continue
        if entry.tags:
            tags = _apply(tags, entry, only_ai=worker)
        if entry.owner and not worker:
            owner = entry.owner[1]
    if set(plain) != set(current_tags) or plain_owner != current_owner:
        return None
    if set(tags) != set(current_tags):
        # ai-processing goes with a claim (tags.py): a skipped entry may have been the one that added either.
        tags = [t for t in tags if t != TAG_PROCESSING] + ([TAG_PROCESSING] if _claims(tags) else [])
    ordered = [t for t in current_tags if t in tags] + [t for t in tags if t not in current_tags]
    return ordered, owner


def owner_of(alert):
    owner = alert.get("alert_owner_id")
    return owner if isinstance(owner, int) and owner > 0 else None


def healed(alert, disowned=frozenset()):
    """The alert's tags and owner as they should be, or None when they already are."""
    current = split_tags(alert.get("alert_tags"))
    result = replay(alert.get("modification_history"), current, owner_of(alert), disowned)
    if result is None:
        return None
    tags, owner = result
    if set(tags) == set(current) and owner == owner_of(alert):
        return None
    return tags, owner


def heal(iris, alert, log, disowned=frozenset(), why="a late write"):
    """Put the alert right when its history says a write went wrong; True when it wrote."""
    fix = healed(alert, disowned)
    if fix is None:
        return False
    tags, owner = fix
    before = split_tags(alert.get("alert_tags"))
    iris.set_tags({"alert_id": alert["alert_id"], "alert_owner_id": owner if owner is not None else -1}, tags)
    gone = [t for t in before if t not in tags]
    back = [t for t in tags if t not in before]
    log.warning(f"alert {alert['alert_id']}: healed after {why}: tags {join_tags(back) or '-'} restored, "
                f"{join_tags(gone) or '-'} removed, owner {owner if owner is not None else 'none'}")
    return True


JOURNAL_WINDOW = 24 * 3600.0  # how long an unanswered write is watched for
RECHECK_FIRST = 1.0  # seconds before the first re-check; the gap doubles after each one...
RECHECK_MAX = 900.0  # ...up to this


class Suspects:
    """Writes whose outcome this worker cannot know, by alert: the claim tokens it sent (given up unless the
    claim was acknowledged in time) and the rounds it commented on. Written before each write (a file in the
    state directory when there is one, so a killed worker's restart knows them) and re-checked for
    ``window`` seconds after the last one, at gaps that double from RECHECK_FIRST up to RECHECK_MAX."""

    def __init__(self, state_dir, instance, window=JOURNAL_WINDOW, wall=time.time):
        self.path = os.path.join(state_dir, f"heal-{instance}.json") if state_dir else None
        self.window = window
        self.wall = wall
        self.entries = self._load()

    def _load(self):
        if not self.path:
            return {}
        try:
            with open(self.path, "rb") as handle:
                data = loads(handle.read())
        except (OSError, ValueError, RecursionError):
            return {}
        return {str(k): v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}

    def _save(self):
        if self.path:
            os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
            files.write_json(self.path, self.entries, mode=0o600, durable=False)

    def _entry(self, alert_id):
        return self.entries.setdefault(str(int(alert_id)), {"until": 0, "tokens": [], "rounds": [], "open": 0})

    def sending(self, alert_id, token=None, round_id=None):
        """Before a write: note what it may leave behind if its answer never comes."""
        entry = self._entry(alert_id)
        entry["until"] = self.wall() + self.window
        entry["next"], entry["gap"] = 0.0, RECHECK_FIRST
        entry["open"] = int(entry.get("open", 0)) + 1
        if token and token not in entry["tokens"]:
            entry["tokens"].append(token)
        if round_id:
            entry["rounds"].append(round_id)  # once per comment sent: a retry's answer clears only its own
        self._save()

    def answered(self, alert_id, token=None, round_id=None):
        """The write was acknowledged in time: it cannot land again later."""
        entry = self.entries.get(str(int(alert_id)))
        if entry is None:
            return
        entry["open"] = max(0, int(entry.get("open", 0)) - 1)
        if token in entry["tokens"]:
            entry["tokens"].remove(token)
        if round_id in entry["rounds"]:
            entry["rounds"].remove(round_id)
        if not entry["open"] and not entry["tokens"] and not entry["rounds"]:
            del self.entries[str(int(alert_id))]
        self._save()

    def due(self, limit):
        """Up to ``limit`` (alert id, disowned tokens, rounds) to re-check now; expired ones are dropped."""
        now = self.wall()
        expired = [k for k, v in self.entries.items() if float(v.get("until", 0)) < now]
        for key in expired:
            del self.entries[key]
        due = [(k, v) for k, v in self.entries.items() if float(v.get("next", 0)) <= now][:limit]
        for _key, entry in due:
            gap = float(entry.get("gap", RECHECK_FIRST))
            entry["next"], entry["gap"] = now + gap, min(RECHECK_MAX, 2 * gap)
        if expired or due:
            self._save()
        return [(int(k), frozenset(v.get("tokens") or ()), list(dict.fromkeys(v.get("rounds") or ())))
                for k, v in due]
