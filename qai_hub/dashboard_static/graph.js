// A mission as a graph: one box per task, in columns by dependency depth, edges from each dependency.
// SVG built with createElementNS and textContent: task ids and messages stay text.
import {clear, svg} from "./dom.js";

const FILL = {PENDING: "#eceef2", READY: "#e7ecf5", RUNNING: "#dbe8fb", CANCELING: "#fcefd2", RETRY_WAIT: "#fcefd2",
  SUCCEEDED: "#d3f0dc", FAILED: "#fbdada", CANCELED: "#f3e3c3", SKIPPED: "#f1f1f1"};
const WIDTH = 168, HEIGHT = 46, GAP_X = 52, GAP_Y = 14, PAD = 10;

export function layout(tasks) {
  const byId = new Map(tasks.map((task) => [task.id, task]));
  const depth = new Map();
  const visiting = new Set();
  const depthOf = (id) => {
    if (depth.has(id)) return depth.get(id);
    if (visiting.has(id) || !byId.has(id)) return -1;  // a cycle or a task outside the mission: no constraint
    visiting.add(id);
    let level = 0;
    for (const dep of byId.get(id).depends_on || []) level = Math.max(level, depthOf(dep) + 1);
    visiting.delete(id);
    depth.set(id, level);
    return level;
  };
  const columns = [];
  for (const task of tasks) {
    const level = depthOf(task.id);
    (columns[level] ||= []).push(task);
  }
  const positions = new Map();
  columns.forEach((column, level) => column.forEach((task, row) => {
    positions.set(task.id, {x: PAD + level * (WIDTH + GAP_X), y: PAD + row * (HEIGHT + GAP_Y)});
  }));
  const width = PAD * 2 + Math.max(1, columns.length) * (WIDTH + GAP_X) - GAP_X;
  const height = PAD * 2 + Math.max(1, ...columns.map((c) => (c ? c.length : 0))) * (HEIGHT + GAP_Y) - GAP_Y;
  return {positions, width, height};
}

function solverLine(result) {
  if (!result || result.solver === undefined) return "";
  const parts = [`solver ${result.solver}`];
  if (result.verified === true) parts.push("verified");
  if (result.fallback) parts.push(`fallback${result.fallback_reason ? ": " + result.fallback_reason : ""}`);
  if (typeof result.solve_time === "number") parts.push(`${result.solve_time.toFixed(2)} s`);
  return parts.join(", ");
}

export function drawGraph(element, mission, onTask) {
  clear(element);
  if (!mission) {
    element.setAttribute("width", "10");
    element.setAttribute("height", "10");
    return;
  }
  const tasks = mission.tasks || [];
  const {positions, width, height} = layout(tasks);
  element.setAttribute("width", String(width));
  element.setAttribute("height", String(height));
  element.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const edges = svg("g");
  const nodes = svg("g");
  for (const task of tasks) {
    const to = positions.get(task.id);
    for (const dep of task.depends_on || []) {
      const from = positions.get(dep);
      if (!from) continue;
      const x1 = from.x + WIDTH, y1 = from.y + HEIGHT / 2, x2 = to.x, y2 = to.y + HEIGHT / 2;
      const bend = Math.max(20, (x2 - x1) / 2);
      edges.appendChild(svg("path", {class: "edge", d: `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`,
        "marker-end": "url(#arrow)"}));
    }
    const state = task.state_name || "";
    const group = svg("g", {class: "node", transform: `translate(${to.x},${to.y})`});
    group.dataset.taskId = task.id;  // a data attribute: set as a value, never parsed
    group.dataset.state = state;
    const details = [`${task.id} (${task.kind}): ${state}`, task.engine ? `engine ${task.engine}` : "",
      task.attempt ? `attempt ${task.attempt}` : "", solverLine(task.result), task.message || ""].filter(Boolean);
    group.appendChild(svg("title", {}, details.join("\n")));
    group.appendChild(svg("rect", {width: WIDTH, height: HEIGHT, fill: FILL[state] || "#eceef2"}));
    group.appendChild(svg("text", {x: 8, y: 17, "font-weight": "600"}, clip(task.id, 22)));
    const progress = typeof task.progress === "number" && state === "RUNNING" ? ` ${Math.round(task.progress * 100)}%` : "";
    group.appendChild(svg("text", {x: 8, y: 35, fill: "#475569"}, clip(`${task.kind} \u00b7 ${state}${progress}`, 26)));
    if (typeof task.progress === "number" && state === "RUNNING") {
      group.appendChild(svg("rect", {x: 0, y: HEIGHT - 4, width: WIDTH * Math.min(1, Math.max(0, task.progress)),
        height: 4, fill: "#2b6cb0"}));
    }
    if (onTask) group.addEventListener("click", () => onTask(task.id));
    nodes.appendChild(group);
  }
  const defs = svg("defs", {}, svg("marker", {id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7,
    markerHeight: 7, orient: "auto-start-reverse"}, svg("path", {d: "M0,0 L10,5 L0,10 z", fill: "#94a3b8"})));
  element.append(defs, edges, nodes);
}

function clip(text, length) {
  return text.length > length ? text.slice(0, length - 1) + "\u2026" : text;
}

export {solverLine};
