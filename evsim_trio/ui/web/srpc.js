// SRPC `ui0.0.1` over WebSocket: requests [uuid, procedure, payload], responses [uuid, payload],
// the server push ["refresh"]. No dependencies; works in insecure contexts (plain http on a
// LAN address), where crypto.randomUUID does not exist.

export const SUBPROTOCOL = "ui0.0.1";
export const AUTH_SUBPROTOCOL_PREFIX = "authorization.basic.";

/** A random (version 4) UUID string, from crypto.getRandomValues. */
export function uuid4() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** Standard base64 of `user:password` in UTF-8 (btoa alone only takes Latin-1). */
export function basicToken(user, password) {
  const bytes = new TextEncoder().encode(`${user}:${password}`);
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/**
 * The protocol-basic-auth subprotocol: `authorization.basic.<base64 of user:password>` without
 * padding. URL-safe alphabet: `/` (and `=`) may not appear in a subprotocol token, and the
 * browser refuses to open a WebSocket with one; the server accepts both alphabets.
 */
export function authSubprotocol(user, password) {
  const token = basicToken(user, password)
    .replace(/=+$/, "")
    .replace(/\+/g, "-")
    .replace(/\//g, "_");
  return AUTH_SUBPROTOCOL_PREFIX + token;
}

/** The UI server's WebSocket URL: the page's own origin and path, ws:// or wss://. */
export function serverUrl(location) {
  const url = new URL(".", location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.hash = "";
  url.search = "";
  return url.href;
}

/**
 * One SRPC connection. Events: "refresh" (server push), "close" (detail: {code, reason}).
 * `request()` resolves with the response payload, whatever its status; it rejects only when
 * the connection closes or the request times out.
 */
export class SrpcClient extends EventTarget {
  constructor(url, { credentials = null, timeoutMs = 120000 } = {}) {
    super();
    this.url = url;
    this.credentials = credentials;
    this.timeoutMs = timeoutMs;
    this.pending = new Map();
    this.ws = null;
  }

  /** Open the connection; rejects when it closes before opening (refused, unreachable). */
  connect() {
    const protocols = [SUBPROTOCOL];
    if (this.credentials) {
      protocols.push(authSubprotocol(this.credentials.user, this.credentials.password));
    }
    return new Promise((resolve, reject) => {
      let opened = false;
      const ws = new WebSocket(this.url, protocols);
      this.ws = ws;
      ws.addEventListener("open", () => {
        opened = true;
        resolve(this);
      });
      ws.addEventListener("message", (event) => this.#receive(event.data));
      ws.addEventListener("close", (event) => {
        this.#failPending(new Error(`connection closed (${event.code})`));
        if (!opened) {
          reject(new Error(`connection refused or server unreachable (${event.code})`));
        } else {
          this.dispatchEvent(
            new CustomEvent("close", { detail: { code: event.code, reason: event.reason } }),
          );
        }
      });
    });
  }

  get open() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  close() {
    if (this.ws) this.ws.close(1000, "page closed");
  }

  /** Send one request; the promise settles with its response payload. */
  request(procedure, payload = {}) {
    if (!this.open) return Promise.reject(new Error("not connected"));
    const id = uuid4();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${procedure}: no response in ${this.timeoutMs / 1000} s`));
      }, this.timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.ws.send(JSON.stringify([id, procedure, payload]));
    });
  }

  #receive(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      console.warn("SRPC: ignored a frame that is not JSON", data);
      return;
    }
    if (!Array.isArray(frame)) return;
    if (frame.length === 1 && frame[0] === "refresh") {
      this.dispatchEvent(new Event("refresh"));
      return;
    }
    const [id, payload] = frame;
    const waiter = this.pending.get(id);
    if (waiter === undefined) {
      // A failure for a frame the server could not read (uuid null): not ours to match.
      console.warn("SRPC: response without a waiting request", frame);
      return;
    }
    this.pending.delete(id);
    clearTimeout(waiter.timer);
    waiter.resolve(payload);
  }

  #failPending(error) {
    for (const { reject, timer } of this.pending.values()) {
      clearTimeout(timer);
      reject(error);
    }
    this.pending.clear();
  }
}
