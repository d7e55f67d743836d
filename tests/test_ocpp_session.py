"""OcppSession: two endpoints back to back, a station and a CSMS, driven with plain calls."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest

from evsim_trio.ocpp import (
    MAX_ID_LENGTH,
    MAX_ID_PREFIX_LENGTH,
    BadFrame,
    Call,
    CallError,
    CallInProgress,
    ErrorReceived,
    FormationViolation,
    GenericError,
    Ignored,
    IncomingCall,
    InternalError,
    InvalidResult,
    NotImplementedOcppError,
    NotSupportedError,
    OccurenceConstraintViolation,
    OcppError,
    OcppSession,
    PropertyConstraintViolation,
    ProtocolError,
    ResultReceived,
    TypeConstraintViolation,
    decode,
    error_from_code,
    get_validator,
)

NOW = "2024-05-01T12:00:00Z"
BOOT = {"chargePointVendor": "Acme", "chargePointModel": "Trio-22"}
BOOT_ACCEPTED = {"status": "Accepted", "currentTime": NOW, "interval": 60}


@pytest.fixture
def station() -> OcppSession:
    return OcppSession(validator=get_validator(), id_prefix="cp-")


@pytest.fixture
def csms() -> OcppSession:
    return OcppSession(validator=get_validator(), id_prefix="cs-")


def _reply(event: BadFrame) -> CallError:
    assert event.reply is not None
    message = decode(event.reply)
    assert isinstance(message, CallError)
    return message


def test_station_call_round_trip(station: OcppSession, csms: OcppSession) -> None:
    call, text = station.prepare_call("BootNotification", BOOT)
    assert call == Call("cp-1", "BootNotification", BOOT)
    assert station.outgoing == call

    event = csms.receive(text)
    assert event == IncomingCall(call)
    assert csms.incoming == call

    answer = csms.prepare_result(call.unique_id, BOOT_ACCEPTED)
    assert csms.incoming is None
    assert json.loads(answer) == [3, "cp-1", BOOT_ACCEPTED]

    assert station.receive(answer) == ResultReceived(call, BOOT_ACCEPTED)
    assert station.outgoing is None


def test_csms_call_round_trip_with_bytes_frames(station: OcppSession, csms: OcppSession) -> None:
    call, text = csms.prepare_call("RemoteStartTransaction", {"idTag": "TAG1", "connectorId": 1})
    assert station.receive(text.encode()) == IncomingCall(call)
    answer = station.prepare_result(call.unique_id, {"status": "Accepted"})
    assert csms.receive(answer.encode()) == ResultReceived(call, {"status": "Accepted"})


def test_one_outstanding_call_each_way_at_the_same_time(
    station: OcppSession, csms: OcppSession
) -> None:
    to_csms, text_to_csms = station.prepare_call("Heartbeat", {})
    to_station, text_to_station = csms.prepare_call("ClearCache", {})
    # The frames cross on the wire: each side gets the peer's CALL while its own is outstanding.
    assert csms.receive(text_to_csms) == IncomingCall(to_csms)
    assert station.receive(text_to_station) == IncomingCall(to_station)
    assert station.receive(csms.prepare_result(to_csms.unique_id, {"currentTime": NOW})) == (
        ResultReceived(to_csms, {"currentTime": NOW})
    )
    assert csms.receive(station.prepare_result(to_station.unique_id, {"status": "Accepted"})) == (
        ResultReceived(to_station, {"status": "Accepted"})
    )
    assert (station.outgoing, station.incoming, csms.outgoing, csms.incoming) == (None,) * 4


@pytest.mark.parametrize("side", ["station", "csms"])
def test_prepare_call_refuses_a_second_outstanding_call(
    side: str, station: OcppSession, csms: OcppSession
) -> None:
    sender, receiver = (station, csms) if side == "station" else (csms, station)
    first, text = sender.prepare_call("DataTransfer", {"vendorId": "acme"})
    with pytest.raises(CallInProgress, match="DataTransfer"):
        sender.prepare_call("DataTransfer", {"vendorId": "acme"})
    assert sender.outgoing == first

    receiver.receive(text)
    sender.receive(receiver.prepare_result(first.unique_id, {"status": "Accepted"}))
    second, _ = sender.prepare_call("DataTransfer", {"vendorId": "acme"})
    assert second.unique_id != first.unique_id


@pytest.mark.parametrize("side", ["station", "csms"])
def test_call_while_incoming_is_unanswered_gets_a_protocol_error(
    side: str, station: OcppSession, csms: OcppSession
) -> None:
    receiver = station if side == "station" else csms
    first = Call("p-1", "DataTransfer", {"vendorId": "acme"})
    assert receiver.receive('[2,"p-1","DataTransfer",{"vendorId":"acme"}]') == IncomingCall(first)

    event = receiver.receive('[2,"p-2","DataTransfer",{"vendorId":"acme"}]')
    assert isinstance(event, BadFrame)
    assert type(event.error) is ProtocolError
    reply = _reply(event)
    assert (reply.unique_id, reply.error_code) == ("p-2", "ProtocolError")
    assert receiver.incoming == first


def test_call_for_an_unknown_action_gets_not_implemented(csms: OcppSession) -> None:
    event = csms.receive('[2,"u1","Teleport",{"to":"Mars"}]')
    assert isinstance(event, BadFrame)
    assert isinstance(event.error, NotImplementedOcppError)
    assert _reply(event).unique_id == "u1"
    assert _reply(event).error_code == "NotImplemented"
    assert csms.incoming is None


def test_without_validator_unknown_actions_and_payloads_pass_through() -> None:
    session = OcppSession(validator=None)
    call = Call("u1", "Teleport", {"to": "Mars"})
    assert session.receive('[2,"u1","Teleport",{"to":"Mars"}]') == IncomingCall(call)
    assert json.loads(session.prepare_result("u1", {"any": 1})) == [3, "u1", {"any": 1}]
    own, _ = session.prepare_call("Authorize", {"idTag": "X" * 50})
    assert session.receive('[3,"1",{"whatever":true}]') == ResultReceived(own, {"whatever": True})


@pytest.mark.parametrize(
    ("frame", "error_class"),
    [
        ('[2,"r1","Authorize",{"idTag":"123456789012345678901"}]', PropertyConstraintViolation),
        ('[2,"r1","Authorize",{}]', OccurenceConstraintViolation),
        ('[2,"r1","StatusNotification",{"connectorId":"1","errorCode":"NoError",'
         '"status":"Available"}]', TypeConstraintViolation),
        ('[2,"r1","StatusNotification",{"connectorId":1,"errorCode":"NoError",'
         '"status":"Sleeping"}]', PropertyConstraintViolation),
        ('[2,"r1","Heartbeat",{"extra":1}]', FormationViolation),
    ],
)  # fmt: skip
def test_invalid_incoming_call_gets_the_constraint_error_and_is_not_kept(
    csms: OcppSession, frame: str, error_class: type[OcppError]
) -> None:
    event = csms.receive(frame)
    assert isinstance(event, BadFrame)
    assert type(event.error) is error_class
    reply = _reply(event)
    assert (reply.unique_id, reply.error_code) == ("r1", error_class.code)
    assert reply.error_description.startswith("data")
    assert csms.incoming is None


@pytest.mark.parametrize(
    ("action", "payload", "error_class"),
    [
        ("Authorize", {"idTag": "X" * 21}, PropertyConstraintViolation),
        ("BootNotification", {"chargePointVendor": "Acme"}, OccurenceConstraintViolation),
        ("Teleport", {}, NotImplementedOcppError),
    ],
)
def test_prepare_call_validates_the_request(
    station: OcppSession, action: str, payload: dict[str, Any], error_class: type[OcppError]
) -> None:
    with pytest.raises(error_class):
        station.prepare_call(action, payload)
    assert station.outgoing is None


def test_invalid_result_completes_the_call_as_invalid_result(station: OcppSession) -> None:
    loose_csms = OcppSession(validator=None)
    call, text = station.prepare_call("BootNotification", BOOT)
    loose_csms.receive(text)
    answer = loose_csms.prepare_result(call.unique_id, {"status": "Maybe", "currentTime": NOW,
                                                         "interval": 60})  # fmt: skip
    event = station.receive(answer)
    assert isinstance(event, InvalidResult)
    assert event.call == call
    assert isinstance(event.error, PropertyConstraintViolation)
    assert "data.status must be one of" in event.error.description
    assert station.outgoing is None


def test_invalid_answer_is_refused_and_can_be_replaced_by_an_internal_error(
    station: OcppSession, csms: OcppSession
) -> None:
    call, text = station.prepare_call("Heartbeat", {})
    csms.receive(text)
    with pytest.raises(OccurenceConstraintViolation):
        csms.prepare_result(call.unique_id, {})
    assert csms.incoming == call

    error_frame = csms.prepare_error(call.unique_id, InternalError("handler returned junk"))
    assert csms.incoming is None
    event = station.receive(error_frame)
    assert event == ErrorReceived(call, CallError(call.unique_id, "InternalError",
                                                  "handler returned junk", {}))  # fmt: skip
    assert station.outgoing is None


def test_prepare_result_for_a_call_that_is_not_incoming_raises(csms: OcppSession) -> None:
    with pytest.raises(ValueError, match="no incoming CALL 'nope'"):
        csms.prepare_result("nope", {})


@pytest.mark.parametrize(
    ("error", "code", "mapped_class"),
    [
        (NotSupportedError("disabled", {"feature": "RemoteTrigger"}), "NotSupported",
         NotSupportedError),
        (NotImplementedOcppError(), "NotImplemented", NotImplementedOcppError),
        (OcppError("plain"), "GenericError", GenericError),
    ],
)  # fmt: skip
def test_call_error_reaches_the_caller_and_maps_back_to_its_class(
    station: OcppSession,
    csms: OcppSession,
    error: OcppError,
    code: str,
    mapped_class: type[OcppError],
) -> None:
    call, text = csms.prepare_call("RemoteStopTransaction", {"transactionId": 3})
    station.receive(text)
    event = csms.receive(station.prepare_error(call.unique_id, error))
    assert isinstance(event, ErrorReceived)
    assert event.call == call
    assert event.error == CallError(call.unique_id, code, error.description, error.details)
    mapped = error_from_code(event.error.error_code, event.error.error_description,
                             event.error.error_details)  # fmt: skip
    assert type(mapped) is mapped_class
    assert (mapped.description, mapped.details) == (error.description, error.details)


def test_answers_with_another_id_are_ignored_and_keep_the_call(station: OcppSession) -> None:
    call, _ = station.prepare_call("Heartbeat", {})
    event = station.receive('[3,"other",{"currentTime":"2024-05-01T12:00:00Z"}]')
    assert isinstance(event, Ignored)
    assert event.message.unique_id == "other"
    assert isinstance(station.receive('[4,"other","GenericError","",{}]'), Ignored)
    assert station.outgoing == call


def test_answer_without_outstanding_call_is_ignored(station: OcppSession) -> None:
    assert isinstance(station.receive('[3,"1",{}]'), Ignored)


def test_forget_call_makes_a_late_answer_ignored_and_frees_the_slot(
    station: OcppSession, csms: OcppSession
) -> None:
    call, text = station.prepare_call("Heartbeat", {})
    csms.receive(text)
    station.forget_call("not-this-one")
    assert station.outgoing == call
    station.forget_call(call.unique_id)
    assert station.outgoing is None
    late = csms.prepare_result(call.unique_id, {"currentTime": NOW})
    assert isinstance(station.receive(late), Ignored)
    station.prepare_call("Heartbeat", {})


def test_reset_clears_both_directions_and_ids_stay_unique(
    station: OcppSession, csms: OcppSession
) -> None:
    first, _ = station.prepare_call("Heartbeat", {})
    station.receive('[2,"in-1","ClearCache",{}]')
    station.reset()
    assert (station.outgoing, station.incoming) == (None, None)
    second, _ = station.prepare_call("Heartbeat", {})
    assert second.unique_id != first.unique_id


def test_malformed_call_frame_gets_a_call_error_reply(csms: OcppSession) -> None:
    event = csms.receive('[2,"m1","Heartbeat",[]]')
    assert isinstance(event, BadFrame)
    assert isinstance(event.error, FormationViolation)
    assert (_reply(event).unique_id, _reply(event).error_code) == ("m1", "FormationViolation")


def test_garbage_gets_a_call_error_reply_with_id_minus_one(csms: OcppSession) -> None:
    event = csms.receive(b"\x00not json")
    assert isinstance(event, BadFrame)
    assert (_reply(event).unique_id, _reply(event).error_code) == ("-1", "FormationViolation")
    event = csms.receive("{}")
    assert isinstance(event, BadFrame)
    assert (_reply(event).unique_id, _reply(event).error_code) == ("-1", "ProtocolError")


def test_malformed_answer_to_the_outstanding_call_completes_it_without_reply(
    station: OcppSession,
) -> None:
    call, _ = station.prepare_call("Heartbeat", {})
    event = station.receive(f'[3,"{call.unique_id}",[]]')
    assert isinstance(event, InvalidResult)
    assert event.call == call
    assert isinstance(event.error, FormationViolation)
    assert station.outgoing is None

    call, _ = station.prepare_call("Heartbeat", {})
    event = station.receive(f'[4,"{call.unique_id}","GenericError"]')
    assert isinstance(event, InvalidResult)
    assert isinstance(event.error, ProtocolError)


def test_malformed_answer_to_no_call_is_never_answered(station: OcppSession) -> None:
    for frame in ('[3,"x"]', '[4,"x","GenericError","",null]', '[3,"x",1]'):
        event = station.receive(frame)
        assert isinstance(event, BadFrame)
        assert event.reply is None


def test_message_ids_are_unique_and_at_most_36_characters() -> None:
    prefix = "p" * MAX_ID_PREFIX_LENGTH
    sender = OcppSession(validator=None, id_prefix=prefix)
    other = OcppSession(validator=None, id_prefix="q-")
    ids: set[str] = set()
    for _ in range(5000):
        for session in (sender, other):
            call, _ = session.prepare_call("Heartbeat", {})
            ids.add(call.unique_id)
            session.forget_call(call.unique_id)
            assert len(call.unique_id) <= MAX_ID_LENGTH
    assert len(ids) == 10_000
    # The prefix limit leaves room for 12 hex digits: more calls than a session will ever make.
    assert MAX_ID_PREFIX_LENGTH + len(f"{16**12 - 1:x}") == MAX_ID_LENGTH


def test_id_prefix_longer_than_the_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="id_prefix"):
        OcppSession(validator=None, id_prefix="p" * (MAX_ID_PREFIX_LENGTH + 1))


def test_events_are_frozen(station: OcppSession) -> None:
    call, text = station.prepare_call("Heartbeat", {})
    event = OcppSession(validator=None).receive(text)
    assert isinstance(event, IncomingCall)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        event.call = call  # type: ignore[misc]
