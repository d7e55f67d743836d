// GET /metrics (Prometheus text format 0.0.4) parsed in the page, reduced to what the chart
// draws: the fleet's CALL rate (evsim_messages_sent_total, summed over actions) and the CSMS
// response latency (the evsim_csms_response_seconds histogram, summed over actions).

const SAMPLE_LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

function unescapeLabel(value) {
  return value.replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
}

function parseValue(text) {
  if (text === "+Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  return Number(text); // "NaN" -> NaN
}

/** Every sample of a Prometheus text exposition: [{name, labels, value}]. */
export function parsePrometheus(text) {
  const samples = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const match = SAMPLE_LINE.exec(line);
    if (match === null) continue;
    const labels = {};
    if (match[2]) {
      for (const [, key, value] of match[2].matchAll(LABEL)) labels[key] = unescapeLabel(value);
    }
    samples.push({ name: match[1], labels, value: parseValue(match[3]) });
  }
  return samples;
}

/**
 * The fleet totals at one scrape: CALLs sent and received, latency sum and count, and the
 * latency buckets (upper bound in seconds -> cumulative count) summed over actions.
 */
export function fleetTotals(samples, time) {
  const totals = { time, sent: 0, received: 0, latencySum: 0, latencyCount: 0, buckets: new Map() };
  for (const { name, labels, value } of samples) {
    switch (name) {
      case "evsim_messages_sent_total":
        totals.sent += value;
        break;
      case "evsim_messages_received_total":
        totals.received += value;
        break;
      case "evsim_csms_response_seconds_sum":
        totals.latencySum += value;
        break;
      case "evsim_csms_response_seconds_count":
        totals.latencyCount += value;
        break;
      case "evsim_csms_response_seconds_bucket": {
        const bound = parseValue(labels.le);
        totals.buckets.set(bound, (totals.buckets.get(bound) ?? 0) + value);
        break;
      }
      default:
        break;
    }
  }
  return totals;
}

/**
 * One chart point from two scrapes: CALLs sent per second, mean CSMS latency (ms) of the calls
 * answered in between and an upper bound of their 95th percentile (a bucket bound, ms). A
 * counter that went down (stations deleted) makes that interval unknown: null values.
 */
export function ratePoint(previous, current) {
  const seconds = (current.time - previous.time) / 1000;
  const point = { time: current.time, rate: null, received: null, latencyMs: null, p95Ms: null };
  const sent = current.sent - previous.sent;
  const received = current.received - previous.received;
  const count = current.latencyCount - previous.latencyCount;
  const sum = current.latencySum - previous.latencySum;
  if (seconds <= 0 || sent < 0 || received < 0 || count < 0 || sum < 0) return point;
  point.rate = sent / seconds;
  point.received = received / seconds;
  if (count > 0) {
    point.latencyMs = (sum / count) * 1000;
    const bounds = [...current.buckets.keys()].sort((a, b) => a - b);
    for (const bound of bounds) {
      const delta = current.buckets.get(bound) - (previous.buckets.get(bound) ?? 0);
      if (delta >= 0.95 * count) {
        point.p95Ms = Number.isFinite(bound) ? bound * 1000 : Infinity;
        break;
      }
    }
  }
  return point;
}

/** Scrapes /metrics every `intervalMs` and hands each new point to `onPoint`. */
export class MetricsPoller {
  constructor({ url = "metrics", intervalMs = 2000, headers = () => ({}), onPoint, onError }) {
    this.url = url;
    this.intervalMs = intervalMs;
    this.headers = headers;
    this.onPoint = onPoint;
    this.onError = onError;
    this.previous = null;
    this.timer = null;
  }

  start() {
    if (this.timer !== null) return;
    const tick = async () => {
      await this.scrape();
      if (this.timer !== null) this.timer = setTimeout(tick, this.intervalMs);
    };
    this.timer = setTimeout(tick, 0);
  }

  stop() {
    clearTimeout(this.timer);
    this.timer = null;
    this.previous = null;
  }

  async scrape() {
    try {
      const response = await fetch(this.url, { headers: this.headers(), cache: "no-store" });
      if (!response.ok) throw new Error(`GET /metrics: HTTP ${response.status}`);
      const totals = fleetTotals(parsePrometheus(await response.text()), Date.now());
      if (this.previous !== null) this.onPoint(ratePoint(this.previous, totals), totals);
      this.previous = totals;
    } catch (error) {
      this.previous = null;
      if (this.onError) this.onError(error);
    }
  }
}
