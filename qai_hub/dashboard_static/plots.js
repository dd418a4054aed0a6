// Small time plots on canvas: the last `window` seconds of one or more series of a robot.

const COLORS = ["#2563eb", "#c2410c", "#7c3aed", "#059669"];

export function drawPlot(canvas, lines, now, windowSeconds = 600, options = {}) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 360, height = canvas.clientHeight || 120;
  if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
  if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
  const context = canvas.getContext("2d");
  context.setTransform(ratio, 0, 0, ratio, 0, 0);
  context.clearRect(0, 0, width, height);
  const start = now - windowSeconds;
  const visible = lines.map((line) => ({...line, points: (line.points || []).filter((p) => p[0] >= start)}));
  const values = visible.flatMap((line) => line.points.map((p) => p[1])).filter(Number.isFinite);
  const left = 38, right = 6, top = 6, bottom = 16;
  context.font = "10px system-ui, sans-serif";
  context.fillStyle = "#9aa4b2";
  if (!values.length) {
    context.fillText("no data yet", left + 10, height / 2);
    return;
  }
  let low = options.min !== undefined ? Math.min(options.min, ...values) : Math.min(...values);
  let high = options.max !== undefined ? Math.max(options.max, ...values) : Math.max(...values);
  if (high - low < 1e-9) { high += 1; low -= options.min === 0 ? 0 : 1; }
  const sx = (t) => left + ((t - start) / windowSeconds) * (width - left - right);
  const sy = (v) => top + (1 - (v - low) / (high - low)) * (height - top - bottom);
  context.strokeStyle = "#e5e7eb";
  context.lineWidth = 1;
  for (const v of [low, (low + high) / 2, high]) {
    context.beginPath(); context.moveTo(left, sy(v)); context.lineTo(width - right, sy(v)); context.stroke();
    context.fillText(formatTick(v), 2, sy(v) + 3);
  }
  context.fillText(`-${Math.round(windowSeconds / 60)} min`, left, height - 3);
  context.fillText("now", width - right - 20, height - 3);
  visible.forEach((line, index) => {
    context.strokeStyle = line.color || COLORS[index % COLORS.length];
    context.lineWidth = 1.6;
    context.beginPath();
    let started = false;
    for (const [t, v] of line.points) {
      if (!Number.isFinite(v)) { started = false; continue; }
      if (started) context.lineTo(sx(t), sy(v)); else { context.moveTo(sx(t), sy(v)); started = true; }
    }
    context.stroke();
    if (line.label) {
      context.fillStyle = context.strokeStyle;
      context.fillText(line.label, left + 6 + index * 80, top + 9);
    }
  });
}

function formatTick(value) {
  const size = Math.abs(value);
  return size >= 100 ? value.toFixed(0) : size >= 10 ? value.toFixed(1) : value.toFixed(2);
}
