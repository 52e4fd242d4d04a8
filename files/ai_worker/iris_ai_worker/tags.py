"""The worker's whole state lives in the alert's comma-separated tag string (docs/ai-worker.md, "Tags")."""
import re

TAG_PENDING = "ai-pending"
TAG_REVIEWED = "ai-reviewed"
TAG_FAILED = "ai-failed"
TAG_SKIPPED = "ai-skipped"
# Present exactly while a claim is: written with the claim tag and removed with it, for IRIS filters
# built on the published ai-pending -> ai-processing -> ai-reviewed workflow. The claim tag decides.
TAG_PROCESSING = "ai-processing"
CLAIM_PREFIX = "ai-claim:"
ROUND_PREFIX = "ai-round:"
ATTEMPTS_PREFIX = "ai-attempts:"
TAKEOVERS_PREFIX = "ai-takeovers:"
# Why the last attempt failed, as a short kind (``ai-error:bad-answer``, ``ai-error:iris-http-500``, ...).
ERROR_PREFIX = "ai-error:"
OUTCOMES = (TAG_PENDING, TAG_REVIEWED, TAG_FAILED, TAG_SKIPPED)
# The first line of every analysis comment names its round: the round's commit record.
COMMENT_HEADER_RE = re.compile(r"^\[ai-triage round=([0-9a-f]{1,64})\]")


def split_tags(raw):
    """Tags as IRIS stores them, split on commas and stripped; empty entries dropped."""
    return [tag.strip() for tag in (raw or "").split(",") if tag.strip()]


def join_tags(tags):
    """Comma-join tags, dropping duplicates but keeping order."""
    return ",".join(dict.fromkeys(tags))


class ClaimToken:
    """``ai-claim:<instance>:<epoch seconds>:<nonce>``: who claimed the alert, and when (wall clock)."""

    __slots__ = ("epoch", "instance", "nonce")

    def __init__(self, instance, epoch, nonce):
        self.instance = instance
        self.epoch = epoch
        self.nonce = nonce

    def __eq__(self, other):
        return isinstance(other, ClaimToken) and self.tag() == other.tag()

    def __hash__(self):
        return hash(self.tag())

    def __repr__(self):
        return f"ClaimToken({self.tag()!r})"

    def tag(self):
        return f"{CLAIM_PREFIX}{self.instance}:{self.epoch}:{self.nonce}"

    @classmethod
    def parse(cls, tag):
        if not tag.startswith(CLAIM_PREFIX):
            return None
        parts = tag[len(CLAIM_PREFIX):].split(":")
        if len(parts) != 3 or not parts[1].isdigit():
            return cls(instance="?", epoch=0, nonce=tag)  # unreadable claim: treated as stale
        return cls(instance=parts[0], epoch=int(parts[1]), nonce=parts[2])


def claim_tags(tags):
    """The claim tags present (there is normally none or one)."""
    return [tag for tag in tags if tag.startswith(CLAIM_PREFIX)]


def without_claims(tags):
    """Tags without any claim, and without the ai-processing tag that goes with a claim."""
    return [tag for tag in tags if not tag.startswith(CLAIM_PREFIX) and tag != TAG_PROCESSING]


def with_claim(tags, token):
    """Tags with token as the only claim, and ai-processing beside it."""
    return [*without_claims(tags), TAG_PROCESSING, token.tag()]


def tag_value(tags, prefix):
    """Value of the first ``prefix<value>`` tag, or None."""
    for tag in tags:
        if tag.startswith(prefix):
            return tag[len(prefix):]
    return None


def counter(tags, prefix):
    """Integer value of a ``prefix<n>`` counter tag (0 when absent or unreadable)."""
    value = tag_value(tags, prefix)
    return int(value) if value and value.isdigit() else 0


def with_tag_value(tags, prefix, value):
    """Tags with every ``prefix…`` tag replaced by ``prefix<value>`` (or removed when value is None)."""
    kept = [tag for tag in tags if not tag.startswith(prefix)]
    return kept if value is None else [*kept, f"{prefix}{value}"]


def error_kind(reason):
    """A short tag-safe kind for a failure reason: its first words, lower-cased, [a-z0-9-] only."""
    words = re.findall(r"[a-z0-9]+", str(reason).lower())[:6]
    return "-".join(words)[:48] or "unknown"


def comment_round(comment):
    """The round id an analysis comment names in its first line, or None for any other comment."""
    match = COMMENT_HEADER_RE.match(str(comment.get("comment_text") or ""))
    return match.group(1) if match else None
