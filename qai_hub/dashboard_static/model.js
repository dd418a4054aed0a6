// The page's copy of the fleet: a snapshot from the server, then operations (see dashboard_feed.py).
// Robot names and task ids are Map keys and text, never element ids or selectors.

const STALE_AFTER = 10;  // s without any message from an online robot: shown as stale
const MAX_SAMPLES = 20000;  // latency samples kept for the bench and tests (window.qaiDashboard.stats)
const MAX_EVENTS = 2000;

export function nowSeconds() {
  return (performance.timeOrigin + performance.now()) / 1000;
}

class Samples {
  constructor(limit) { this.limit = limit; this.values = []; this.next = 0; this.count = 0; }
  add(value) {
    if (this.values.length < this.limit) this.values.push(value);
    else this.values[this.next] = value;
    this.next = (this.next + 1) % this.limit;
    this.count += 1;
  }
  clear() { this.values = []; this.next = 0; this.count = 0; }
}

export class FleetModel {
  constructor() {
    this.fleet = "";
    this.robots = new Map();  // name -> robot view (dashboard_feed.robot_view)
    this.poses = new Map();  // name -> {x, y, z, yaw, speed, stamp, seq}
    this.missions = new Map();  // name -> Map(mission id -> mission view)
    this.tracks = new Map();  // name -> [[t, x, y], ...]
    this.series = new Map();  // name -> Map(series -> [[t, v], ...])
    this.events = [];
    this.broker = {state: "connecting"};
    this.offset = 0;  // server clock - this clock, s
    this.dirty = {list: true, map: true, detail: true, plots: true, log: true, robots: new Set()};
    this.newEvents = [];
    this.resetLog = true;
    this.limits = {track: 2000, series: 900};
    // For the bench and the tests: MQTT-to-page latency of pose updates, as received and as drawn.
    this.stats = {received: new Samples(MAX_SAMPLES), shown: new Samples(MAX_SAMPLES), frames: 0, ops: 0,
                  snapshots: 0, lastSeq: {}, pendingShown: new Map()};
  }

  serverNow() { return nowSeconds() + this.offset; }

  age(name) {
    const robot = this.robots.get(name);
    return robot && typeof robot.last_seen === "number" ? this.serverNow() - robot.last_seen : Infinity;
  }

  stateOf(name) {
    const robot = this.robots.get(name);
    if (!robot) return "unknown";
    if (robot.state === "online" && this.age(name) > STALE_AFTER) return "stale";
    return robot.state;
  }

  currentMission(name) {
    const missions = this.missions.get(name);
    if (!missions || missions.size === 0) return null;
    const all = [...missions.values()];
    const active = all.filter((m) => typeof m.state === "number" && m.state < 10);
    return (active.length ? active : all)[(active.length ? active : all).length - 1];
  }

  applySnapshot(snapshot) {
    this.fleet = snapshot.fleet;
    this.offset = snapshot.now - nowSeconds();
    this.broker = snapshot.broker;
    this.robots = new Map(Object.entries(snapshot.robots));
    this.poses = new Map(Object.entries(snapshot.poses));
    this.missions = new Map(Object.entries(snapshot.missions).map(([name, missions]) =>
      [name, new Map(Object.entries(missions))]));
    this.tracks = new Map(Object.entries(snapshot.tracks));
    this.series = new Map(Object.entries(snapshot.series).map(([name, plots]) =>
      [name, new Map(Object.entries(plots))]));
    this.events = snapshot.events.slice(-MAX_EVENTS);
    this.resetLog = true;
    this.stats.snapshots += 1;
    this.markAll();
  }

  markAll() {
    Object.assign(this.dirty, {list: true, map: true, detail: true, plots: true, log: true});
    for (const name of this.robots.keys()) this.dirty.robots.add(name);
  }

  applyUpdate(update) {
    const received = nowSeconds();
    this.offset = update.now - received;
    for (const op of update.ops) this.apply(op, received);
    this.stats.frames += 1;
  }

  ensureRobot(name) {
    if (!this.robots.has(name)) {
      this.robots.set(name, {name, state: "unknown", valid_name: false, link: {}, commands: {}});
      this.dirty.list = true;
    }
    return this.robots.get(name);
  }

  apply(op, received) {
    this.stats.ops += 1;
    const kind = op[0];
    if (kind === "pose") {
      const [, name, pose] = op;
      this.ensureRobot(name);
      this.poses.set(name, pose);
      const robot = this.robots.get(name);
      robot.last_seen = pose.stamp;
      if (typeof pose.stamp === "number") {
        this.stats.received.add(received - pose.stamp);
        this.stats.pendingShown.set(name, pose.stamp);
      }
      if (typeof pose.seq === "number") this.stats.lastSeq[name] = pose.seq;
      this.dirty.robots.add(name);
      this.dirty.map = true;
    } else if (kind === "robot") {
      const [, name, fields] = op;
      Object.assign(this.ensureRobot(name), fields);
      this.dirty.robots.add(name);
      this.dirty.map = true;
      this.dirty.detail = true;
    } else if (kind === "mission") {
      const [, name, missionId, mission] = op;
      this.ensureRobot(name);
      if (!this.missions.has(name)) this.missions.set(name, new Map());
      const missions = this.missions.get(name);
      missions.delete(missionId);  // newest last
      missions.set(missionId, mission);
      while (missions.size > 20) missions.delete(missions.keys().next().value);
      this.dirty.robots.add(name);
      this.dirty.detail = true;
      this.dirty.map = true;
    } else if (kind === "track") {
      const [, name, t, x, y] = op;
      if (!this.tracks.has(name)) this.tracks.set(name, []);
      insertByTime(this.tracks.get(name), [t, x, y], this.limits.track);
      this.dirty.map = true;
    } else if (kind === "series") {
      const [, name, series, t, value] = op;
      if (!this.series.has(name)) this.series.set(name, new Map());
      const plots = this.series.get(name);
      if (!plots.has(series)) plots.set(series, []);
      insertByTime(plots.get(series), [t, value], this.limits.series);
      this.dirty.plots = true;
    } else if (kind === "event") {
      this.events.push(op[1]);
      this.newEvents.push(op[1]);
      if (this.events.length > MAX_EVENTS) this.events.splice(0, this.events.length - MAX_EVENTS);
      this.dirty.log = true;
      for (const listener of this.eventListeners || []) listener(op[1]);
    } else if (kind === "broker") {
      this.broker = op[1];
      this.dirty.list = true;
    }
  }

  onEvent(listener) {
    (this.eventListeners ||= []).push(listener);
  }

  // After a frame drew the map: how long each pose drawn took from MQTT to the screen.
  noteShown() {
    const now = nowSeconds();
    for (const stamp of this.stats.pendingShown.values()) this.stats.shown.add(now - stamp);
    this.stats.pendingShown.clear();
  }
}

function insertByTime(points, point, limit) {
  if (!points.length || point[0] >= points[points.length - 1][0]) points.push(point);
  else {
    let low = 0, high = points.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (points[middle][0] <= point[0]) low = middle + 1; else high = middle;
    }
    points.splice(low, 0, point);
  }
  if (points.length > limit) points.splice(0, points.length - limit);
}
