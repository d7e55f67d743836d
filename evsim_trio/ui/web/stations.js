// The station table: one <tbody> per station (a station row, then one row per connector),
// keyed by hashId and updated in place, so that what the user is typing in a row (an idTag)
// and the selection survive every refresh.

import {
  el,
  formatEnergy,
  formatPower,
  setText,
  shortHash,
  wsStateText,
} from "./format.js";

const COLUMNS = 9;

function registrationOf(station) {
  return station.bootNotificationResponse?.status ?? station.registration ?? "–";
}

function lifeOf(station) {
  if (station.state) return station.state;
  return station.started ? "started" : "stopped";
}

function atgText(status) {
  if (!status) return "–";
  return [
    status.start ? "running" : "off",
    `${status.startTransactionRequests ?? 0} started`,
    `${status.skippedTransactions ?? 0} skipped`,
  ].join(" · ");
}

function atgTitle(status) {
  if (!status) return "";
  return Object.entries(status)
    .filter(([key]) => key !== "connectorId")
    .map(([key, value]) => `${key}: ${value ?? "–"}`)
    .join("\n");
}

function button(action, text, title, className) {
  return el("button", { type: "button", class: className, dataset: { action }, title }, text);
}

export class StationTable {
  /**
   * @param table the <table> (its <thead> is kept; station <tbody>s are managed here)
   * @param selected a Set of selected hashIds, shared with the page
   * @param onSelectionChange called after the user changes the selection
   */
  constructor(table, { selected, onSelectionChange }) {
    this.table = table;
    this.selected = selected;
    this.onSelectionChange = onSelectionChange;
    this.rows = new Map(); // hashId -> {tbody, refs, connectorIds}
    this.empty = el(
      "tbody",
      { class: "empty" },
      el("tr", {}, el("td", { colSpan: COLUMNS }, "No stations.")),
    );
    table.addEventListener("change", (event) => {
      const box = event.target.closest("input.select-station");
      if (box === null) return;
      const hashId = box.closest("tbody").dataset.hashId;
      if (box.checked) this.selected.add(hashId);
      else this.selected.delete(hashId);
      this.onSelectionChange();
    });
  }

  /** Show `stations` (listChargingStations' chargingStations), in their order. */
  update(stations) {
    const seen = new Set();
    let previous = null;
    for (const station of stations) {
      const hashId = station.stationInfo.hashId;
      seen.add(hashId);
      let row = this.rows.get(hashId);
      const connectorIds = station.connectors.map((c) => c.connectorId).join(",");
      if (row === undefined || row.connectorIds !== connectorIds) {
        const fresh = this.#build(station);
        if (row !== undefined) row.tbody.replaceWith(fresh.tbody);
        row = fresh;
        this.rows.set(hashId, row);
      }
      this.#fill(row, station);
      // Keep the DOM order of the list; move a node only when it is out of place.
      const expected = previous === null ? this.table.tHead : previous.tbody;
      if (expected.nextElementSibling !== row.tbody) expected.after(row.tbody);
      previous = row;
    }
    for (const [hashId, row] of this.rows) {
      if (!seen.has(hashId)) {
        row.tbody.remove();
        this.rows.delete(hashId);
        this.selected.delete(hashId);
      }
    }
    if (stations.length === 0) this.table.append(this.empty);
    else this.empty.remove();
  }

  #build(station) {
    const info = station.stationInfo;
    const refs = { connectors: new Map() };
    refs.select = el("input", {
      type: "checkbox",
      class: "select-station",
      "aria-label": `Select ${info.chargingStationId}`,
    });
    refs.hash = el("code", { class: "hash-id" });
    refs.template = el("span", { class: "template" });
    refs.ws = el("span", { class: "badge ws-state" });
    refs.registration = el("span", { class: "badge registration" });
    refs.life = el("span", { class: "badge life" });
    refs.power = el("span", { class: "muted max-power" });
    refs.url = el("span", { class: "muted supervision-url" });
    refs.toggleStation = button("start-station", "Start", "Start or stop the station");
    refs.toggleConnection = button("open-connection", "Connect", "Open or close its WebSocket");
    const stationRow = el(
      "tr",
      { class: "station-row" },
      el("td", { class: "select" }, refs.select),
      el(
        "td",
        { colSpan: COLUMNS - 1 },
        el(
          "div",
          { class: "station-head" },
          el("span", { class: "station-id" }, info.chargingStationId),
          refs.hash,
          refs.template,
          refs.ws,
          refs.registration,
          refs.life,
          refs.power,
          refs.url,
          el(
            "span",
            { class: "actions" },
            refs.toggleStation,
            refs.toggleConnection,
            button("heartbeat", "Heartbeat", "Send a Heartbeat"),
            button("delete-station", "Delete", "Stop and remove this station", "danger"),
          ),
        ),
      ),
    );
    const tbody = el("tbody", {
      class: "station",
      dataset: { hashId: info.hashId, stationId: info.chargingStationId },
    });
    tbody.append(stationRow);
    for (const { connectorId } of station.connectors) {
      const c = {};
      c.status = el("span", { class: "badge connector-status" });
      c.errorCode = el("small", { class: "error-code" });
      c.idTag = el("td", { class: "id-tag" });
      c.txId = el("td", { class: "tx-id" });
      c.txEnergy = el("span", { class: "tx-energy" });
      c.register = el("small", { class: "muted register" });
      c.energy = el("td", { class: "energy" }, c.txEnergy, " ", c.register);
      c.power = el("td", { class: "power" });
      c.atg = el("td", { class: "atg" });
      const actions = el("td", { class: "actions" });
      if (connectorId > 0) {
        c.idTagInput = el("input", {
          type: "text",
          class: "idtag-input",
          placeholder: "idTag",
          maxLength: 20,
          size: 9,
          "aria-label": `idTag for ${info.chargingStationId} connector ${connectorId}`,
        });
        c.toggleTx = button("start-tx", "Start tx", "Start or stop a transaction");
        c.toggleAtg = button("start-atg", "Start ATG", "Automatic transaction generator");
        c.toggleLock = button("lock", "Lock", "Lock or unlock the connector");
        actions.append(c.idTagInput, c.toggleTx, c.toggleAtg, c.toggleLock);
      }
      const row = el(
        "tr",
        { class: "connector-row", dataset: { connectorId: String(connectorId) } },
        el("td"),
        el("td", { class: "connector-id" }, `#${connectorId}`),
        el("td", { class: "status-cell" }, c.status, " ", c.errorCode),
        c.idTag,
        c.txId,
        c.energy,
        c.power,
        c.atg,
        actions,
      );
      refs.connectors.set(connectorId, c);
      tbody.append(row);
    }
    return {
      tbody,
      refs,
      connectorIds: station.connectors.map((c) => c.connectorId).join(","),
    };
  }

  #fill(row, station) {
    const { refs } = row;
    const info = station.stationInfo;
    refs.select.checked = this.selected.has(info.hashId);
    setText(refs.hash, shortHash(info.hashId));
    refs.hash.title = `hashId ${info.hashId}`;
    setText(refs.template, info.templateName ?? "");
    setText(refs.ws, wsStateText(station.wsState));
    refs.ws.dataset.value = String(station.wsState);
    const registration = registrationOf(station);
    setText(refs.registration, registration);
    refs.registration.dataset.value = registration;
    const life = lifeOf(station);
    setText(refs.life, life);
    refs.life.dataset.value = life;
    setText(refs.power, info.maximumPower ? `${formatPower(info.maximumPower)} max` : "");
    setText(refs.url, station.supervisionUrl ?? "");
    refs.url.title = station.supervisionUrl ?? "";
    this.#toggle(refs.toggleStation, station.started, ["stop-station", "Stop"], ["start-station", "Start"]);
    this.#toggle(
      refs.toggleConnection,
      station.wsState === 0 || station.wsState === 1,
      ["close-connection", "Disconnect"],
      ["open-connection", "Connect"],
    );
    refs.toggleConnection.disabled = !station.started;

    const atg = station.automaticTransactionGenerator ?? {};
    const atgStatuses = new Map(
      (atg.automaticTransactionGeneratorStatuses ?? []).map((s) => [s.connectorId, s]),
    );
    for (const { connectorId, connectorStatus: cs } of station.connectors) {
      const c = refs.connectors.get(connectorId);
      const status = cs.status ?? "–";
      setText(c.status, status);
      c.status.dataset.value = status;
      setText(c.errorCode, cs.errorCode && cs.errorCode !== "NoError" ? cs.errorCode : "");
      c.status.title = `availability ${cs.availability ?? "–"}${cs.locked ? ", locked" : ""}`;
      setText(c.idTag, cs.transactionIdTag ?? "");
      setText(c.txId, cs.transactionId ?? "");
      const txWh = Number(cs.transactionEnergyActiveImportRegisterValue ?? 0);
      const registerWh = Number(cs.energyActiveImportRegisterValue ?? 0);
      setText(c.txEnergy, cs.transactionStarted ? formatEnergy(txWh) : "");
      setText(c.register, connectorId > 0 ? `meter ${formatEnergy(registerWh)}` : "");
      c.energy.dataset.txWh = String(txWh);
      c.energy.dataset.registerWh = String(registerWh);
      const watts = Number(cs.powerActiveImport ?? 0);
      setText(c.power, cs.transactionStarted || watts > 0 ? formatPower(watts) : "");
      c.power.dataset.w = String(watts);
      const atgStatus = atgStatuses.get(connectorId);
      setText(c.atg, connectorId > 0 ? atgText(atgStatus) : "");
      c.atg.title = atgTitle(atgStatus);
      c.atg.dataset.running = String(Boolean(atgStatus?.start));
      if (connectorId > 0) {
        this.#toggle(c.toggleTx, cs.transactionStarted, ["stop-tx", "Stop tx"], ["start-tx", "Start tx"]);
        c.toggleTx.dataset.transactionId = cs.transactionId ?? "";
        c.toggleTx.disabled = !station.started || (cs.transactionStarted && cs.transactionId == null);
        c.idTagInput.hidden = Boolean(cs.transactionStarted);
        this.#toggle(c.toggleAtg, Boolean(atgStatus?.start), ["stop-atg", "Stop ATG"], ["start-atg", "Start ATG"]);
        c.toggleAtg.disabled = !station.started;
        this.#toggle(c.toggleLock, Boolean(cs.locked), ["unlock", "Unlock"], ["lock", "Lock"]);
      }
    }
  }

  #toggle(node, on, [onAction, onText], [offAction, offText]) {
    const [action, text] = on ? [onAction, onText] : [offAction, offText];
    if (node.dataset.action !== action) node.dataset.action = action;
    setText(node, text);
  }
}
