// DOM helpers. Every value goes in as text (textContent, createTextNode) or as an attribute value: nothing
// from a robot is ever parsed as markup (no innerHTML anywhere on this page).

export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  setProps(element, props);
  append(element, children);
  return element;
}

const SVG = "http://www.w3.org/2000/svg";

export function svg(tag, attributes = {}, ...children) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== undefined && value !== null) element.setAttribute(name, String(value));
  }
  append(element, children);
  return element;
}

function setProps(element, props) {
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (name === "className") element.className = value;
    else if (name === "text") element.textContent = String(value);
    else if (name === "title") element.title = String(value);
    else if (name === "on") for (const [type, handler] of Object.entries(value)) element.addEventListener(type, handler);
    else if (name.startsWith("on")) throw new Error(`use {on: {...}} for handlers, not ${name}`);
    else element.setAttribute(name, String(value));
  }
}

function append(element, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    element.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function setText(element, value) {
  const text = value === undefined || value === null ? "" : String(value);
  if (element.textContent !== text) element.textContent = text;
}

export function setPill(element, word, extraClass = "") {
  setText(element, word);
  const className = `pill s-${String(word).replace(/[^A-Za-z_]/g, "")} ${extraClass}`.trim();
  if (element.className !== className) element.className = className;
}

export function clear(element) {
  while (element.firstChild) element.removeChild(element.firstChild);
}

export function fmt(value, digits = 1, unit = "") {
  return typeof value === "number" && Number.isFinite(value) ? `${value.toFixed(digits)}${unit}` : "-";
}

export function ago(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds)) return "never";
  if (seconds < 1.5) return "now";
  if (seconds < 90) return `${Math.round(seconds)} s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
  return `${(seconds / 3600).toFixed(1)} h ago`;
}

export function clock(epochSeconds) {
  if (typeof epochSeconds !== "number") return "";
  const date = new Date(epochSeconds * 1000);
  return date.toLocaleTimeString([], {hour12: false}) + "." + String(date.getMilliseconds()).padStart(3, "0");
}
