// Building DOM nodes from data: text always goes in as text (never as HTML), so nothing a task,
// an agent or a lock names can inject markup into the page.

const SVG_NS = 'http://www.w3.org/2000/svg';

function setAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'class') {
      el.setAttribute('class', value);
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

export function badge(status) {
  const text = status === null || status === undefined ? '–' : String(status);
  return h('span', { class: `badge st-${text.replace(/[^a-z_-]/g, '')}` }, text);
}

export function table(columns, rows, empty = 'nothing here') {
  if (!rows.length) return h('p', { class: 'muted empty' }, empty);
  return h('table', { class: 'grid' },
    h('thead', null, h('tr', null, columns.map((c) => h('th', null, c[0])))),
    h('tbody', null, rows.map((row) => h('tr', null, columns.map((c) => h('td', null, c[1](row)))))));
}

export function card(title, value, note) {
  return h('div', { class: 'card' }, h('div', { class: 'card-title' }, title),
    h('div', { class: 'card-value' }, value), note ? h('div', { class: 'muted' }, note) : null);
}

export function seconds(s) {
  if (s === null || s === undefined) return '–';
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 120) return `${s.toFixed(1)} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

export function ago(iso) {
  if (!iso) return '–';
  const s = (Date.now() - Date.parse(iso)) / 1000;
  return s < 0 ? 'now' : `${seconds(s)} ago`;
}

export function kv(obj) {
  const entries = Object.entries(obj || {});
  if (!entries.length) return h('span', { class: 'muted' }, '–');
  return entries.map(([k, v]) => h('span', { class: 'tag' }, `${k}=${typeof v === 'object' ? JSON.stringify(v) : v}`));
}

export function link(href, text) {
  return h('a', { href }, text);
}

// Element.replaceChildren() writes null as the text "null": this skips it, as h() does.
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}
