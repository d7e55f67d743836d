"""The Local Authorization List and the authorization decision (OCPP 1.6 §3.4, §5.15): pure."""

from __future__ import annotations

import itertools
import tomllib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import tomli_w

from evsim_trio.station._clock import format_timestamp
from evsim_trio.station._local_auth import (
    AuthorizationKeys,
    InvalidLocalList,
    LocalAuthList,
    authorization_decision,
    effective_status,
)
from evsim_trio.station._ocpp_config import OcppConfiguration

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
PAST = format_timestamp(NOW - timedelta(minutes=1))
FUTURE = format_timestamp(NOW + timedelta(days=1))

# idTagInfo of a list or cache entry; None is a miss.
ACCEPTED: dict[str, Any] = {"status": "Accepted"}
VALID_UNTIL_TOMORROW: dict[str, Any] = {"status": "Accepted", "expiryDate": FUTURE}
BLOCKED: dict[str, Any] = {"status": "Blocked"}
EXPIRED: dict[str, Any] = {"status": "Accepted", "expiryDate": PAST}
CONCURRENT: dict[str, Any] = {"status": "ConcurrentTx"}
ENTRIES: dict[str, dict[str, Any] | None] = {
    "miss": None,
    "Accepted": ACCEPTED,
    "Blocked": BLOCKED,
    "expired": EXPIRED,
}


def keys(
    *,
    pre: bool = False,
    offline: bool = True,
    unknown: bool = False,
    cache: bool = True,
    lst: bool = True,
) -> AuthorizationKeys:
    """LocalPreAuthorize, LocalAuthorizeOffline, AllowOfflineTxForUnknownId,
    AuthorizationCacheEnabled, LocalAuthListEnabled (defaults: the specification's)."""
    return AuthorizationKeys(
        local_pre_authorize=pre,
        local_authorize_offline=offline,
        allow_offline_tx_for_unknown_id=unknown,
        authorization_cache_enabled=cache,
        local_auth_list_enabled=lst,
    )


def parse_keys(flags: str) -> AuthorizationKeys:
    """Flags of a table row, each changing one key from its default: "pre" LocalPreAuthorize
    true, "unknown" AllowOfflineTxForUnknownId true, "!offline" LocalAuthorizeOffline false,
    "!cache" AuthorizationCacheEnabled false, "!list" LocalAuthListEnabled false."""
    names = set(flags.split())
    assert names <= {"pre", "unknown", "!offline", "!cache", "!list"}, flags
    return keys(
        pre="pre" in names,
        offline="!offline" not in names,
        unknown="unknown" in names,
        cache="!cache" not in names,
        lst="!list" not in names,
    )


# A list or cache entry: - miss, A Accepted, T Accepted until tomorrow, B Blocked,
# X Accepted but past its expiryDate, C ConcurrentTx.
ENTRY: dict[str, dict[str, Any] | None] = {
    "-": None,
    "A": ACCEPTED,
    "T": VALID_UNTIL_TOMORROW,
    "B": BLOCKED,
    "X": EXPIRED,
    "C": CONCURRENT,
}
SEND = "Authorize.req"  # the station asks the CSMS instead of answering locally

# link, local list entry, cache entry, keys changed from their defaults -> the local answer
DECISIONS: list[tuple[str, str, str, str, str]] = [
    # -- online: only LocalPreAuthorize with a locally Accepted idTag avoids Authorize.req
    ("online", "-", "-", "", SEND),
    ("online", "-", "-", "pre", SEND),
    ("online", "-", "-", "pre unknown", SEND),
    ("online", "A", "-", "", SEND),
    ("online", "A", "-", "pre", "Accepted"),
    ("online", "T", "-", "pre", "Accepted"),
    ("online", "B", "-", "pre", SEND),
    ("online", "X", "-", "pre", SEND),
    ("online", "C", "-", "pre", SEND),
    ("online", "A", "-", "pre !list", SEND),
    ("online", "-", "A", "", SEND),
    ("online", "-", "A", "pre", "Accepted"),
    ("online", "-", "B", "pre", SEND),
    ("online", "-", "X", "pre", SEND),
    ("online", "-", "A", "pre !cache", SEND),
    ("online", "B", "A", "pre", SEND),  # the list's entry hides the cache's
    ("online", "X", "A", "pre", SEND),
    ("online", "A", "B", "pre", "Accepted"),
    ("online", "B", "A", "pre !list", "Accepted"),  # a disabled list hides nothing
    ("online", "-", "A", "pre !offline", "Accepted"),
    ("online", "A", "A", "pre !list !cache", SEND),
    # -- offline: the list, then the cache, then AllowOfflineTxForUnknownId
    ("offline", "A", "-", "", "Accepted"),
    ("offline", "T", "-", "", "Accepted"),
    ("offline", "B", "-", "", "Blocked"),
    ("offline", "X", "-", "", "Expired"),
    ("offline", "C", "-", "", "ConcurrentTx"),
    ("offline", "-", "A", "", "Accepted"),
    ("offline", "-", "B", "", "Blocked"),
    ("offline", "-", "X", "", "Expired"),
    ("offline", "-", "-", "", "Invalid"),
    ("offline", "-", "-", "unknown", "Accepted"),
    ("offline", "-", "-", "unknown !offline", "Accepted"),
    ("offline", "B", "-", "unknown", "Blocked"),  # known, not Accepted: never "unknown"
    ("offline", "X", "-", "unknown", "Expired"),
    ("offline", "-", "B", "unknown", "Blocked"),
    ("offline", "-", "X", "unknown", "Expired"),
    ("offline", "A", "-", "!offline", "Invalid"),
    ("offline", "-", "A", "!offline", "Invalid"),
    ("offline", "A", "-", "!offline unknown", "Accepted"),
    ("offline", "B", "-", "!offline unknown", "Blocked"),
    ("offline", "B", "A", "", "Blocked"),  # the list's entry hides the cache's
    ("offline", "X", "A", "", "Expired"),
    ("offline", "A", "B", "", "Accepted"),
    ("offline", "B", "A", "!list", "Accepted"),  # a disabled list hides nothing
    ("offline", "A", "-", "!list", "Invalid"),
    ("offline", "B", "-", "!list unknown", "Accepted"),
    ("offline", "-", "A", "!cache", "Invalid"),
    ("offline", "-", "B", "!cache unknown", "Accepted"),
    ("offline", "A", "-", "pre", "Accepted"),
    ("offline", "B", "B", "!list !cache unknown", "Accepted"),
]


@pytest.mark.parametrize(
    ("link", "list_entry", "cache_entry", "flags", "expected"),
    DECISIONS,
    ids=[
        f"{link}-list={lst.replace('-', 'miss')}-cache={cache.replace('-', 'miss')}"
        f"-{flags.replace(' ', '+') or 'defaults'}"
        for link, lst, cache, flags, _ in DECISIONS
    ],
)
def test_authorization_decision_table(
    link: str, list_entry: str, cache_entry: str, flags: str, expected: str
) -> None:
    decision = authorization_decision(
        online=link == "online",
        list_info=ENTRY[list_entry],
        cache_info=ENTRY[cache_entry],
        keys=parse_keys(flags),
        now=NOW,
    )
    assert decision.send_authorize is (expected == SEND)
    assert decision.status == (None if expected == SEND else expected)


BOOLS = (False, True)


@pytest.mark.parametrize(
    ("online", "list_name", "cache_name"),
    list(itertools.product(BOOLS, ENTRIES, ENTRIES)),
)
def test_every_combination_follows_the_spec_rules(
    online: bool, list_name: str, cache_name: str
) -> None:
    """All 2 x 4 x 4 x 2^5 combinations, each checked against the rules as the spec words them."""
    list_info, cache_info = ENTRIES[list_name], ENTRIES[cache_name]
    for pre, offline, unknown, cache, lst in itertools.product(BOOLS, repeat=5):
        k = keys(pre=pre, offline=offline, unknown=unknown, cache=cache, lst=lst)
        decision = authorization_decision(
            online=online, list_info=list_info, cache_info=cache_info, keys=k, now=NOW
        )
        where = f"{k} list={list_name} cache={cache_name}"
        # §3.4.3: the list's entry, when it counts, hides the cache's.
        if lst and list_name != "miss":
            local = list_name
        elif cache and cache_name != "miss":
            local = cache_name
        else:
            local = "miss"
        local_status = {"Accepted": "Accepted", "Blocked": "Blocked", "expired": "Expired"}
        if online:
            # §3.4 LocalPreAuthorize: only a locally Accepted idTag skips Authorize.req.
            skip = pre and local == "Accepted"
            assert decision.send_authorize is not skip, where
            if skip:
                assert decision.status == "Accepted", where
            continue
        assert not decision.send_authorize, where
        if local in ("Blocked", "expired"):
            # §3.4.4: known but not Accepted is rejected, whatever AllowOfflineTxForUnknownId.
            assert decision.status == local_status[local], where
        elif local == "Accepted" and offline:
            assert decision.status == "Accepted", where
        else:
            # Not explicitly authorized locally: only Unknown Offline Authorization admits it.
            assert decision.status == ("Accepted" if unknown else "Invalid"), where


# -- effective status ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("info", "expected"),
    [
        ({"status": "Accepted"}, "Accepted"),
        ({"status": "Accepted", "expiryDate": FUTURE}, "Accepted"),
        ({"status": "Accepted", "expiryDate": PAST}, "Expired"),
        ({"status": "Accepted", "expiryDate": format_timestamp(NOW)}, "Expired"),
        ({"status": "Accepted", "expiryDate": "2024-06-01T14:00:00+02:00"}, "Expired"),
        ({"status": "Accepted", "expiryDate": "not a date"}, "Expired"),
        ({"status": "Blocked", "expiryDate": PAST}, "Blocked"),
        ({"status": "Invalid", "expiryDate": FUTURE}, "Invalid"),
    ],
)
def test_an_accepted_entry_past_its_expiry_date_is_expired(
    info: dict[str, Any], expected: str
) -> None:
    assert effective_status(info, NOW) == expected


def test_keys_are_read_from_the_configuration_with_spec_defaults() -> None:
    configuration = OcppConfiguration(supported_profiles=("Core", "LocalAuthListManagement"))
    assert AuthorizationKeys.from_configuration(configuration) == AuthorizationKeys()
    configuration.set("LocalPreAuthorize", "true")
    configuration.set("LocalAuthorizeOffline", "false")
    configuration.set("AllowOfflineTxForUnknownId", "true")
    configuration.set("AuthorizationCacheEnabled", "false")
    configuration.set("LocalAuthListEnabled", "false")
    assert AuthorizationKeys.from_configuration(configuration) == AuthorizationKeys(
        local_pre_authorize=True,
        local_authorize_offline=False,
        allow_offline_tx_for_unknown_id=True,
        authorization_cache_enabled=False,
        local_auth_list_enabled=False,
    )


# -- the list: Full, Differential, versions, limits (§5.15) ----------------------------------------
def entry(tag: str, status: str | None = "Accepted", **extra: Any) -> dict[str, Any]:
    if status is None:
        return {"idTag": tag}
    return {"idTag": tag, "idTagInfo": {"status": status, **extra}}


def filled(version: int = 3, *tags: str) -> LocalAuthList:
    local = LocalAuthList()
    assert local.update("Full", version, [entry(t) for t in tags or ("A", "B")]) == "Accepted"
    return local


def test_a_new_list_is_empty_with_version_zero() -> None:
    local = LocalAuthList()
    assert local.version == 0
    assert len(local) == 0
    assert local.get("A") is None


def test_full_update_replaces_the_list_and_sets_the_version() -> None:
    local = filled(3, "A", "B")
    assert local.update("Full", 5, [entry("C", "Blocked", parentIdTag="P")]) == "Accepted"
    assert local.version == 5
    assert local.entries() == {"C": {"status": "Blocked", "parentIdTag": "P"}}


@pytest.mark.parametrize("version", [1, 3, 4])
def test_full_update_is_accepted_whatever_the_version(version: int) -> None:
    local = filled(3)
    assert local.update("Full", version, [entry("C")]) == "Accepted"
    assert local.version == version
    assert set(local.entries()) == {"C"}


@pytest.mark.parametrize("authorization_list", [[], ()])
def test_empty_full_update_clears_the_list_and_version_reads_zero(
    authorization_list: list[dict[str, Any]],
) -> None:
    local = filled(3)
    assert local.update("Full", 9, authorization_list) == "Accepted"
    assert len(local) == 0
    assert local.version == 0


def test_differential_adds_replaces_and_removes_entries() -> None:
    local = filled(3, "A", "B")
    update = [entry("C"), entry("A", "Blocked"), entry("B", None), entry("NOT-THERE", None)]
    assert local.update("Differential", 4, update) == "Accepted"
    assert local.version == 4
    assert local.entries() == {"A": {"status": "Blocked"}, "C": {"status": "Accepted"}}


@pytest.mark.parametrize("version", [3, 2, 0, -1])
def test_differential_not_above_the_current_version_is_a_version_mismatch(version: int) -> None:
    local = filled(3, "A")
    before = local.entries()
    assert local.update("Differential", version, [entry("C")]) == "VersionMismatch"
    assert local.version == 3
    assert local.entries() == before


def test_differential_on_an_empty_list_compares_with_version_zero() -> None:
    local = filled(7)
    assert local.update("Full", 7, []) == "Accepted"
    assert local.update("Differential", 1, [entry("A")]) == "Accepted"
    assert local.version == 1


def test_differential_without_entries_only_moves_the_version() -> None:
    local = filled(3, "A")
    assert local.update("Differential", 4, []) == "Accepted"
    assert local.version == 4
    assert set(local.entries()) == {"A"}


def test_differential_removing_the_last_entry_leaves_version_zero() -> None:
    local = filled(3, "A")
    assert local.update("Differential", 4, [entry("A", None)]) == "Accepted"
    assert len(local) == 0
    assert local.version == 0


@pytest.mark.parametrize("update_type", ["Full", "Differential"])
def test_more_entries_than_send_local_list_max_length_fail(update_type: str) -> None:
    local = filled(3, "A")
    before = local.entries()
    three = [entry("X"), entry("Y"), entry("Z")]
    assert local.update(update_type, 4, three, max_send=2) == "Failed"
    assert local.entries() == before
    assert local.version == 3
    assert local.update(update_type, 4, three[:2], max_send=2) == "Accepted"


def test_full_list_longer_than_local_auth_list_max_length_fails() -> None:
    local = filled(3, "A")
    assert local.update("Full", 4, [entry("X"), entry("Y"), entry("Z")], max_length=2) == "Failed"
    assert set(local.entries()) == {"A"}
    assert local.update("Full", 4, [entry("X"), entry("Y")], max_length=2) == "Accepted"


def test_differential_growing_past_local_auth_list_max_length_fails() -> None:
    local = filled(3, "A", "B")
    assert local.update("Differential", 4, [entry("C")], max_length=2) == "Failed"
    assert local.version == 3
    assert set(local.entries()) == {"A", "B"}
    # The resulting size counts: a removal makes room for an addition in the same request.
    assert local.update("Differential", 4, [entry("A", None), entry("C")], max_length=2) == (
        "Accepted"
    )
    assert set(local.entries()) == {"B", "C"}


@pytest.mark.parametrize("update_type", ["Full", "Differential"])
def test_a_repeated_id_tag_fails(update_type: str) -> None:
    local = filled(3, "A")
    assert local.update(update_type, 4, [entry("X"), entry("x", "Blocked")]) == "Failed"
    assert set(local.entries()) == {"A"}


def test_full_entry_without_id_tag_info_is_an_invalid_request() -> None:
    local = filled(3, "A")
    with pytest.raises(InvalidLocalList):
        local.update("Full", 4, [entry("X"), entry("Y", None)])
    assert set(local.entries()) == {"A"}


@pytest.mark.parametrize("version", [0, -1])
def test_a_non_empty_list_needs_a_version_above_zero(version: int) -> None:
    local = LocalAuthList()
    assert local.update("Full", version, [entry("A")]) == "Failed"
    assert local.update("Full", version, []) == "Accepted"
    assert local.version == 0


def test_id_tags_compare_ignoring_case() -> None:
    local = filled(3, "Tag-A")
    assert local.get("TAG-a") == {"status": "Accepted"}
    assert "tag-a" in local
    assert local.update("Differential", 4, [entry("TAG-A", None)]) == "Accepted"
    assert "Tag-A" not in local


def test_list_survives_a_toml_round_trip() -> None:
    local = LocalAuthList()
    update = [entry("A", expiryDate=FUTURE, parentIdTag="P"), entry("B", "Blocked")]
    assert local.update("Full", 12, update) == "Accepted"
    state = tomllib.loads(tomli_w.dumps({"local_list": local.to_state()}))["local_list"]
    again = LocalAuthList()
    again.from_state(state)
    assert again.version == 12
    assert again.entries() == local.entries()
    empty = LocalAuthList()
    empty.from_state(tomllib.loads(tomli_w.dumps(LocalAuthList().to_state())))
    assert empty.version == 0
    assert len(empty) == 0
