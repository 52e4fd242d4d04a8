"""Ranking the matches and turning them into events (docs/opencti.md, "Matching, ranking and caps").

Dates are compared as seconds since the epoch, computed here from the ISO-8601 text (importing
datetime costs more start-up time than it saves).
"""
import time

EVENT_INDICATOR_MATCH = "indicator_pattern_match"
EVENT_INDICATOR_PARTIAL = "indicator_partial_pattern_match"
EVENT_OBSERVABLE = "observable_with_indicator"
EVENT_OBSERVABLE_RELATED = "observable_with_related_indicator"
EVENT_ERROR = "error"


def _days_from_civil(year, month, day):
    """Days since 1970-01-01 of a proleptic Gregorian date."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


def _number(text, low, high):
    if len(text) < 1 or not text.isascii() or not text.isdigit():
        raise ValueError(text)
    value = int(text)
    if not low <= value <= high:
        raise ValueError(text)
    return value


def timestamp(text):
    """Seconds since the epoch of an ISO-8601 date or date-time (UTC when no offset is given), or None."""
    if not isinstance(text, str) or not text.strip():
        return None
    text = text.strip()
    try:
        date, _sep, clock = text.replace(" ", "T", 1).partition("T")
        year_text, month_text, day_text = date.split("-")
        if len(year_text) != 4 or len(month_text) != 2 or len(day_text) != 2:
            return None
        days = _days_from_civil(_number(year_text, 1, 9999), _number(month_text, 1, 12), _number(day_text, 1, 31))
        seconds = 0.0
        if clock:
            offset = 0
            if clock.endswith(("Z", "z")):
                clock = clock[:-1]
            else:
                for sign in "+-":
                    if sign in clock:
                        clock, _sign, zone = clock.partition(sign)
                        hours, _colon, minutes = zone.partition(":") if ":" in zone else (zone[:2], "", zone[2:])
                        offset = (_number(hours, 0, 23) * 60 + (_number(minutes, 0, 59) if minutes else 0)) * 60
                        offset = offset if sign == "+" else -offset
                        break
            whole, _dot, fraction = clock.partition(".")
            parts = whole.split(":")
            if len(parts) not in (2, 3) or (fraction and len(parts) != 3):
                return None
            seconds = _number(parts[0], 0, 23) * 3600 + _number(parts[1], 0, 59) * 60
            if len(parts) == 3:
                seconds += _number(parts[2], 0, 59)
            if fraction:
                seconds += _number(fraction, 0, 10 ** len(fraction)) / 10 ** len(fraction)
            seconds -= offset
        return days * 86400 + seconds
    except ValueError:
        return None


def _int_or(value, default):
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def indicator_rank(record, now=None):
    """Sort key, best first: live before revoked/expired, exact before partial, detection, score, confidence."""
    valid_until = timestamp(record.get("valid_until"))
    expired = valid_until is not None and valid_until < (time.time() if now is None else now)
    return (
        record.get("revoked") is True,
        expired,
        record.get("exact") is False,
        record.get("x_opencti_detection") is not True,
        -_int_or(record.get("x_opencti_score"), -1),
        -_int_or(record.get("confidence"), -1),
        str(record.get("name") or ""),
    )


def indicator_summary(record, base_url):
    """The indicator as it appears in events."""
    summary = {k: v for k, v in record.items() if k != "exact"}
    summary["link"] = f"{base_url}/dashboard/observations/indicators/{record.get('id')}"
    return summary


def build_events(results, source, base_url, options):
    """Ranked, capped events: indicator matches first (max_ind_alerts), then observables (max_obs_alerts)."""
    indicators = {}
    observables = {}
    for obs, result in results:
        for record in result.get("indicators") or []:
            known = indicators.get(record["id"])
            if known is None or (record.get("exact") and not known[0].get("exact")):
                indicators[record["id"]] = (record, obs)
        for record in result.get("observables") or []:
            observables.setdefault(record["id"], (record, obs))

    events = []
    ranked = sorted(indicators.values(), key=lambda item: indicator_rank(item[0]))
    for record, obs in ranked[: options["max_ind_alerts"]]:
        events.append({
            "event_type": EVENT_INDICATOR_MATCH if record.get("exact") else EVENT_INDICATOR_PARTIAL,
            "indicator": indicator_summary(record, base_url),
            "matched_type": obs.kind,
            "matched_value": obs.value,
            "source": source,
        })

    candidates = []
    for record, obs in observables.values():
        found = observable_event(record, obs, source, base_url)
        if found:
            candidates.append(found)
    candidates.sort(key=lambda item: item[0])
    events += [event for _unused, event in candidates[: options["max_obs_alerts"]]]
    return events


def observable_event(record, obs, source, base_url):
    """(rank, event) for an observable with its own or a related indicator; None when it has neither."""
    event = {
        "event_type": None,  # set below
        "observable_id": record.get("id"),
        "observable_type": record.get("entity_type"),
        "observable_value": record.get("observable_value"),
        "observable_score": record.get("x_opencti_score"),
        "observable_description": record.get("x_opencti_description"),
        "observable_labels": record.get("labels"),
        "observable_link": f"{base_url}/dashboard/observations/observables/{record.get('id')}",
        "matched_type": obs.kind,
        "matched_value": obs.value,
        "source": source,
    }
    own_score = -(_int_or(record.get("x_opencti_score"), 0) or -1)
    direct = sorted(record.get("indicators") or [], key=indicator_rank)
    if direct:
        event.update(event_type=EVENT_OBSERVABLE, indicator=indicator_summary(direct[0], base_url),
                     multiple_indicators=len(direct) > 1)
        return (0, indicator_rank(direct[0]), own_score), event
    related = []
    for rel in record.get("related") or []:
        inds = sorted(rel.get("indicators") or [], key=indicator_rank)
        if inds:
            related.append((indicator_rank(inds[0]), rel, inds))
    if not related:
        return None
    related.sort(key=lambda item: item[0])
    _best, rel, inds = related[0]
    event.update(
        event_type=EVENT_OBSERVABLE_RELATED,
        related={
            "id": rel.get("id"),
            "type": rel.get("entity_type"),
            "value": rel.get("observable_value"),
            "relationship": rel.get("relationship_type"),
            "link": f"{base_url}/dashboard/observations/observables/{rel.get('id')}",
            "indicator": indicator_summary(inds[0], base_url),
            "multiple_indicators": len(inds) > 1,
        },
    )
    return (1, related[0][0], own_score), event


def error_event(message, source):
    """The event reporting a failed lookup."""
    return {"event_type": EVENT_ERROR, "error": message, "source": source}
