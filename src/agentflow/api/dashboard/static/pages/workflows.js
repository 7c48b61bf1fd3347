// Workflows: the runs, newest first, and a grid of the latest runs (a row per task key, a
// column per run, a cell per task's state) as Airflow shows them.

import { enc, get } from '../api.js';
import { ago, badge, h, link, seconds, table, fill } from '../dom.js';

const GRID_RUNS = 12;

function grid(runs) {
  if (!runs.length) return null;
  const keys = [];
  for (const run of runs) for (const t of run.tasks) if (!keys.includes(t.key)) keys.push(t.key);
  const cell = (run, key) => {
    const t = run.tasks.find((x) => x.key === key);
    if (!t) return h('td', { class: 'cell' });
    return h('td', { class: 'cell' }, h('a', { class: `sq st-${t.status}`, href: `#/tasks/${enc(t.id)}`, title: `${run.name} ${key}: ${t.status}` }));
  };
  return h('table', { class: 'runs', id: 'runs-grid' },
    h('thead', null, h('tr', null, h('th', null, 'task \\ run'), runs.map((r) => h('th', { class: 'cell' }, h('a', { class: `sq st-${r.status}`, href: `#/workflows/${enc(r.id)}`, title: `${r.name} ${r.id}: ${r.status}` }))))),
    h('tbody', null, keys.map((key) => h('tr', null, h('th', { class: 'key' }, key), runs.map((r) => cell(r, key))))));
}

function mount(ctx, root) {
  const gridBox = h('div', { class: 'grid-box' });
  const body = h('div');
  root.append(h('h1', null, 'Workflows'), h('h2', null, `Latest runs`), gridBox, h('h2', null, 'All'), body);
  async function refresh() {
    const list = await get('/api/v1/workflows');
    const latest = list.workflows.slice(0, GRID_RUNS);
    const runs = await Promise.all(latest.map((w) => get(`/api/v1/workflows/${enc(w.id)}`)));
    fill(gridBox, grid(runs.reverse()) || h('p', { class: 'muted empty' }, 'no workflow runs yet'));
    fill(body, table([
      ['Workflow', (w) => link(`#/workflows/${enc(w.id)}`, w.name)],
      ['Id', (w) => w.id],
      ['Status', (w) => badge(w.status)],
      ['Done', (w) => `${w.percent_done}% of ${w.total}`],
      ['Failure policy', (w) => w.failure_policy],
      ['Elapsed', (w) => seconds(w.elapsed_s)],
      ['ETA', (w) => seconds(w.eta_s)],
      ['Created', (w) => ago(w.created_at)],
    ], list.workflows, 'no workflows'));
  }
  return { root, refresh };
}

const watch = () => ({ kind: 'workflow' });

export default { watch, mount };
