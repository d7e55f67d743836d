"""The UI protocol's ChargingStationData of a station, built from its public attributes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import attrs

from evsim_trio._names import camel
from evsim_trio.station import Connector, Station

__all__ = ["camel", "camel_dict", "charging_station_data", "jsonable"]

Payload = dict[str, Any]


def camel_dict(value: Any) -> Payload:
    """An attrs instance as a camelCase dict of JSON values (private fields left out)."""
    if not attrs.has(type(value)):
        return {}
    return {
        camel(field.name): jsonable(getattr(value, field.name))
        for field in attrs.fields(type(value))
        if not field.name.startswith("_")
    }


def jsonable(value: Any) -> Any:
    """`value` with attrs instances, tuples and mapping keys made JSON-friendly."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if attrs.has(type(value)):
        return camel_dict(value)
    return str(value)


def _maximum_power_w(station: Station) -> float | None:
    for meter in station.meters.values():
        return float(meter.station_max_power_w())
    return None


def _connector_data(station: Station, connector: Connector) -> Payload:
    transaction = connector.transaction
    meter = station.meters.get(connector.connector_id)
    energy = meter.energy_register_wh if meter is not None else 0.0
    return {
        "connectorId": connector.connector_id,
        "connectorStatus": {
            "availability": connector.availability,
            "bootStatus": connector.boot_status,
            "status": connector.status,
            "errorCode": connector.error_code,
            "transactionStarted": transaction is not None,
            "transactionId": transaction.transaction_id if transaction is not None else None,
            "transactionIdTag": transaction.id_tag if transaction is not None else None,
            "energyActiveImportRegisterValue": energy,
            "transactionEnergyActiveImportRegisterValue": (
                energy - transaction.start_energy_wh if transaction is not None else 0.0
            ),
            "locked": connector.locked,
            # evsim-trio additions for the page: the simulated power and state of charge.
            "powerActiveImport": meter.power_w if meter is not None else 0.0,
            "socPercent": meter.soc_percent if meter is not None else None,
        },
    }


def _atg_data(station: Station) -> Payload:
    atg = station.atg
    return {
        "automaticTransactionGenerator": camel_dict(atg.config),
        "automaticTransactionGeneratorStatuses": [
            {"connectorId": cid, **camel_dict(status)} for cid, status in atg.statuses.items()
        ],
    }


def charging_station_data(station: Station) -> Payload:
    """One station as the UI protocol's ChargingStationData (camelCase, JSON values)."""
    template = station.template
    identity = station.identity
    return {
        "started": station.started,
        "wsState": int(station.ws_state),
        "state": station.state.value,
        "registration": station.registration,
        "supervisionUrl": station.supervision_url,
        "timestamp": int(datetime.now(UTC).timestamp() * 1000),
        "bootNotificationResponse": jsonable(station.boot_response),
        "stationInfo": {
            "chargingStationId": station.station_id,
            "hashId": station.hash_id,
            "templateName": identity.template_name,
            # As the reference: the station's index within its template (its id is built from it).
            "templateIndex": identity.index,
            "chargePointVendor": template.charge_point_vendor,
            "chargePointModel": template.charge_point_model,
            "firmwareVersion": station.firmware_version,
            "ocppVersion": template.ocpp_version,
            "chargePointSerialNumber": identity.charge_point_serial_number,
            "chargeBoxSerialNumber": identity.charge_box_serial_number,
            "maximumPower": _maximum_power_w(station),
            "currentOutType": template.current_out_type,
        },
        "connectors": [_connector_data(station, c) for c in station.connectors.values()],
        "ocppConfiguration": {
            "configurationKey": [
                {
                    "key": entry.key,
                    "value": entry.value,
                    "readonly": entry.readonly,
                    "visible": entry.visible,
                    "reboot": entry.reboot,
                }
                for entry in station.configuration
            ]
        },
        "automaticTransactionGenerator": _atg_data(station),
    }
