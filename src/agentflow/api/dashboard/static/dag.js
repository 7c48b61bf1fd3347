// A workflow's DAG as SVG: one column per level (the master's analysis), edges from each
// dependency, nodes coloured by state, the critical path drawn thicker.

import { s } from './dom.js';

const COL_W = 190;
const ROW_H = 58;
const NODE_W = 150;
const NODE_H = 40;
const PAD = 16;

export function drawDag(graph, onOpen) {
  const levels = graph.analysis.levels;
  const byKey = new Map(graph.nodes.map((n) => [n.key, n]));
  const critical = new Set(graph.analysis.critical_path || []);
  const place = new Map();
  const rows = Math.max(1, ...levels.map((l) => l.length));
  levels.forEach((level, x) => level.forEach((key, y) => {
    const offset = ((rows - level.length) * ROW_H) / 2;
    place.set(key, { x: PAD + x * COL_W, y: PAD + offset + y * ROW_H });
  }));
  const width = PAD * 2 + Math.max(0, levels.length - 1) * COL_W + NODE_W;
  const height = PAD * 2 + (rows - 1) * ROW_H + NODE_H;
  const edges = [];
  for (const node of graph.nodes) {
    const to = place.get(node.key);
    for (const dep of node.dependencies) {
      const from = place.get(dep);
      if (!from || !to) continue;
      const x1 = from.x + NODE_W; const y1 = from.y + NODE_H / 2;
      const x2 = to.x; const y2 = to.y + NODE_H / 2;
      const mid = (x1 + x2) / 2;
      const hot = critical.has(dep) && critical.has(node.key);
      edges.push(s('path', { d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`, class: hot ? 'edge critical' : 'edge' }));
    }
  }
  const nodes = [...byKey.values()].filter((n) => place.has(n.key)).map((n) => {
    const p = place.get(n.key);
    const label = n.key.length > 20 ? `${n.key.slice(0, 19)}…` : n.key;
    return s('g', { class: `node st-${n.status}${critical.has(n.key) ? ' critical' : ''}`, transform: `translate(${p.x},${p.y})`, 'data-key': n.key, 'data-status': n.status, onclick: () => onOpen(n) },
      s('title', null, `${n.key}: ${n.status}`),
      s('rect', { width: NODE_W, height: NODE_H, rx: 6 }),
      s('text', { x: 10, y: 17, class: 'key' }, label),
      s('text', { x: 10, y: 32, class: 'state' }, n.status));
  });
  return s('svg', { class: 'dag', id: 'dag', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': `graph of ${graph.name}` },
    s('defs', null), ...edges, ...nodes);
}
