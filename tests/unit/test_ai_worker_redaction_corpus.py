"""Issue 23: the redaction corpus (tests/unit/redaction_corpus.py) - 0 leaks of every class of secret that
docs/ai-worker.md promises, as text, as JSON values and keys, and through the whole prompt."""
from pathlib import Path

import pytest
from iris_ai_worker import prompt, redaction
from socstack_core.jsonio import dumps

from tests.unit.redaction_corpus import NOT_PROMISED, corpus_size, json_corpus, text_corpus


def test_the_corpus_holds_at_least_100_lines_over_every_class():
    assert corpus_size() >= 100
    assert {kind for kind, _text, _secrets in text_corpus()} >= {
        "url", "key-value", "cli", "header", "xml", "token", "private-key"}
    assert {kind for kind, _value, _secrets in json_corpus()} == {"json-value", "json-key"}


def test_no_secret_of_the_text_corpus_survives():
    redactor = redaction.Redactor()
    leaks = [(kind, text) for kind, text, secrets in text_corpus()
             if any(secret in redactor.text(text) for secret in secrets)]
    assert leaks == []


def test_no_secret_of_the_json_corpus_survives_as_value_or_key():
    redactor = redaction.Redactor()
    leaks = [(kind, value) for kind, value, secrets in json_corpus()
             if any(secret in dumps(redactor.value(value)) for secret in secrets)]
    assert leaks == []


def test_no_secret_of_the_corpus_reaches_the_prompt():
    """Every corpus line as a Wazuh full_log and as a data field, every JSON entry as the event's data."""
    redactor = redaction.Redactor()
    for number, (kind, text, secrets) in enumerate(text_corpus()):
        alert = {"alert_id": number, "alert_title": "t", "alert_customer_id": 1, "alert_source_content": {
            "rule": {"id": "1"}, "full_log": text, "data": {"line": text}}}
        built = prompt.build_prompt(alert, redactor, 12000)
        assert not any(secret in built for secret in secrets), (kind, text)
    for number, (kind, value, secrets) in enumerate(json_corpus()):
        content = {"rule": {"id": "1"}, "data": value}
        alert = {"alert_id": number, "alert_customer_id": 1, "alert_source_content": content}
        built = prompt.build_prompt(alert, redactor, 12000)
        assert not any(secret in built for secret in secrets), (kind, value)


def test_keys_that_redact_to_the_same_text_stay_apart():
    value = redaction.Redactor().value({"AKIAIOSFODNN7EXAMPLE": 1, "AKIAIOSFODNN7EXAMPLF": 2})
    assert sorted(value.values()) == [1, 2]


@pytest.mark.parametrize(("name", "text", "secret"), NOT_PROMISED)
def test_what_is_not_promised_is_listed_in_the_docs_and_still_not_found(name, text, secret):
    """The limits docs/ai-worker.md lists: if one starts being caught, move it to the promises there."""
    assert secret in redaction.Redactor().text(text)
    assert name in (Path(__file__).resolve().parents[2] / "docs" / "ai-worker.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("key", ["userPassword", "dbPassword", "adminPass", "PGPASSWORD", "MYSQL_PWD", "refreshToken",
                                 "userApiKey", "clientSecret", "SMTP_PASS"])
def test_camel_case_and_run_together_secret_keys(key):
    assert redaction.is_secret_key(key)


@pytest.mark.parametrize("key", ["passwordLastSet", "keyboard", "bypass", "compass_heading", "monkey", "author"])
def test_keys_that_only_contain_a_sensitive_word_are_kept(key):
    assert not redaction.is_secret_key(key)
