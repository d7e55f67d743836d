"""The Local Authorization List (OCPP 1.6 §3.4.2, §5.15) and the authorization decision (§3.4).

Pure: no trio, no I/O; time is passed in. The station keeps one `LocalAuthList`, changed only by
SendLocalList (never by Authorize answers), and asks `authorization_decision` what to do with a
presented idTag before it (maybe) sends Authorize.

Readings of the specification where it is silent or loose:

- idTags are IdToken = CiString20 (§7.28): the list compares them ignoring case; an idTag keeps
  the spelling it was sent with.
- GetLocalListVersion answers 0 for an empty list (§5.10), so an empty list *has* version 0: a
  Full update with no entry, or a Differential removing the last entry, leaves version 0, and the
  next Differential is compared with 0.
- A list that would hold entries under a listVersion < 1 is refused (Failed): 0 and -1 are the
  versions §5.10 reserves for "empty" and "not supported".
- "All idTags in the localAuthorizationList MUST be unique" (§5.15): a request naming one twice
  is Failed. A Full update entry without idTagInfo (required for Full, §7.2) is an occurrence
  constraint violation of the request (`InvalidLocalList`).
- A request is applied entirely or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import attrs

from evsim_trio.station._clock import parse_timestamp

if TYPE_CHECKING:
    from evsim_trio.station._ocpp_config import OcppConfiguration

UpdateStatus = Literal["Accepted", "Failed", "NotSupported", "VersionMismatch"]
"""SendLocalList.conf status (OCPP 1.6 §7.43 UpdateStatus)."""

Source = Literal["list", "cache", "unknown", "csms"]
"""Where an authorization decision comes from."""


class InvalidLocalList(ValueError):
    """A SendLocalList request the specification forbids (the message says which rule)."""


def effective_status(info: Mapping[str, Any], now: datetime) -> str:
    """The status an idTagInfo stands for at `now`: Accepted past its expiryDate is Expired.

    An expiryDate that cannot be read cannot prove the entry valid: it counts as past.
    """
    status = str(info.get("status", "Invalid"))
    expiry = info.get("expiryDate")
    if status != "Accepted" or expiry is None:
        return status
    try:
        expired = parse_timestamp(str(expiry)) <= now
    except ValueError:
        expired = True
    return "Expired" if expired else status


class LocalAuthList:
    """A station's Local Authorization List: a version and idTag -> idTagInfo (§3.4.2)."""

    def __init__(self) -> None:
        self.version = 0
        # casefolded idTag -> (idTag as sent, idTagInfo)
        self._entries: dict[str, tuple[str, dict[str, Any]]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, id_tag: object) -> bool:
        return isinstance(id_tag, str) and id_tag.casefold() in self._entries

    def get(self, id_tag: str) -> dict[str, Any] | None:
        """The idTagInfo of `id_tag` (any case), or None when the list does not hold it."""
        entry = self._entries.get(id_tag.casefold())
        return None if entry is None else entry[1]

    def entries(self) -> dict[str, dict[str, Any]]:
        """idTag -> idTagInfo, every entry (a copy)."""
        return {tag: dict(info) for tag, info in self._entries.values()}

    def update(
        self,
        update_type: str,
        list_version: int,
        authorization_list: Iterable[Mapping[str, Any]] = (),
        *,
        max_send: int | None = None,
        max_length: int | None = None,
    ) -> UpdateStatus:
        """Apply a SendLocalList (§5.15); Accepted, Failed or VersionMismatch.

        Full replaces the list whatever its version. Differential adds or replaces the entries
        carrying an idTagInfo and removes those without one; its listVersion must be greater
        than the current version, else VersionMismatch (§7.43). Failed: more entries than
        `max_send` (SendLocalListMaxLength) in the request, a resulting list longer than
        `max_length` (LocalAuthListMaxLength), a repeated idTag, or a non-empty list under a
        version < 1. Raises `InvalidLocalList` for a Full entry without idTagInfo.
        """
        items = list(authorization_list)
        full = update_type == "Full"
        if full and any(item.get("idTagInfo") is None for item in items):
            raise InvalidLocalList("every entry of a Full update needs an idTagInfo (1.6 §7.2)")
        if max_send is not None and len(items) > max_send:
            return "Failed"
        folded = [str(item["idTag"]).casefold() for item in items]
        if len(set(folded)) != len(folded):
            return "Failed"
        if not full and list_version <= self.version:
            return "VersionMismatch"
        entries = {} if full else dict(self._entries)
        for key, item in zip(folded, items, strict=True):
            info = item.get("idTagInfo")
            if info is None:
                entries.pop(key, None)
            else:
                entries[key] = (str(item["idTag"]), dict(info))
        if max_length is not None and len(entries) > max_length:
            return "Failed"
        if entries and list_version < 1:
            return "Failed"
        self._entries = entries
        self.version = list_version if entries else 0
        return "Accepted"

    def to_state(self) -> dict[str, Any]:
        """The list as plain data, for the station's state file."""
        return {
            "version": self.version,
            "entries": [
                {"idTag": tag, "idTagInfo": dict(info)} for tag, info in self._entries.values()
            ],
        }

    def from_state(self, state: Mapping[str, Any]) -> None:
        """Restore what `to_state()` wrote."""
        entries: dict[str, tuple[str, dict[str, Any]]] = {}
        for item in state.get("entries", []):
            tag = str(item["idTag"])
            entries[tag.casefold()] = (tag, dict(item["idTagInfo"]))
        self._entries = entries
        self.version = int(state.get("version", 0)) if entries else 0


@attrs.frozen
class AuthorizationKeys:
    """The configuration keys the authorization decision reads (1.6 §9.1, §9.2)."""

    local_pre_authorize: bool = False
    local_authorize_offline: bool = True
    allow_offline_tx_for_unknown_id: bool = False
    authorization_cache_enabled: bool = True
    local_auth_list_enabled: bool = True

    @classmethod
    def from_configuration(cls, configuration: OcppConfiguration) -> AuthorizationKeys:
        """The keys' current values (the specification's defaults for keys the station lacks)."""
        get = configuration.get_bool
        return cls(
            local_pre_authorize=get("LocalPreAuthorize", False),
            local_authorize_offline=get("LocalAuthorizeOffline", True),
            allow_offline_tx_for_unknown_id=get("AllowOfflineTxForUnknownId", False),
            authorization_cache_enabled=get("AuthorizationCacheEnabled", True),
            local_auth_list_enabled=get("LocalAuthListEnabled", True),
        )


@attrs.frozen
class AuthorizationDecision:
    """What to do with a presented idTag: answer `status` locally, or (None) ask the CSMS."""

    status: str | None
    source: Source

    @property
    def send_authorize(self) -> bool:
        """Whether the station must send Authorize.req and use its answer."""
        return self.status is None


def authorization_decision(
    *,
    online: bool,
    list_info: Mapping[str, Any] | None,
    cache_info: Mapping[str, Any] | None,
    keys: AuthorizationKeys,
    now: datetime,
) -> AuthorizationDecision:
    """Decide on a presented idTag from the local list and the cache (OCPP 1.6 §3.4, §4.1).

    `list_info` / `cache_info`: the idTag's entry in the Local Authorization List / the
    Authorization Cache, or None. A list entry counts only when LocalAuthListEnabled, a cache
    entry only when AuthorizationCacheEnabled, and a list entry hides the cache's (§3.4.3:
    list entries have priority). An Accepted entry past its expiryDate is Expired.

    Online: with LocalPreAuthorize, a locally Accepted idTag is Accepted at once; anything else
    goes to the CSMS (Authorize.req, §4.1: an idTag not Accepted locally is checked online).

    Offline: a locally known idTag that is not Accepted is refused with its status (§3.4.4:
    "MUST be rejected"); a locally Accepted one is Accepted when LocalAuthorizeOffline. An idTag
    that cannot be explicitly authorized by the list or cache (unknown, or LocalAuthorizeOffline
    false) is Accepted only when AllowOfflineTxForUnknownId, else Invalid.
    """
    known: tuple[Source, str] | None = None
    if keys.local_auth_list_enabled and list_info is not None:
        known = ("list", effective_status(list_info, now))
    elif keys.authorization_cache_enabled and cache_info is not None:
        known = ("cache", effective_status(cache_info, now))
    if online:
        if keys.local_pre_authorize and known is not None and known[1] == "Accepted":
            return AuthorizationDecision("Accepted", known[0])
        return AuthorizationDecision(None, "csms")
    if known is not None:
        source, status = known
        if status != "Accepted":
            return AuthorizationDecision(status, source)
        if keys.local_authorize_offline:
            return AuthorizationDecision("Accepted", source)
    if keys.allow_offline_tx_for_unknown_id:
        return AuthorizationDecision("Accepted", "unknown")
    return AuthorizationDecision("Invalid", "unknown")
