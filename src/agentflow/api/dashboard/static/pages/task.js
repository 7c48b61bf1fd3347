// One task: its state, why no worker can run it, its attempts (worker, fencing token, exit
// code, reason), its output as it is written, and cancel / priority change.

import { enc, get, write } from '../api.js';
import { ago, badge, h, kv, link, table, fill } from '../dom.js';

const FINISHED = new Set(['completed', 'failed', 'cancelled', 'timed_out']);
const WAITING = new Set(['pending', 'queued']);

function actions(ctx, t) {
  if (!ctx.canWrite || FINISHED.has(t.status)) return null;
  const path = `/api/v1/tasks/${enc(t.id)}`;
  const choice = h('select', { id: 'priority' }, ['urgent', 'high', 'medium', 'low'].map((p) => h('option', { value: p, selected: p === t.priority }, p)));
  return h('div', { class: 'actions' },
    h('button', { class: 'danger', id: 'cancel', onclick: () => ctx.act('cancel', () => write('POST', `${path}/cancel`)) }, 'Cancel'),
    WAITING.has(t.status) ? [choice, h('button', { id: 'set-priority', onclick: () => ctx.act('priority', () => write('PATCH', path, { priority: choice.value })) }, 'Set priority')] : null);
}

function facts(t) {
  const rows = [
    ['Title', t.title], ['Command', t.command || (t.args && t.args.join(' ')) || t.function || t.agent || (t.pickled_chars ? `(a function by value, ${t.pickled_chars} chars)` : '–')],
    ['Priority', t.effective_priority !== undefined ? `${t.priority} (effective ${t.effective_priority})` : t.priority],
    ['Group', t.group], ['Worker', t.worker_id || '–'], ['Fencing token', t.fencing_token ?? '–'],
    ['Retries', `${t.retries} of ${t.max_retries}`], ['Exit code', t.exit_code ?? '–'], ['Reason', t.reason || '–'],
    ['Created', ago(t.created_at)], ['Started', ago(t.started_at)], ['Finished', ago(t.finished_at)],
  ];
  return h('dl', { class: 'facts' }, rows.map(([k, v]) => [h('dt', null, k), h('dd', null, v)]),
    h('dt', null, 'Labels'), h('dd', null, kv(t.labels)), h('dt', null, 'Resources'), h('dd', null, kv(t.resources)),
    t.workflow_id ? [h('dt', null, 'Workflow'), h('dd', null, link(`#/workflows/${enc(t.workflow_id)}`, `${t.workflow_id} (${t.key})`))] : null);
}

function mount(ctx, root, id) {
  const head = h('div');
  const buttons = h('div'); // rebuilt only when the task's state or priority changes
  const body = h('div');
  head.append(buttons, body);
  let shown = null;
  const output = h('pre', { class: 'output', id: 'output' }, '');
  const attempts = h('div');
  root.append(h('p', null, link('#/tasks', '← Tasks')), head, h('h2', null, 'Attempts'), attempts, h('h2', null, 'Output'), output);
  let running = false;
  async function refresh() {
    const [t, out] = await Promise.all([get(`/api/v1/tasks/${enc(id)}`), get(`/api/v1/tasks/${enc(id)}/output`)]);
    running = !FINISHED.has(t.status);
    const state = `${t.status}/${t.priority}`;
    if (state !== shown) {
      shown = state; // so a choice being made in the priority list is not reset under it
      fill(buttons, h('h1', null, `Task ${t.id} `, badge(t.status)), actions(ctx, t));
    }
    fill(body,
      t.unschedulable ? h('p', { class: 'cutoff', id: 'unschedulable' }, `Unschedulable: ${t.unschedulable}`) : null,
      facts(t),
      t.result ? [h('h2', null, `Result (${t.result_format})`), h('pre', { class: 'output' }, t.result)] : null);
    fill(attempts, table([
      ['#', (a) => a.attempt], ['Worker', (a) => a.worker_id], ['Token', (a) => a.fencing_token],
      ['Status', (a) => badge(a.status)], ['Exit', (a) => a.exit_code ?? '–'], ['Reason', (a) => a.reason || '–'],
      ['Started', (a) => ago(a.started_at)], ['Finished', (a) => ago(a.finished_at)],
    ], t.attempt_history, 'no attempt yet'));
    const text = out.stdout + (out.stderr ? `\n--- stderr ---\n${out.stderr}` : '');
    const note = out.output_evicted ? '(output evicted)' : '(no output yet)';
    output.textContent = text || note;
  }
  // The output is no event: re-read it every second while the task runs.
  return { root, refresh, busy: () => running };
}

const watch = (id) => ({ task_id: id });

export default { watch, mount };
