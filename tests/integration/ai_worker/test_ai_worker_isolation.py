"""Issue 23: one customer's data never reaches another, and one bad alert never stops the queue."""
import pytest

from tests.support.ai_worker import SSH_EVENT

DEDUP = {"AI_WORKER_DEDUP_WINDOW": 3600}


@pytest.fixture
def stack(ai_stack):
    return ai_stack


def two_customer_worker(stack, **overrides):
    """A worker whose account is linked to IrisInitialClient (1) and a second customer; (worker, customer 2)."""
    second = stack.iris.add_customer("Beta Corp")
    _user, key = stack.iris.add_user("mssp-bot", groups=["Analysts"], customers=["IrisInitialClient", "Beta Corp"])
    stack.keys["mssp-bot"] = key
    return stack.worker("mssp-bot", **overrides), second


def test_identical_alerts_of_two_customers_are_never_deduplicated_across_them(stack):
    """Agent 001 and the same data at two customers (one scanner, two managers): each customer's alert is
    analysed on its own; nothing of customer 1's alert (its id, its analysis) reaches customer 2's."""
    worker, second = two_customer_worker(stack, AI_WORKER_MAX_PER_CYCLE=1, **DEDUP)
    event = dict(SSH_EVENT, agent={"id": "001", "name": "web01.alpha.example"})
    first = stack.alert(event=event, alert_title="alpha: sshd")
    other = stack.alert(event=event, alert_title="beta: sshd", alert_customer_id=second)
    repeat = stack.alert(event=event, alert_title="alpha: sshd again")
    for _round in range(3):
        worker.run_cycle()
    assert [call["prompt"].count("alpha:") for call in stack.ollama.calls] == [1, 0]
    assert "beta: sshd" in stack.ollama.calls[1]["prompt"]
    beta_comment = stack.comment_texts(other)[0]
    assert "REUSED" not in beta_comment and f"#{first}" not in beta_comment
    assert f"copied from alert #{first}" in stack.comment_texts(repeat)[0]  # within customer 1 it still works
    assert all("ai-reviewed" in stack.tags(i) for i in (first, other, repeat))
