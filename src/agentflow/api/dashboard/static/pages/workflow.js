// One workflow: its DAG with live states and the critical path, counts, ETA, each task, and
// cancel / retry.

import { enc, get, write } from '../api.js';
import { drawDag } from '../dag.js';
import { ago, badge, card, h, link, seconds, table, fill } from '../dom.js';

const FINISHED = new Set(['completed', 'failed', 'cancelled']);

function actions(ctx, wf) {
  if (!ctx.canWrite) return null;
  const path = `/api/v1/workflows/${enc(wf.id)}`;
  return h('div', { class: 'actions' },
    FINISHED.has(wf.status) ? null : h('button', { class: 'danger', id: 'wf-cancel', onclick: () => ctx.act('cancel workflow', () => write('POST', `${path}/cancel`)) }, 'Cancel'),
    wf.counts.failed || wf.counts.cancelled || wf.counts.timed_out || wf.counts.upstream_failed
      ? h('button', { id: 'wf-retry', onclick: () => ctx.act('retry workflow', () => write('POST', `${path}/retry`)) }, 'Retry failed')
      : null);
}

function mount(ctx, root, id) {
  const body = h('div');
  root.append(h('p', null, link('#/workflows', '← Workflows')), body);
  async function refresh() {
    const [wf, graph] = await Promise.all([get(`/api/v1/workflows/${enc(id)}`), get(`/api/v1/workflows/${enc(id)}/graph`)]);
    const counts = Object.entries(wf.counts).map(([k, v]) => h('span', { class: 'tag' }, `${k} ${v}`));
    fill(body,
      h('h1', null, `${wf.name} `, badge(wf.status)),
      h('p', { class: 'muted' }, wf.id, ' · ', counts),
      actions(ctx, wf),
      h('div', { class: 'cards' },
        card('Done', `${wf.percent_done}%`, `${wf.total} tasks`),
        card('Elapsed', seconds(wf.elapsed_s)),
        card('ETA', seconds(wf.eta_s)),
        card('Critical path', seconds(graph.analysis.critical_path_s), (graph.analysis.critical_path || []).join(' → ')),
        card('Peak parallelism', graph.analysis.peak_parallelism, `widest level ${graph.analysis.max_width}`)),
      h('div', { class: 'dag-box' }, drawDag(graph, (n) => { location.hash = `#/tasks/${encodeURIComponent(n.id)}`; })),
      h('p', { class: 'muted legend' }, 'Thick outline: the critical path (the longest chain by estimated time).'),
      h('h2', null, 'Tasks'),
      table([
        ['Key', (t) => link(`#/tasks/${enc(t.id)}`, t.key)],
        ['Status', (t) => badge(t.status)],
        ['Depends on', (t) => t.dependencies.join(', ') || '–'],
        ['Trigger', (t) => t.trigger],
        ['Attempts', (t) => t.attempts],
        ['Exit', (t) => t.exit_code ?? '–'],
        ['Reason', (t) => t.reason || '–'],
        ['Finished', (t) => ago(t.finished_at)],
      ], wf.tasks));
  }
  return { root, refresh };
}

// The workflow's own events and its tasks'.
const watch = (id) => ({ workflow_id: id });

export default { watch, mount };
