// A small two-axis line chart on a <canvas>: messages per second (left axis) and CSMS latency
// in milliseconds (right axis) over the last points. Our own drawing code, no library.

const PAD = { left: 44, right: 48, top: 10, bottom: 20 };

/** A "nice" axis for values up to `value`: its maximum and how many grid steps divide it. */
export function niceScale(value) {
  if (!(value > 0) || !Number.isFinite(value)) return { max: 1, ticks: 4 };
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const [step, ticks] of [[1, 5], [2, 4], [4, 4], [5, 5], [10, 5]]) {
    if (value <= step * magnitude) return { max: step * magnitude, ticks };
  }
  return { max: 10 * magnitude, ticks: 5 };
}

function formatTick(value, step) {
  const decimals = step >= 1 ? 0 : Math.min(3, Math.ceil(-Math.log10(step) - 1e-9));
  return value.toFixed(decimals);
}

function cssVar(element, name, fallback) {
  const value = getComputedStyle(element).getPropertyValue(name).trim();
  return value || fallback;
}

export class LiveChart {
  constructor(canvas, { capacity = 90, intervalMs = 2000, series }) {
    this.canvas = canvas;
    this.capacity = capacity;
    this.intervalMs = intervalMs;
    this.series = series; // [{key, colorVar (a CSS custom property), axis: "left" | "right"}]
    this.points = [];
    new ResizeObserver(() => this.draw()).observe(canvas);
  }

  push(point) {
    this.points.push(point);
    if (this.points.length > this.capacity) this.points.shift();
    this.canvas.dataset.samples = String(this.points.length);
    this.draw();
  }

  clear() {
    this.points = [];
    this.canvas.dataset.samples = "0";
    this.draw();
  }

  draw() {
    const canvas = this.canvas;
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (width === 0 || height === 0) return;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);

    const text = cssVar(canvas, "--chart-text", "#555");
    const grid = cssVar(canvas, "--chart-grid", "#ddd");
    const plotW = width - PAD.left - PAD.right;
    const plotH = height - PAD.top - PAD.bottom;
    const scaleOf = (axis) =>
      niceScale(
        Math.max(
          0,
          ...this.series
            .filter((s) => s.axis === axis)
            .flatMap((s) => this.points.map((p) => p[s.key]))
            .filter((v) => Number.isFinite(v)),
        ),
      );
    const scale = { left: scaleOf("left"), right: scaleOf("right") };

    ctx.font = "11px system-ui, sans-serif";
    ctx.lineWidth = 1;
    ctx.strokeStyle = grid;
    ctx.fillStyle = text;
    ctx.textBaseline = "middle";
    for (let i = 0; i <= scale.left.ticks; i++) {
      const y = Math.round(PAD.top + plotH - (plotH * i) / scale.left.ticks) + 0.5;
      ctx.beginPath();
      ctx.moveTo(PAD.left, y);
      ctx.lineTo(PAD.left + plotW, y);
      ctx.stroke();
      const step = scale.left.max / scale.left.ticks;
      ctx.textAlign = "right";
      ctx.fillText(formatTick(step * i, step), PAD.left - 6, y);
    }
    for (let i = 0; i <= scale.right.ticks; i++) {
      const y = PAD.top + plotH - (plotH * i) / scale.right.ticks;
      const step = scale.right.max / scale.right.ticks;
      ctx.textAlign = "left";
      ctx.fillText(formatTick(step * i, step), PAD.left + plotW + 6, y);
    }
    ctx.textBaseline = "top";
    ctx.textAlign = "left";
    ctx.fillText("msg/s", 2, height - PAD.bottom + 6);
    ctx.textAlign = "right";
    ctx.fillText("ms", width - 2, height - PAD.bottom + 6);
    const seconds = Math.round(((this.capacity - 1) * this.intervalMs) / 1000);
    ctx.textAlign = "left";
    ctx.fillText(`${seconds} s ago`, PAD.left, height - PAD.bottom + 6);
    ctx.textAlign = "right";
    ctx.fillText("now", PAD.left + plotW, height - PAD.bottom + 6);
    if (this.points.length > 0) {
      const span = this.capacity - 1;
      for (const serie of this.series) {
        ctx.strokeStyle = cssVar(canvas, serie.colorVar, "#0a66c2");
        ctx.lineWidth = 2;
        ctx.beginPath();
        let drawing = false;
        let last = null;
        this.points.forEach((point, index) => {
          const value = point[serie.key];
          if (!Number.isFinite(value)) {
            drawing = false; // a gap: unknown interval
            return;
          }
          const x = PAD.left + (plotW * (span - (this.points.length - 1 - index))) / span;
          const { max } = scale[serie.axis];
          const y = PAD.top + plotH - (plotH * Math.min(value, max)) / max;
          if (drawing) ctx.lineTo(x, y);
          else ctx.moveTo(x, y);
          drawing = true;
          last = { x, y };
        });
        ctx.stroke();
        if (last !== null) {
          ctx.fillStyle = ctx.strokeStyle;
          ctx.beginPath();
          ctx.arc(last.x, last.y, 2.5, 0, 2 * Math.PI);
          ctx.fill();
        }
      }
    }
  }
}
