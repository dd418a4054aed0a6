// The fleet map on a canvas, in the local frame (x east, y north, metres): robots with their heading, recent
// tracks, the selected robot's planned route and survey points (from a plan result), announced geofences.
// Canvas text is drawn, never parsed, so robot names are inert here too.

const COLORS = {online: "#1a7f37", stale: "#b7791f", offline: "#8a94a6", unknown: "#8a94a6"};

export class FleetMap {
  constructor(canvas, model, onPick) {
    this.canvas = canvas;
    this.model = model;
    this.onPick = onPick;
    this.selected = null;
    this.allTracks = true;
    this.view = null;  // {cx, cy, scale}: null fits everything on the next draw
    this.userMoved = false;
    this.markers = [];  // [name, screen x, screen y] of the last draw, for picking
    this._drag = null;
    canvas.addEventListener("wheel", (event) => this._zoom(event), {passive: false});
    canvas.addEventListener("pointerdown", (event) => this._down(event));
    canvas.addEventListener("pointermove", (event) => this._move(event));
    canvas.addEventListener("pointerup", (event) => this._up(event));
  }

  fit() {
    this.userMoved = false;
    this.view = null;
  }

  _size() {
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(200, this.canvas.clientWidth), height = Math.max(150, this.canvas.clientHeight);
    if (this.canvas.width !== Math.round(width * ratio) || this.canvas.height !== Math.round(height * ratio)) {
      this.canvas.width = Math.round(width * ratio);
      this.canvas.height = Math.round(height * ratio);
    }
    return {width, height, ratio};
  }

  _bounds() {
    const xs = [], ys = [];
    const add = (x, y) => { if (Number.isFinite(x) && Number.isFinite(y)) { xs.push(x); ys.push(y); } };
    for (const pose of this.model.poses.values()) add(pose.x, pose.y);
    for (const [name, track] of this.model.tracks) {
      if (this.allTracks || name === this.selected) for (const point of track) add(point[1], point[2]);
    }
    for (const fence of this._fences()) for (const [x, y] of fence.polygon) add(x, y);
    for (const point of this._route()) add(point[0], point[1]);
    if (!xs.length) return {minX: -10, maxX: 10, minY: -10, maxY: 10};
    return {minX: Math.min(...xs), maxX: Math.max(...xs), minY: Math.min(...ys), maxY: Math.max(...ys)};
  }

  _fit(width, height) {
    const b = this._bounds();
    const spanX = Math.max(b.maxX - b.minX, 10), spanY = Math.max(b.maxY - b.minY, 10);
    const scale = Math.min((width - 60) / spanX, (height - 60) / spanY);
    return {cx: (b.minX + b.maxX) / 2, cy: (b.minY + b.maxY) / 2, scale};
  }

  _fences() {
    const seen = new Set(), fences = [];
    for (const robot of this.model.robots.values()) {
      const fence = robot.geofence;
      if (!fence || !Array.isArray(fence.polygon) || fence.polygon.length < 3) continue;
      const key = JSON.stringify(fence.polygon);
      if (!seen.has(key)) { seen.add(key); fences.push(fence); }
    }
    return fences;
  }

  _route() {
    // The selected robot's current mission: the newest plan result that has an ordered route.
    const mission = this.selected ? this.model.currentMission(this.selected) : null;
    if (!mission) return [];
    for (const task of [...mission.tasks].reverse()) {
      if (task.result && Array.isArray(task.result.waypoints) && task.result.waypoints.length) {
        return task.result.waypoints;
      }
    }
    return [];
  }

  draw() {
    const {width, height, ratio} = this._size();
    if (!this.userMoved || !this.view) this.view = this._fit(width, height);
    const {cx, cy, scale} = this.view;
    const sx = (x) => width / 2 + (x - cx) * scale;
    const sy = (y) => height / 2 - (y - cy) * scale;
    const context = this.canvas.getContext("2d");
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    context.clearRect(0, 0, width, height);
    this._grid(context, width, height, sx, sy, scale, cx, cy);

    context.lineWidth = 2;
    context.setLineDash([6, 4]);
    context.strokeStyle = "#c62828";
    for (const fence of this._fences()) {
      context.beginPath();
      fence.polygon.forEach(([x, y], index) => (index ? context.lineTo(sx(x), sy(y)) : context.moveTo(sx(x), sy(y))));
      context.closePath();
      context.stroke();
    }
    context.setLineDash([]);

    for (const [name, track] of this.model.tracks) {
      if (track.length < 2 || !(this.allTracks || name === this.selected)) continue;
      context.strokeStyle = name === this.selected ? "#2563eb" : "#93c5fd";
      context.lineWidth = name === this.selected ? 2 : 1;
      context.beginPath();
      track.forEach(([, x, y], index) => (index ? context.lineTo(sx(x), sy(y)) : context.moveTo(sx(x), sy(y))));
      const pose = this.model.poses.get(name);
      if (pose) context.lineTo(sx(pose.x), sy(pose.y));
      context.stroke();
    }

    const route = this._route();
    if (route.length) {
      context.strokeStyle = "#7c3aed";
      context.lineWidth = 2;
      context.setLineDash([8, 5]);
      context.beginPath();
      route.forEach(([x, y], index) => (index ? context.lineTo(sx(x), sy(y)) : context.moveTo(sx(x), sy(y))));
      context.stroke();
      context.setLineDash([]);
      context.font = "11px system-ui, sans-serif";
      route.forEach(([x, y], index) => {
        context.fillStyle = "#7c3aed";
        context.beginPath();
        context.arc(sx(x), sy(y), 5, 0, 2 * Math.PI);
        context.fill();
        context.fillStyle = "#4c1d95";
        context.fillText(String(index + 1), sx(x) + 7, sy(y) - 6);
      });
    }

    this.markers = [];
    context.font = "12px system-ui, sans-serif";
    for (const [name, pose] of this.model.poses) {
      if (!Number.isFinite(pose.x) || !Number.isFinite(pose.y)) continue;
      const x = sx(pose.x), y = sy(pose.y);
      this.markers.push([name, x, y]);
      const state = this.model.stateOf(name);
      const yaw = Number.isFinite(pose.yaw) ? pose.yaw : 0;
      context.save();
      context.translate(x, y);
      context.rotate(-yaw);
      context.beginPath();
      context.moveTo(11, 0);
      context.lineTo(-7, 7);
      context.lineTo(-3, 0);
      context.lineTo(-7, -7);
      context.closePath();
      context.fillStyle = COLORS[state] || COLORS.unknown;
      context.fill();
      if (name === this.selected) {
        context.lineWidth = 2;
        context.strokeStyle = "#1d2330";
        context.stroke();
      }
      context.restore();
      context.fillStyle = "#1d2330";
      context.fillText(name.length > 24 ? name.slice(0, 23) + "\u2026" : name, x + 10, y - 9);
    }
  }

  _grid(context, width, height, sx, sy, scale, cx, cy) {
    const targetPixels = 80;
    const raw = targetPixels / scale;
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) || raw;
    const left = cx - width / 2 / scale, right = cx + width / 2 / scale;
    const bottom = cy - height / 2 / scale, top = cy + height / 2 / scale;
    context.strokeStyle = "#e5e7eb";
    context.fillStyle = "#9aa4b2";
    context.lineWidth = 1;
    context.font = "10px system-ui, sans-serif";
    for (let x = Math.ceil(left / step) * step; x <= right; x += step) {
      context.beginPath(); context.moveTo(sx(x), 0); context.lineTo(sx(x), height); context.stroke();
      context.fillText(`${+x.toFixed(6)}`, sx(x) + 2, height - 3);
    }
    for (let y = Math.ceil(bottom / step) * step; y <= top; y += step) {
      context.beginPath(); context.moveTo(0, sy(y)); context.lineTo(width, sy(y)); context.stroke();
      context.fillText(`${+y.toFixed(6)}`, 2, sy(y) - 2);
    }
    context.strokeStyle = "#cbd5e1";
    context.beginPath(); context.moveTo(sx(0), 0); context.lineTo(sx(0), height); context.stroke();
    context.beginPath(); context.moveTo(0, sy(0)); context.lineTo(width, sy(0)); context.stroke();
  }

  _zoom(event) {
    event.preventDefault();
    if (!this.view) return;
    this.userMoved = true;
    this.view.scale *= Math.exp(-event.deltaY * 0.0015);
    this.view.scale = Math.min(Math.max(this.view.scale, 0.01), 500);
    this.onChange && this.onChange();
  }

  _down(event) {
    this._drag = {x: event.offsetX, y: event.offsetY, moved: false};
    this.canvas.setPointerCapture(event.pointerId);
  }

  _move(event) {
    if (!this._drag || !this.view) return;
    const dx = event.offsetX - this._drag.x, dy = event.offsetY - this._drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) this._drag.moved = true;
    if (!this._drag.moved) return;
    this.userMoved = true;
    this.view.cx -= dx / this.view.scale;
    this.view.cy += dy / this.view.scale;
    this._drag.x = event.offsetX;
    this._drag.y = event.offsetY;
    this.onChange && this.onChange();
  }

  _up(event) {
    const drag = this._drag;
    this._drag = null;
    if (drag && !drag.moved) {
      let best = null, bestDistance = 15;
      for (const [name, x, y] of this.markers) {
        const distance = Math.hypot(x - event.offsetX, y - event.offsetY);
        if (distance < bestDistance) { best = name; bestDistance = distance; }
      }
      if (best !== null) this.onPick(best);
    }
  }
}
