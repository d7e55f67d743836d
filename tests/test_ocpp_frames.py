"""OCPP-J framing: encode/decode round trips, malformed frames, error classes."""

from __future__ import annotations

import json
import pickle
from typing import Any

import pytest

from evsim_trio.ocpp import (
    MAX_ID_LENGTH,
    Call,
    CallError,
    CallResult,
    FormationViolation,
    FrameError,
    GenericError,
    Message,
    MessageType,
    NotImplementedOcppError,
    OccurenceConstraintViolation,
    OcppError,
    ProtocolError,
    _errors,
    decode,
    encode,
    error_from_code,
    v16,
)


@pytest.mark.parametrize(
    ("message", "text"),
    [
        pytest.param(
            Call("1", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}),
            '[2,"1","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]',
            id="call",
        ),
        pytest.param(
            CallResult("1", {"status": "Accepted", "interval": 60}),
            '[3,"1",{"status":"Accepted","interval":60}]',
            id="callresult",
        ),
        pytest.param(
            CallError("1", "NotSupported", "no", {"why": "disabled"}),
            '[4,"1","NotSupported","no",{"why":"disabled"}]',
            id="callerror",
        ),
        pytest.param(
            CallError("x", "GenericError"),
            '[4,"x","GenericError","",{}]',
            id="callerror-defaults",
        ),
    ],
)
def test_encode_is_compact_json_and_decode_round_trips(message: Message, text: str) -> None:
    assert encode(message) == text
    assert decode(text) == message
    assert decode(text.encode()) == message


def test_message_type_numbers_are_those_of_the_spec() -> None:
    assert [int(t) for t in MessageType] == [2, 3, 4]
    assert [json.loads(encode(m))[0] for m in (Call("a", "A", {}), CallResult("a", {}))] == [2, 3]


def test_encode_keeps_non_ascii_text_literal() -> None:
    text = encode(Call("1", "DataTransfer", {"vendorId": "Überlandwerk", "data": "é€"}))
    assert "Überlandwerk" in text
    assert "é€" in text
    assert decode(text.encode("utf-8")) == Call(
        "1", "DataTransfer", {"vendorId": "Überlandwerk", "data": "é€"}
    )


def test_encode_rejects_nan_and_non_messages() -> None:
    with pytest.raises(ValueError, match="JSON"):
        encode(CallResult("1", {"value": float("nan")}))
    with pytest.raises(TypeError):
        encode([2, "1", "Heartbeat", {}])  # type: ignore[arg-type]


def test_decode_accepts_an_id_of_exactly_36_characters() -> None:
    unique_id = "a" * MAX_ID_LENGTH
    assert decode(f'[3,"{unique_id}",{{}}]') == CallResult(unique_id, {})


_ID37 = "b" * 37

_MALFORMED: list[Any] = [
    # (frame, expected class, expected unique_id, expected message_type)
    pytest.param("[2,", FormationViolation, "-1", None, id="not-json"),
    pytest.param("", FormationViolation, "-1", None, id="empty-text"),
    pytest.param(b'[3,"1",{"a":"\xff"}]', FormationViolation, "-1", None, id="not-utf8"),
    pytest.param(b"\xff\xfe[\x00]\x00", FormationViolation, "-1", None, id="utf16-bytes"),
    pytest.param('[3,"1",{"a":NaN}]', FormationViolation, "-1", None, id="nan-not-json"),
    pytest.param("[" * 100_000 + "]" * 100_000, FormationViolation, "-1", None, id="too-deep"),
    pytest.param('{"a":1}', ProtocolError, "-1", None, id="object-not-array"),
    pytest.param('"text"', ProtocolError, "-1", None, id="string-not-array"),
    pytest.param("[]", ProtocolError, "-1", None, id="empty-array"),
    pytest.param('["2","id","A",{}]', ProtocolError, "id", None, id="type-is-string"),
    pytest.param('[2.0,"id","A",{}]', ProtocolError, "id", None, id="type-is-float"),
    pytest.param('[true,"id",{}]', ProtocolError, "id", None, id="type-is-bool"),
    pytest.param('[5,"id",{}]', ProtocolError, "id", None, id="unknown-type-with-id"),
    pytest.param("[5]", ProtocolError, "-1", None, id="unknown-type-without-id"),
    pytest.param("[6,7,{}]", ProtocolError, "-1", None, id="unknown-type-id-not-string"),
    pytest.param(f'[5,"{_ID37}"]', ProtocolError, "-1", None, id="unknown-type-id-too-long"),
    pytest.param('[2,"id","A"]', ProtocolError, "id", 2, id="call-too-short"),
    pytest.param('[2,"id","A",{},{}]', ProtocolError, "id", 2, id="call-too-long"),
    pytest.param("[2]", ProtocolError, "-1", 2, id="call-without-id"),
    pytest.param('[3,"id"]', ProtocolError, "id", 3, id="callresult-too-short"),
    pytest.param('[3,"id",{},{}]', ProtocolError, "id", 3, id="callresult-too-long"),
    pytest.param('[4,"id","GenericError",""]', ProtocolError, "id", 4, id="callerror-too-short"),
    pytest.param('[2,1,"A",{}]', ProtocolError, "-1", 2, id="id-not-string"),
    pytest.param("[3,null,{}]", ProtocolError, "-1", 3, id="id-null"),
    pytest.param(f'[2,"{_ID37}","A",{{}}]', ProtocolError, "-1", 2, id="id-too-long"),
    pytest.param('[2,"id",1,{}]', ProtocolError, "id", 2, id="call-action-not-string"),
    pytest.param('[2,"id","A",[]]', FormationViolation, "id", 2, id="call-payload-array"),
    pytest.param('[2,"id","A",null]', FormationViolation, "id", 2, id="call-payload-null"),
    pytest.param('[3,"id","x"]', FormationViolation, "id", 3, id="callresult-payload-string"),
    pytest.param('[4,"id",1,"",{}]', ProtocolError, "id", 4, id="callerror-code-not-string"),
    pytest.param('[4,"id","GenericError",5,{}]', ProtocolError, "id", 4, id="callerror-descr"),
    pytest.param('[4,"id","GenericError","",[]]', ProtocolError, "id", 4, id="callerror-details"),
]


@pytest.mark.parametrize(("frame", "error_class", "unique_id", "message_type"), _MALFORMED)
def test_decode_rejects_malformed_frame_with_the_error_to_reply(
    frame: str | bytes,
    error_class: type[OcppError],
    unique_id: str,
    message_type: int | None,
) -> None:
    with pytest.raises(FrameError) as info:
        decode(frame)
    exc = info.value
    assert isinstance(exc, error_class)
    assert exc.error is exc
    assert exc.error.code == error_class.code
    assert exc.unique_id == unique_id
    assert exc.message_type == message_type
    assert exc.description
    reply = exc.to_call_error(exc.unique_id)
    assert decode(encode(reply)) == CallError(unique_id, error_class.code, exc.description, {})


# --- error classes -----------------------------------------------------------------------------


def test_error_codes_list_matches_the_error_classes() -> None:
    classes = [error_from_code(code) for code in v16.ERROR_CODES]
    assert [type(error).code for error in classes] == list(v16.ERROR_CODES)
    assert len(set(map(type, classes))) == len(v16.ERROR_CODES) == 10


@pytest.mark.parametrize("code", v16.ERROR_CODES)
def test_error_from_code_gives_the_class_of_every_16_code(code: str) -> None:
    error = error_from_code(code, "what happened", {"k": 1})
    assert isinstance(error, OcppError)
    assert error.code == code
    assert error.description == "what happened"
    assert error.details == {"k": 1}
    assert error.to_call_error("42") == CallError("42", code, "what happened", {"k": 1})
    assert str(error) == f"{code}: what happened"


def test_error_from_code_maps_an_unknown_code_to_generic_error() -> None:
    error = error_from_code("NoSuchCode", "odd")
    assert type(error) is GenericError
    assert error.code == "GenericError"
    assert error.description == "odd"
    assert error.details == {}


@pytest.mark.parametrize(
    ("code", "error_class"),
    [
        ("FormatViolation", FormationViolation),
        ("OccurrenceConstraintViolation", OccurenceConstraintViolation),
    ],
)
def test_error_from_code_maps_ocpp_201_spellings_to_the_16_classes(
    code: str, error_class: type[OcppError]
) -> None:
    assert type(error_from_code(code)) is error_class


def test_not_implemented_error_has_the_wire_code() -> None:
    assert NotImplementedOcppError.code == "NotImplemented"
    assert str(NotImplementedOcppError()) == "NotImplemented"


def test_errors_survive_pickling_with_details_and_frame_id() -> None:
    error = pickle.loads(pickle.dumps(ProtocolError("bad", {"a": [1]})))
    assert type(error) is ProtocolError
    assert (error.description, error.details) == ("bad", {"a": [1]})
    frame_error = pickle.loads(
        pickle.dumps(_errors.FrameProtocolError("short", unique_id="7", message_type=2))
    )
    assert isinstance(frame_error, ProtocolError)
    assert isinstance(frame_error, FrameError)
    assert (frame_error.unique_id, frame_error.message_type) == ("7", 2)
