/* DOM helpers. Every value that comes from the data is written with textContent, createElement or
 * setAttribute, never as markup.
 */

export const SVG_NS = "http://www.w3.org/2000/svg";

// The elements with these ids, by camel-cased id: "stats-total" -> el.statsTotal.
export function byIds(ids) {
  const el = {};
  ids.forEach((id) => {
    el[id.replace(/-([a-z])/g, (_, c) => c.toUpperCase())] = document.getElementById(id);
  });
  return el;
}

export function clearChildren(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

export function cell(tag, text, cls, title) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  if (title) node.title = title;
  return node;
}

export function svg(name, attrs, text) {
  const node = document.createElementNS(SVG_NS, name);
  Object.keys(attrs || {}).forEach((k) => { node.setAttribute(k, String(attrs[k])); });
  if (text !== undefined) node.textContent = text;
  return node;
}
