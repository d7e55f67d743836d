// Formatting and small DOM helpers shared by the page's modules.

/** wsState as existing UI clients number it (the WebSocket readyState). */
export const WS_STATES = ["connecting", "open", "closing", "closed"];

export function wsStateText(value) {
  return WS_STATES[value] ?? `unknown (${value})`;
}

export function formatEnergy(wh) {
  if (!Number.isFinite(wh)) return "–";
  if (Math.abs(wh) >= 1000) return `${(wh / 1000).toFixed(2)} kWh`;
  return `${wh.toFixed(1)} Wh`;
}

export function formatPower(w) {
  if (!Number.isFinite(w)) return "–";
  if (Math.abs(w) >= 1000) return `${(w / 1000).toFixed(2)} kW`;
  return `${Math.round(w)} W`;
}

export function formatRate(value) {
  if (!Number.isFinite(value)) return "–";
  return value >= 100 ? value.toFixed(0) : value.toFixed(1);
}

export function formatMs(value) {
  if (value === Infinity) return "> max bucket";
  if (!Number.isFinite(value)) return "–";
  return value >= 100 ? `${value.toFixed(0)} ms` : `${value.toFixed(1)} ms`;
}

export function shortHash(hashId) {
  return typeof hashId === "string" ? hashId.slice(0, 8) : "";
}

/** document.createElement with attributes (class, dataset, properties) and children. */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Set text only when it differs (no needless layout, no lost selection). */
export function setText(node, text) {
  const value = String(text);
  if (node.textContent !== value) node.textContent = value;
}
