// The evsim-trio page: connects to the UI server (SRPC ui0.0.1 over WebSocket), lists the
// stations, drives every procedure, and charts the fleet's traffic from GET /metrics.

import { LiveChart } from "./chart.js";
import { formatMs, formatPower, formatRate } from "./format.js";
import { MetricsPoller } from "./metrics.js";
import { SrpcClient, basicToken, serverUrl } from "./srpc.js";
import { StationTable } from "./stations.js";

const $ = (selector) => document.querySelector(selector);

// While a transaction runs, energy and power change without a station event (no ["refresh"]
// push): the page lists the stations again this often.
const LIVE_REFRESH_MS = 2000;
const LOG_ENTRIES = 100;
const RECONNECT_MAX_MS = 10000;
const METRICS_INTERVAL_MS = 2000;

class UserError extends Error {}

const state = {
  client: null,
  credentials: null, // {user, password}: protocol-basic-auth, asked for by the login form
  stations: [],
  names: new Map(), // hashId -> chargingStationId
  selected: new Set(),
  listing: null,
  listAgain: false,
  wakeConnect: null,
};

const table = new StationTable($("#stations"), {
  selected: state.selected,
  onSelectionChange: updateSelection,
});

const chart = new LiveChart($("#chart"), {
  capacity: 60,
  intervalMs: METRICS_INTERVAL_MS,
  series: [
    { key: "rate", colorVar: "--rate", axis: "left" },
    { key: "latencyMs", colorVar: "--latency", axis: "right" },
  ],
});

const metrics = new MetricsPoller({
  url: "metrics",
  intervalMs: METRICS_INTERVAL_MS,
  headers: () =>
    state.credentials
      ? { Authorization: `Basic ${basicToken(state.credentials.user, state.credentials.password)}` }
      : {},
  onPoint: (point) => {
    chart.push(point);
    $("#rate-now").textContent = formatRate(point.rate);
    $("#latency-now").textContent = formatMs(point.latencyMs);
    $("#p95-now").textContent = formatMs(point.p95Ms);
    $("#chart-note").classList.remove("failure-text");
  },
  onError: (error) => {
    const note = $("#chart-note");
    note.textContent = `Metrics unavailable: ${error.message}`;
    note.classList.add("failure-text");
  },
});

// -- connection -------------------------------------------------------------------------------

function setConnection(value, text) {
  const badge = $("#connection");
  badge.dataset.value = value;
  badge.textContent = text;
}

function showLogin(message) {
  $("#login-message").textContent = message;
  $("#login").hidden = false;
}

function pause(ms) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    state.wakeConnect = () => {
      clearTimeout(timer);
      resolve();
    };
  });
}

async function connectLoop() {
  let delay = 1000;
  for (;;) {
    setConnection("connecting", "connecting…");
    const client = new SrpcClient(serverUrl(window.location), { credentials: state.credentials });
    try {
      await client.connect();
    } catch {
      setConnection("offline", "not connected");
      showLogin(
        state.credentials
          ? "The UI server refused these credentials, or it cannot be reached. Retrying…"
          : "Cannot connect. If the UI server uses protocol-basic-auth, sign in; retrying meanwhile…",
      );
      await pause(delay);
      delay = Math.min(delay * 2, RECONNECT_MAX_MS);
      continue;
    }
    delay = 1000;
    $("#login").hidden = true;
    const closed = new Promise((resolve) => client.addEventListener("close", resolve, { once: true }));
    client.addEventListener("refresh", () => {
      document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes ?? 0) + 1);
      refresh();
    });
    state.client = client;
    setConnection("online", "connected");
    metrics.start();
    loadTemplates();
    refresh();
    await closed;
    state.client = null;
    metrics.stop();
    setConnection("offline", "disconnected");
    await pause(delay);
  }
}

$("#login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  state.credentials = { user: form.user.value, password: form.password.value };
  form.password.value = "";
  if (state.wakeConnect) state.wakeConnect();
});

// -- data -------------------------------------------------------------------------------------

/** List stations and the simulator state; calls made meanwhile are merged into one more run. */
function refresh() {
  if (state.listing) {
    state.listAgain = true;
    return state.listing;
  }
  state.listing = (async () => {
    do {
      state.listAgain = false;
      const client = state.client;
      if (client === null) return;
      const [stations, simulator] = await Promise.all([
        client.request("listChargingStations"),
        client.request("simulatorState"),
      ]);
      if (stations.status === "success") showStations(stations.chargingStations);
      else report("listChargingStations", stations);
      if (simulator.status === "success") showSimulator(simulator.state);
      else report("simulatorState", simulator);
    } while (state.listAgain);
  })()
    .catch((error) => console.warn("refresh:", error))
    .finally(() => {
      state.listing = null;
    });
  return state.listing;
}

function showStations(stations) {
  state.stations = stations;
  state.names = new Map(stations.map((s) => [s.stationInfo.hashId, s.stationInfo.chargingStationId]));
  table.update(stations);
  updateSelection();
  let open = 0;
  let charging = 0;
  let power = 0;
  const keys = new Set();
  for (const station of stations) {
    if (station.wsState === 1) open += 1;
    for (const { connectorId, connectorStatus } of station.connectors) {
      if (connectorId > 0 && connectorStatus.transactionStarted) charging += 1;
      power += Number(connectorStatus.powerActiveImport ?? 0);
    }
    for (const entry of station.ocppConfiguration?.configurationKey ?? []) {
      if (entry.visible !== false && !entry.readonly) keys.add(entry.key);
    }
  }
  $("#summary-stations").textContent = String(stations.length);
  $("#summary-open").textContent = String(open);
  $("#summary-charging").textContent = String(charging);
  $("#summary-power").textContent = formatPower(power);
  const datalist = $("#config-keys");
  const sorted = [...keys].sort();
  if (datalist.options.length !== sorted.length) {
    datalist.replaceChildren(...sorted.map((key) => new Option(key)));
  }
  showCurrentValue();
}

function showSimulator(simulator) {
  const badge = $("#simulator-state");
  badge.dataset.value = simulator.started ? "started" : "stopped";
  badge.textContent = simulator.started ? "simulator started" : "simulator stopped";
  const parts = [`v${simulator.version}`];
  if (simulator.csmsUrl) parts.push(`embedded CSMS ${simulator.csmsUrl}`);
  $("#simulator-info").textContent = parts.join(" · ");
}

async function loadTemplates() {
  const response = await state.client?.request("listTemplates").catch(() => null);
  if (!response) return;
  if (response.status !== "success") {
    report("listTemplates", response);
    return;
  }
  const select = $("#template-select");
  const chosen = select.value;
  select.replaceChildren(...response.templates.map((name) => new Option(name)));
  if (response.templates.includes(chosen)) select.value = chosen;
}

function anyTransaction() {
  return state.stations.some((s) => s.connectors.some((c) => c.connectorStatus.transactionStarted));
}

setInterval(() => {
  if (state.client !== null && anyTransaction()) refresh();
}, LIVE_REFRESH_MS);

// -- selection --------------------------------------------------------------------------------

function updateSelection() {
  $("#selected-count").textContent = String(state.selected.size);
  const all = $("#select-all");
  all.checked = state.stations.length > 0 && state.selected.size === state.stations.length;
  all.indeterminate = state.selected.size > 0 && !all.checked;
  showCurrentValue();
}

$("#select-all").addEventListener("change", (event) => {
  if (event.currentTarget.checked) {
    for (const station of state.stations) state.selected.add(station.stationInfo.hashId);
  } else {
    state.selected.clear();
  }
  table.update(state.stations);
  updateSelection();
});

/** `{hashIds}` for the chosen target; `{}` means every station. */
function target() {
  if (document.querySelector('input[name="target"]:checked').value === "all") return {};
  const hashIds = state.stations
    .map((s) => s.stationInfo.hashId)
    .filter((hashId) => state.selected.has(hashId));
  if (hashIds.length === 0) {
    throw new UserError("No station selected: tick stations in the list, or apply to all stations.");
  }
  return { hashIds };
}

function targetStations() {
  try {
    const { hashIds } = target();
    return hashIds ? state.stations.filter((s) => hashIds.includes(s.stationInfo.hashId)) : state.stations;
  } catch {
    return [];
  }
}

function showCurrentValue() {
  const key = $("#config-form").key.value.trim();
  const note = $("#config-current");
  const station = targetStations()[0];
  const entry = station?.ocppConfiguration?.configurationKey?.find((e) => e.key === key);
  note.textContent = entry
    ? `${station.stationInfo.chargingStationId}: ${key} = ${entry.value ?? "(unset)"}${entry.readonly ? " (read-only)" : ""}`
    : "";
}
$("#config-form").key.addEventListener("input", showCurrentValue);
for (const radio of document.querySelectorAll('input[name="target"]')) {
  radio.addEventListener("change", showCurrentValue);
}

// -- running procedures -----------------------------------------------------------------------

function stationName(hashId) {
  return state.names.get(hashId) ?? hashId;
}

function failureDetails(response) {
  const details = [];
  if (response.error) details.push(response.error);
  for (const failed of response.responsesFailed ?? []) {
    if (failed === null || typeof failed !== "object") continue;
    details.push(`${stationName(failed.hashId)}: ${failed.errorMessage ?? failed.status ?? "failed"}`);
  }
  if (!response.responsesFailed && response.hashIdsFailed?.length) {
    details.push(`failed: ${response.hashIdsFailed.map(stationName).join(", ")}`);
  }
  return details.join("; ");
}

function successDetails(response) {
  const ids = response.chargingStationIds ?? response.hashIdsSucceeded?.map(stationName);
  if (!ids) return "";
  return ids.length <= 4 ? ids.join(", ") : `${ids.length} stations`;
}

function log(procedure, ok, text) {
  const entry = document.createElement("li");
  entry.className = ok ? "ok" : "fail";
  entry.dataset.procedure = procedure;
  entry.dataset.status = ok ? "success" : "failure";
  const time = document.createElement("time");
  time.textContent = new Date().toLocaleTimeString();
  const name = document.createElement("b");
  name.textContent = procedure;
  entry.append(time, " ", name, ` ${ok ? "success" : "failure"}`, text ? ` — ${text}` : "");
  const list = $("#log");
  list.prepend(entry);
  while (list.children.length > LOG_ENTRIES) list.lastElementChild.remove();
}

function showFailure(text) {
  const banner = $("#failure-banner");
  banner.querySelector(".text").textContent = text;
  banner.hidden = false;
}
$("#failure-banner .dismiss").addEventListener("click", () => {
  $("#failure-banner").hidden = true;
});

/** Log a response; a failure also goes to the banner. */
function report(procedure, response) {
  if (response.status === "success") {
    log(procedure, true, successDetails(response));
  } else {
    const details = failureDetails(response);
    log(procedure, false, details);
    showFailure(`${procedure} failed${details ? `: ${details}` : ""}`);
  }
}

async function run(procedure, payload, control) {
  if (control) control.classList.add("busy");
  try {
    if (state.client === null) throw new UserError("Not connected to the UI server.");
    const response = await state.client.request(procedure, payload);
    report(procedure, response);
    refresh();
    return response;
  } catch (error) {
    log(procedure, false, error.message);
    showFailure(`${procedure} failed: ${error.message}`);
    return null;
  } finally {
    if (control) control.classList.remove("busy");
  }
}

function fail(procedure, message) {
  log(procedure, false, message);
  showFailure(`${procedure}: ${message}`);
}

// Simulator buttons.
$("#start-simulator").addEventListener("click", (e) => run("startSimulator", {}, e.currentTarget));
$("#stop-simulator").addEventListener("click", (e) => {
  if (window.confirm("Stop every station of the simulator?")) run("stopSimulator", {}, e.currentTarget);
});

// Forms: the submit button (or the form) names the procedure; the payload comes from fields.
const integer = (form, name) => Number.parseInt(form.elements[name].value, 10);
const text = (form, name) => form.elements[name].value.trim();

const PAYLOADS = {
  addChargingStations: (form) => ({
    template: form.elements.template.value,
    numberOfStations: integer(form, "numberOfStations"),
    options: { autoStart: form.elements.autoStart.checked },
  }),
  startChargingStation: () => target(),
  stopChargingStation: () => target(),
  openConnection: () => target(),
  closeConnection: () => target(),
  deleteChargingStations: (form) => {
    const chosen = target();
    const count = chosen.hashIds ? chosen.hashIds.length : state.stations.length;
    if (!window.confirm(`Delete ${count} station(s)?`)) return null;
    return { ...chosen, deleteConfiguration: form.elements.deleteConfiguration.checked };
  },
  startTransaction: (form) => ({
    ...target(),
    connectorId: integer(form, "connectorId"),
    idTag: text(form, "idTag"),
  }),
  // A transaction id names one station's transaction: without ticked stations, the server
  // finds the station that has it.
  stopTransaction: (form) => {
    const selectedOnly = document.querySelector('input[name="target"]:checked').value === "selected";
    const chosen = selectedOnly && state.selected.size > 0 ? target() : {};
    return { ...chosen, transactionId: integer(form, "transactionId") };
  },
  startAutomaticTransactionGenerator: (form) => atgPayload(form),
  stopAutomaticTransactionGenerator: (form) => atgPayload(form),
  changeConfiguration: (form) => ({ ...target(), key: text(form, "key"), value: form.elements.value.value }),
  setSupervisionUrl: (form) => ({ ...target(), url: text(form, "url") }),
  statusNotification: (form) => ({
    ...target(),
    connectorId: integer(form, "connectorId"),
    status: form.elements.status.value,
    errorCode: form.elements.errorCode.value,
  }),
  heartbeat: () => target(),
  bootNotification: () => target(),
  authorize: (form) => ({ ...target(), idTag: text(form, "idTag") }),
  meterValues: (form) => ({ ...target(), connectorId: integer(form, "connectorId") }),
  lockConnector: (form) => ({ ...target(), connectorId: integer(form, "connectorId") }),
  unlockConnector: (form) => ({ ...target(), connectorId: integer(form, "connectorId") }),
  dataTransfer: (form) => {
    const payload = target();
    for (const name of ["vendorId", "messageId", "data"]) {
      const value = form.elements[name].value;
      if (value !== "") payload[name] = value;
    }
    return payload;
  },
  diagnosticsStatusNotification: (form) => ({ ...target(), status: form.elements.status.value }),
  firmwareStatusNotification: (form) => ({ ...target(), status: form.elements.status.value }),
};

function atgPayload(form) {
  const payload = target();
  const raw = text(form, "connectorIds");
  if (raw !== "") payload.connectorIds = [...new Set(raw.split(",").map((v) => Number.parseInt(v, 10)))];
  return payload;
}

for (const form of document.querySelectorAll("form[data-procedure]")) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const submitter = event.submitter;
    const procedure = submitter?.dataset.procedure ?? form.dataset.procedure;
    let payload;
    try {
      payload = PAYLOADS[procedure](form);
    } catch (error) {
      if (!(error instanceof UserError)) throw error;
      fail(procedure, error.message);
      return;
    }
    if (payload === null) return; // cancelled
    run(procedure, payload, submitter ?? form).then((response) => {
      if (procedure === "addChargingStations" && response?.status === "success") loadTemplates();
    });
  });
}

// Row buttons of the station table.
$("#stations").addEventListener("click", (event) => {
  const control = event.target.closest("button[data-action]");
  if (control === null) return;
  const tbody = control.closest("tbody.station");
  const hashIds = [tbody.dataset.hashId];
  const row = control.closest("tr.connector-row");
  const connectorId = row ? Number(row.dataset.connectorId) : null;
  const name = tbody.dataset.stationId;
  switch (control.dataset.action) {
    case "start-station":
      return run("startChargingStation", { hashIds }, control);
    case "stop-station":
      return run("stopChargingStation", { hashIds }, control);
    case "open-connection":
      return run("openConnection", { hashIds }, control);
    case "close-connection":
      return run("closeConnection", { hashIds }, control);
    case "heartbeat":
      return run("heartbeat", { hashIds }, control);
    case "delete-station":
      if (window.confirm(`Delete station ${name}?`)) run("deleteChargingStations", { hashIds }, control);
      return undefined;
    case "start-tx": {
      const idTag = row.querySelector(".idtag-input").value.trim() || $("#tx-idtag").value.trim();
      if (idTag === "") return fail("startTransaction", `enter an idTag for ${name} connector ${connectorId}`);
      return run("startTransaction", { hashIds, connectorId, idTag }, control);
    }
    case "stop-tx":
      return run("stopTransaction", { hashIds, transactionId: Number(control.dataset.transactionId) }, control);
    case "start-atg":
      return run("startAutomaticTransactionGenerator", { hashIds, connectorIds: [connectorId] }, control);
    case "stop-atg":
      return run("stopAutomaticTransactionGenerator", { hashIds, connectorIds: [connectorId] }, control);
    case "lock":
      return run("lockConnector", { hashIds, connectorId }, control);
    case "unlock":
      return run("unlockConnector", { hashIds, connectorId }, control);
    default:
      return undefined;
  }
});

table.update([]);
connectLoop();
