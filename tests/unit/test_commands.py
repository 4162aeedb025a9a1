"""Command specs and the invocation state machine (O1): pure logic, no clock, no I/O."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gridhub.domain import commands as cmd
from gridhub.domain.commands import Action, Invocation, RetryPolicy, Status
from gridhub.domain.messages import decode_command
from gridhub.errors import InvalidRequest
from gridhub.services.command_wire import to_message

POLICY = RetryPolicy(base_s=10.0, max_delay_s=60.0)


def spec(name: str) -> cmd.Spec:
    return next(s for s in cmd.BUILTIN_SPECS if s.name == name)


def fresh(**changes: object) -> Invocation:
    inv = Invocation("i1", "t", "d", "ping", {}, created=0.0, expires=100.0, max_attempts=3)
    return replace(inv, **changes)  # type: ignore[arg-type]


# --- specs ------------------------------------------------------------------------------------


def test_specs_per_device_type() -> None:
    boiler = cmd.specs_for("boiler")
    assert "setSetpoint" in boiler and "setTariff" in boiler and "on" not in boiler
    plug = cmd.specs_for("smart-plug")
    assert {"on", "off", "start", "postpone"} <= set(plug) and "setSetpoint" not in plug
    assert {"setRelay", "setLimit"} <= set(cmd.specs_for("smart-meter"))


def test_tenant_spec_overrides_builtin_for_its_types() -> None:
    own = cmd.Spec("on", (cmd.Param("level", cmd.ParamType.INT32, True),), "", ("smart-plug",))
    assert cmd.specs_for("smart-plug", {"on": own})["on"] is own
    assert "on" not in cmd.specs_for("boiler", {"on": own})


def test_parameters_typed() -> None:
    typed = cmd.check_parameters(spec("setSetpoint"), {"temperature": 55})
    assert typed == {"temperature": 55.0} and isinstance(typed["temperature"], float)
    assert cmd.check_parameters(spec("setRelay"), {"closed": False}) == {"closed": False}


@pytest.mark.parametrize(
    ("name", "values", "message"),
    [
        ("setSetpoint", {}, "required parameter 'temperature' (Double) is missing"),
        ("setSetpoint", {"temperature": "hot"}, "expected Double (a number), got 'hot'"),
        ("setSetpoint", {"temperature": True}, "expected Double"),
        ("setSetpoint", {"temperature": 50, "colour": 1}, "unknown parameter 'colour'"),
        ("setRelay", {"closed": "yes"}, "expected Boolean"),
        ("off", {"duration": 1.5}, "expected Int32 (an integer)"),
        ("off", {"duration": 2**31}, "out of the Int32 range"),
        ("postpone", {"until": "tomorrow"}, "is not an ISO 8601 date-time"),
        ("postpone", {"until": "2026-11-22T10:00:00"}, "needs a UTC offset"),
        ("setTariff", {"tariffId": "x", "kind": "tou", "day": "d", "currency": "EUR",
                       "unit": "EUR/kWh", "periods": "[]"}, "expected Json"),
    ],
)  # fmt: skip
def test_parameter_errors_are_precise(name: str, values: dict, message: str) -> None:
    with pytest.raises(InvalidRequest, match="command '" + name + "'") as caught:
        cmd.check_parameters(spec(name), values)
    assert message in str(caught.value)


def test_check_spec_refuses_bad_definitions() -> None:
    p = cmd.Param("x", cmd.ParamType.STRING)
    with pytest.raises(InvalidRequest, match="command name"):
        cmd.check_spec(cmd.Spec("1bad", ()))
    with pytest.raises(InvalidRequest, match="twice"):
        cmd.check_spec(cmd.Spec("ok", (p, p)))
    with pytest.raises(InvalidRequest, match="device type"):
        cmd.check_spec(cmd.Spec("ok", (p,), device_types=()))


# --- state machine ----------------------------------------------------------------------------


def test_new_invocation_is_sent_at_once() -> None:
    assert cmd.next_action(fresh(), now=0.0) is Action.SEND


def test_sent_then_retried_with_doubling_backoff() -> None:
    inv = cmd.mark_sent(fresh(), 0.0, POLICY)
    assert (inv.status, inv.attempts, inv.next_attempt) == (Status.SENT, 1, 10.0)
    assert cmd.next_action(inv, 9.9) is Action.WAIT
    assert cmd.next_action(inv, 10.0) is Action.SEND
    inv = cmd.mark_sent(inv, 10.0, POLICY)
    assert inv.next_attempt == 30.0  # 10 * 2
    inv = cmd.mark_sent(inv, 30.0, POLICY)
    assert inv.attempts == 3
    assert cmd.next_action(inv, 99.0) is Action.WAIT  # attempts used up: wait for the TTL
    assert cmd.next_action(inv, 100.0) is Action.EXPIRE


def test_backoff_is_capped() -> None:
    assert [POLICY.delay(n) for n in range(1, 6)] == [10, 20, 40, 60, 60]


def test_unsent_is_retried_without_counting_an_attempt() -> None:
    inv = cmd.mark_unsent(fresh(), 0.0, POLICY)
    assert (inv.status, inv.attempts) == (Status.PENDING, 0)
    assert cmd.next_action(inv, 4.9) is Action.WAIT and cmd.next_action(inv, 5.0) is Action.SEND


def test_pending_expires_when_never_sent() -> None:
    assert cmd.next_action(fresh(), 100.0) is Action.EXPIRE
    assert cmd.expire(fresh(), 100.0).status is Status.EXPIRED


def test_ack_and_failure_responses() -> None:
    sent = cmd.mark_sent(fresh(), 0.0, POLICY)
    done = cmd.apply_ack(sent, "set to 55 °C", 1.0)
    assert (done.status, done.finished, done.response) == (Status.ACKNOWLEDGED, 1.0, "set to 55 °C")
    assert cmd.apply_ack(sent, "Error: relay stuck", 1.0).status is Status.FAILED
    assert cmd.apply_ack(fresh(), "ok", 1.0).status is Status.ACKNOWLEDGED  # before the PUBACK


def test_final_states_are_final() -> None:
    done = cmd.apply_ack(fresh(), "ok", 1.0)
    assert cmd.apply_ack(done, "error", 2.0) == done
    assert cmd.expire(done, 200.0) == done
    assert cmd.mark_sent(done, 2.0, POLICY) == done
    assert cmd.next_action(done, 200.0) is Action.WAIT
    expired = cmd.expire(fresh(), 100.0)
    assert cmd.apply_ack(expired, "ok", 101.0) == expired  # a late ack does not revive it


def test_device_seen_again_gets_one_more_send() -> None:
    inv = fresh(max_attempts=1)
    inv = cmd.mark_sent(inv, 0.0, POLICY)
    assert cmd.next_action(inv, 50.0) is Action.WAIT  # no timed retry left
    assert cmd.next_action(inv, 50.0, seen_at=49.0, resend_gap=10.0) is Action.SEND
    assert cmd.next_action(inv, 5.0, seen_at=4.0, resend_gap=10.0) is Action.WAIT  # too soon
    assert cmd.next_action(inv, 50.0, seen_at=-1.0, resend_gap=10.0) is Action.WAIT  # before
    inv = cmd.mark_sent(inv, 50.0, POLICY)
    assert cmd.next_action(inv, 70.0, seen_at=60.0, resend_gap=10.0) is Action.WAIT  # 2 × max


def test_message_round_trip() -> None:
    """What the hub publishes decodes as the seed 002 §4.5.3 command message."""
    s = spec("setTariff")
    periods = [{"start": "00:00", "end": "24:00", "price": 0.2, "label": ""}]
    params = {"tariffId": "t1", "kind": "tou", "day": "2026-11-23", "currency": "EUR",
              "unit": "EUR/kWh", "periods": periods}  # fmt: skip
    inv = replace(fresh(command="setTariff", origin="t1"), parameters=params, created=1.7e9)
    decoded = decode_command(to_message(inv, s)).command
    assert decoded.command.name == "setTariff"
    assert [p.name for p in decoded.command.parameters][:2] == ["tariffId", "kind"]
    assert decoded.invocation.id == inv.id and decoded.invocation.status == "Pending"
    assert decoded.invocation.eventDate.startswith("2023-11-14T22:13:20")
    assert decoded.invocation.parameterValues["periods"] == (
        '[{"start":"00:00","end":"24:00","price":0.2,"label":""}]'
    )
    assert decoded.invocation.metadata["origin"] == "t1"
    assert decoded.invocation.metadata["attempt"] == "1"
    assert decoded.parameters == params
