// The hub dashboard: a snapshot and live operations over a WebSocket, drawn once per animation frame.
// Everything a robot sent reaches the DOM through textContent or attribute values (dom.js), never as markup.
import {ago, clear, clock, fmt, h, setPill, setText} from "./dom.js";
import {drawGraph, solverLine} from "./graph.js";
import {FleetMap} from "./map.js";
import {FleetModel, nowSeconds} from "./model.js";
import {drawPlot} from "./plots.js";

const model = new FleetModel();
const $ = (id) => document.getElementById(id);
const state = {csrf: "", selected: null, mission: null, missionPinned: false, socket: null, retry: 0, live: "connecting",
  lastRequest: null, earlyReplies: [], rows: new Map(), logRows: 0};
window.qaiDashboard = {model, stats: model.stats, state};

const map = new FleetMap($("map"), model, (name) => select(name));
map.onChange = () => { model.dirty.map = true; schedule(); };

// -- Session and live connection ---------------------------------------------------------------------------

async function api(path, body) {
  const options = body === undefined ? {credentials: "same-origin"} : {
    method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json", "X-CSRF-Token": state.csrf}, body: JSON.stringify(body)};
  const answer = await fetch(path, options);
  if (answer.status === 401) {
    window.location.assign("/login");
    throw new Error("logged out");
  }
  const data = await answer.json().catch(() => ({}));
  return {status: answer.status, ok: answer.ok, data};
}

async function start() {
  const {data} = await api("/api/session");
  state.csrf = data.csrf;
  setText($("fleet-name"), `fleet ${data.fleet} \u00b7 broker ${data.broker}`);
  setText($("signing"), data.signing.length ? `signing with ML-DSA-65 key ${data.signing[0]}`
    : `commands off: ${data.signing_problem}`);
  connect();
}

function connect() {
  const scheme = window.location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${window.location.host}/ws`);
  state.socket = socket;
  setLive(state.retry ? "reconnecting" : "connecting");
  socket.addEventListener("message", (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "snapshot") {
      model.applySnapshot(message);
      state.retry = 0;
      setLive("live");
    } else if (message.type === "update") {
      model.applyUpdate(message);
    }
    schedule();
  });
  socket.addEventListener("close", async () => {
    if (state.socket !== socket) return;
    setLive("reconnecting");
    state.retry += 1;
    if (state.retry % 3 === 0) await api("/api/session").catch(() => null);  // a 401 goes to the login page
    setTimeout(connect, Math.min(5000, 250 * 2 ** Math.min(state.retry, 5)));
  });
}

function setLive(word) {
  state.live = word;
  setPill($("live-state"), word);
}

// -- Drawing -------------------------------------------------------------------------------------------------

let scheduled = false;
function schedule() {
  if (scheduled) return;
  scheduled = true;
  requestAnimationFrame(render);
}

function render() {
  scheduled = false;
  const dirty = model.dirty;
  if (dirty.list || dirty.robots.size) renderList();
  if (dirty.map) {
    map.selected = state.selected;
    map.draw();
    model.noteShown();
  }
  if (dirty.detail) renderDetail();
  if (dirty.plots || dirty.detail) renderPlots();
  if (dirty.log) renderLog();
  Object.assign(dirty, {list: false, map: false, detail: false, plots: false, log: false});
  dirty.robots.clear();
}

setInterval(() => {  // ages and staleness move with the clock, not only with messages
  model.dirty.list = true;
  model.dirty.map = true;
  model.dirty.plots = true;
  schedule();
}, 1000);

function renderList() {
  const body = $("robots").tBodies[0];
  const names = [...model.robots.keys()].sort();
  $("no-robots").hidden = names.length > 0;
  let online = 0;
  for (const name of names) {
    let row = state.rows.get(name);
    if (!row) {
      row = makeRow(name);
      state.rows.set(name, row);
    }
    const robotState = model.stateOf(name);
    if (robotState === "online") online += 1;
    updateRow(row, name, robotState);
  }
  for (const [name, row] of state.rows) {
    if (!model.robots.has(name)) { row.element.remove(); state.rows.delete(name); }
  }
  names.forEach((name, index) => {
    const element = state.rows.get(name).element;
    if (body.children[index] !== element) body.insertBefore(element, body.children[index] || null);
  });
  setText($("robot-count"), `${online}/${names.length} online`);
  setPill($("broker-state"), model.broker.state || "?");
  renderSendTargets(names);
}

function makeRow(name) {
  const cells = {};
  const element = h("tr", {on: {click: () => select(name)}});
  for (const key of ["name", "link", "mission", "battery", "endurance", "speed", "net"]) {
    cells[key] = h("td");
    element.appendChild(cells[key]);
  }
  cells.name.appendChild(h("span", {className: "robot-name", text: name}));
  cells.linkPill = h("span", {className: "pill"});
  cells.linkAge = h("span", {className: "muted"});
  cells.link.append(cells.linkPill, " ", cells.linkAge);
  cells.barFill = h("i");
  cells.bar = h("span", {className: "bar"}, cells.barFill);
  cells.batteryText = h("span");
  cells.battery.append(cells.bar, cells.batteryText);
  return {element, cells};
}

function updateRow(row, name, robotState) {
  const robot = model.robots.get(name);
  const {cells} = row;
  row.element.classList.toggle("selected", name === state.selected);
  setPill(cells.linkPill, robotState);
  setText(cells.linkAge, robotState === "online" ? "" : ago(model.age(name)));
  cells.linkPill.title = robot.reason ? `reason: ${robot.reason}` : "";
  const mission = model.currentMission(name);
  setText(cells.mission, mission ? `${mission.name || mission.mission_id} ${mission.state_name} `
    + `${mission.succeeded ?? 0}/${mission.total ?? 0}` : "-");
  const battery = robot.battery && robot.battery.percentage;
  if (typeof battery === "number") {
    cells.barFill.style.width = `${Math.max(0, Math.min(100, battery * 100))}%`;
    cells.bar.classList.toggle("low", battery < 0.25);
    setText(cells.batteryText, `${Math.round(battery * 100)}%`);
  } else setText(cells.batteryText, "-");
  const endurance = robot.endurance;
  setText(cells.endurance, endurance ? `${fmt(endurance.remaining, 0, " s")}${endurance.low ? " LOW" : ""}` : "-");
  const pose = model.poses.get(name);
  setText(cells.speed, pose ? fmt(pose.speed, 1, " m/s") : "-");
  const link = robot.link || {};
  setText(cells.net, `${fmt(link.rtt_ms, 1, " ms")} / ${link.queue_depth ?? "-"}`);
}

function select(name) {
  if (state.selected !== name) {
    state.selected = name;
    state.mission = null;
    state.missionPinned = false;
  }
  model.markAll();
  schedule();
}

function renderDetail() {
  const name = state.selected;
  const robot = name !== null ? model.robots.get(name) : null;
  $("detail-body").hidden = !robot;
  setText($("detail-name"), robot ? name : "");
  if (!robot) {
    setText($("detail-summary"), "Select a robot in the list or on the map.");
    setPill($("detail-state"), "");
    return;
  }
  const robotState = model.stateOf(name);
  setPill($("detail-state"), robotState);
  const link = robot.link || {};
  const telemetry = robot.telemetry || {};
  const pose = model.poses.get(name);
  setText($("detail-summary"), [
    pose ? `at ${fmt(pose.x)}, ${fmt(pose.y)}, ${fmt(pose.z)} m` : "no position yet",
    `link ${link.state || "?"}, ${link.connects ?? 0} connects, ${link.dropped_total ?? 0} dropped`,
    `telemetry ${telemetry.received ?? 0} received, ${telemetry.missing ?? 0} missing, ${telemetry.duplicates ?? 0} `
      + "duplicates",
    robot.commands && robot.commands.accepted !== undefined ? `commands ${robot.commands.accepted ?? 0} accepted` : "",
    robot.state === "offline" ? `offline: ${robot.reason || "?"}` : "",
    robot.valid_name ? "" : "name not usable in commands",
  ].filter(Boolean).join(" \u00b7 "));

  const missions = model.missions.get(name) || new Map();
  const select = $("mission-select");
  const ids = [...missions.keys()].reverse();
  if (!state.missionPinned || !missions.has(state.mission)) {
    const current = model.currentMission(name);
    state.mission = current ? current.mission_id : null;
  }
  clear(select);
  for (const id of ids) {
    const mission = missions.get(id);
    const option = h("option", {value: id, text: `${mission.name || id} (${mission.state_name})`});
    option.selected = id === state.mission;
    select.appendChild(option);
  }
  const mission = state.mission !== null ? missions.get(state.mission) : null;
  setPill($("mission-state"), mission ? mission.state_name : "no mission");
  $("cancel-mission").disabled = !mission || mission.state >= 10 || !robot.valid_name;
  setText($("mission-message"), mission ? [mission.mission_id, mission.message, mission.hidden ?
    `${mission.hidden} more tasks not shown` : ""].filter(Boolean).join(" \u00b7 ") : "");
  drawGraph($("graph"), mission);
  renderTasks(mission, name, robot);
  const models = Object.entries(robot.models || {}).map(([task, version]) => `${task} ${version}`);
  if (robot.endurance && robot.endurance.model && !(robot.models || {}).endurance) {
    models.unshift(`endurance ${robot.endurance.model} (from its predictions)`);
  }
  setText($("models"), models.join(", ") || "no answer yet (the versions show after a deploy or roll back)");
  $("deploy-model").disabled = !robot.valid_name;
  $("rollback-model").disabled = !robot.valid_name;
  setText($("engines"), (robot.engines || []).map((engine) => `${engine.name}: ${engine.kinds.join(", ") || "no kinds"}`
    + (engine.restarts ? ` (restarted ${engine.restarts}x)` : "")).join(" \u00b7 "));
}

function renderTasks(mission, name, robot) {
  const body = $("tasks").tBodies[0];
  clear(body);
  if (!mission) return;
  for (const task of mission.tasks) {
    const duration = task.started ? ((task.finished || model.serverNow()) - task.started) : null;
    const cancel = h("button", {className: "small danger", type: "button", text: "cancel",
      title: `cancel task ${task.id}`, on: {click: () => cancelMission(name, mission.mission_id, task.id)}});
    cancel.disabled = task.state >= 10 || mission.state >= 10 || !robot.valid_name;
    const stateCell = h("td");
    setPill(stateCell.appendChild(h("span")), task.state_name);
    if (task.state_name === "RUNNING" && typeof task.progress === "number") {
      stateCell.append(` ${Math.round(task.progress * 100)}%`);
    }
    const row = h("tr", {},
      h("td", {className: "task-id", text: task.id}), h("td", {text: task.kind}), stateCell,
      h("td", {text: task.attempt ?? ""}), h("td", {className: "wrap", text: task.engine}),
      h("td", {text: duration !== null ? `${duration.toFixed(1)} s` : ""}),
      h("td", {className: "wrap", text: resultText(task.result)}), h("td", {className: "wrap", text: task.message}),
      h("td", {}, cancel));
    row.dataset.taskId = task.id;
    row.dataset.state = task.state_name;
    body.appendChild(row);
  }
}

function resultText(result) {
  if (!result) return "";
  const solver = solverLine(result);
  if (solver) {
    const cost = typeof result.cost === "number" ? `, cost ${result.cost.toFixed(2)}` : "";
    const order = Array.isArray(result.order) ? `, order ${result.order.join(" ")}` : "";
    return `${solver}${cost}${order}`;
  }
  return Object.entries(result).filter(([, v]) => typeof v !== "object" || v === null).slice(0, 4)
    .map(([k, v]) => `${k}=${typeof v === "number" ? +v.toFixed(3) : v}`).join(", ");
}

function renderPlots() {
  const name = state.selected;
  if (name === null || !model.robots.has(name)) return;
  const plots = model.series.get(name) || new Map();
  const now = model.serverNow();
  const get = (key) => plots.get(key) || [];
  drawPlot($("plot-battery"), [{points: get("battery")}], now, 600, {min: 0, max: 100});
  drawPlot($("plot-endurance"), [{points: get("endurance"), label: "remaining"},
    {points: get("return_needed"), label: "return", color: "#c62828"}], now, 600, {min: 0});
  drawPlot($("plot-speed"), [{points: get("speed")}], now, 600, {min: 0});
  drawPlot($("plot-link"), [{points: get("rtt_ms"), label: "rtt"}, {points: get("queue_depth"), label: "queue"},
    {points: get("dropped"), label: "drops"}], now, 600, {min: 0});
}

function renderLog() {
  const body = $("log").tBodies[0];
  const quiet = $("log-quiet").checked;
  let entries = model.newEvents;
  if (model.resetLog) {
    clear(body);
    entries = model.events;
    model.resetLog = false;
  }
  model.newEvents = [];
  for (const entry of entries) {
    if (quiet && entry.level === "info") continue;
    const row = h("tr", {},
      h("td", {text: clock(entry.t)}), h("td", {className: "robot", text: entry.robot || "(hub)"}),
      h("td", {className: `level-${entry.level}`, text: entry.level}),
      h("td", {className: "wrap", text: entry.text}));
    row.dataset.kind = entry.kind;
    body.insertBefore(row, body.firstChild);
  }
  while (body.children.length > 500) body.removeChild(body.lastChild);
}

// -- Commands -------------------------------------------------------------------------------------------------

async function cancelMission(robot, missionId, taskId) {
  const what = taskId ? `task ${taskId} of mission ${missionId}` : `mission ${missionId}`;
  if (!window.confirm(`Cancel ${what} on ${robot}?`)) return;
  const body = {robot, mission_id: missionId, reason: "canceled from the hub dashboard"};
  if (taskId) body.task_id = taskId;
  const answer = await api("/api/cancel", body);
  setText($("send-status"), answer.ok ? `cancel sent (request ${answer.data.request_id.slice(0, 8)})`
    : `cancel refused: ${answer.data.error}`);
}

async function base64Of(file) {
  const bytes = new Uint8Array(await file.arrayBuffer());
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

async function deployModel() {
  const robot = state.selected;
  const picked = [...$("model-files").files];
  const byName = new Map(picked.map((file) => [file.name, file]));
  if (robot === null || !byName.has("model.pt") || !byName.has("meta.json") || picked.length !== 2) {
    setText($("send-status"), "pick a checkpoint's two files: model.pt and meta.json");
    return;
  }
  if (!window.confirm(`Sign this model with the hub's key and deploy it to ${robot}? Its gate decides.`)) return;
  const files = {"model.pt": await base64Of(byName.get("model.pt")), "meta.json": await base64Of(byName.get("meta.json"))};
  const answer = await api("/api/models/deploy", {robot, files});
  setText($("send-status"), answer.ok ? `${answer.data.task} model sent (request ${answer.data.request_id.slice(0, 8)}); `
    + "the robot's answer comes to the log" : `deploy refused: ${answer.data.error}`);
}

async function rollbackModel() {
  const robot = state.selected;
  const task = $("rollback-task").value;
  if (robot === null || !window.confirm(`Roll ${robot}'s ${task} model back to the version before?`)) return;
  const answer = await api("/api/models/rollback", {robot, task});
  setText($("send-status"), answer.ok ? `roll back sent (request ${answer.data.request_id.slice(0, 8)})`
    : `roll back refused: ${answer.data.error}`);
}

$("deploy-model").addEventListener("click", deployModel);
$("rollback-model").addEventListener("click", rollbackModel);
$("cancel-mission").addEventListener("click", () => {
  if (state.selected !== null && state.mission) cancelMission(state.selected, state.mission, null);
});
$("mission-select").addEventListener("change", (event) => {
  state.mission = event.target.value;
  state.missionPinned = true;
  model.dirty.detail = true;
  model.dirty.map = true;
  schedule();
});

function renderSendTargets(names) {
  const select = $("send-robot");
  const usable = names.filter((name) => model.robots.get(name).valid_name);
  const current = select.value || state.selected || "";
  const existing = [...select.options].map((option) => option.value);
  if (existing.join("\n") === usable.join("\n")) return;
  clear(select);
  for (const name of usable) {
    const option = h("option", {value: name, text: name});
    option.selected = name === current;
    select.appendChild(option);
  }
  checkSoon();
}

let checkTimer = null, checkSerial = 0;
function checkSoon() {
  clearTimeout(checkTimer);
  checkTimer = setTimeout(checkMission, 350);
}

async function checkMission() {
  const text = $("send-text").value;
  const serial = ++checkSerial;
  const errors = $("send-errors"), warnings = $("send-warnings");
  if (!text.trim()) {
    clear(errors); clear(warnings); setText($("send-preview"), ""); $("send-button").disabled = true;
    return;
  }
  const answer = await api("/api/missions/check", {text, robot: $("send-robot").value || undefined});
  if (serial !== checkSerial) return;  // a newer edit is being checked
  const result = answer.data;
  clear(errors); clear(warnings);
  for (const message of result.errors || (answer.ok ? [] : [result.error])) errors.appendChild(h("li", {text: message}));
  for (const message of result.warnings || []) warnings.appendChild(h("li", {text: message}));
  setText($("send-preview"), result.ok ? `${result.name || "(unnamed)"}: ${result.tasks.length} tasks, `
    + result.tasks.map((t) => (t.depends_on.length ? `${t.depends_on.join("+")} \u2192 ${t.id}` : t.id)).join(", ") : "");
  $("send-button").disabled = !result.ok || !$("send-robot").value;
}

$("send-text").addEventListener("input", checkSoon);
$("send-robot").addEventListener("change", checkSoon);
$("send-file").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  if (!file) return;
  if (file.size > 1 << 20) {
    setText($("send-status"), `${file.name}: ${file.size} bytes, over the 1 MiB a mission may have`);
    return;
  }
  $("send-text").value = await file.text();
  checkMission();
});

$("send-button").addEventListener("click", async () => {
  const robot = $("send-robot").value;
  $("send-button").disabled = true;
  setText($("send-status"), `signing and sending to ${robot}...`);
  const answer = await api("/api/missions", {robot, text: $("send-text").value});
  if (answer.ok) {
    state.lastRequest = answer.data.request_id;
    setText($("send-status"), `sent (request ${state.lastRequest.slice(0, 8)}); waiting for ${robot}`);
    select(robot);
    // The robot's answers can reach the page before this answer does (a fast robot, a slow page).
    for (const entry of state.earlyReplies.filter((e) => e.request_id === state.lastRequest)) showReply(entry);
  } else {
    const errors = $("send-errors");
    clear(errors);
    for (const message of answer.data.errors || [answer.data.error]) errors.appendChild(h("li", {text: message}));
    setText($("send-status"), `not sent: ${answer.data.error}`);
  }
  $("send-button").disabled = false;
});

function showReply(entry) {
  setText($("send-status"), entry.text);
  if (entry.status === "accepted" && entry.mission_id) {
    state.mission = entry.mission_id;
    state.missionPinned = true;
  }
}

model.onEvent((entry) => {
  if (!entry.request_id) return;
  if (entry.request_id === state.lastRequest) {
    showReply(entry);
    return;
  }
  state.earlyReplies.push(entry);  // perhaps for the request whose id the page is still waiting to learn
  if (state.earlyReplies.length > 20) state.earlyReplies.shift();
});

$("log-quiet").addEventListener("change", () => { model.resetLog = true; model.dirty.log = true; schedule(); });
$("map-fit").addEventListener("click", () => { map.fit(); model.dirty.map = true; schedule(); });
$("map-all-tracks").addEventListener("change", (event) => {
  map.allTracks = event.target.checked;
  model.dirty.map = true;
  schedule();
});
$("logout").addEventListener("click", async () => {
  await api("/api/logout", {}).catch(() => null);
  window.location.assign("/login");
});

start().catch((failure) => setLive(`error: ${failure.message}`));
