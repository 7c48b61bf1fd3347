// Tasks: newest first, filtered by status, group and priority; each row opens the task's page.

import { get, q } from '../api.js';
import { ago, badge, h, link, table, fill } from '../dom.js';

const STATUSES = ['', 'pending', 'queued', 'assigned', 'running', 'completed', 'failed', 'cancelled', 'timed_out'];
const FINISHED = new Set(['completed', 'failed', 'cancelled', 'timed_out']);
const PRIORITIES = ['', 'urgent', 'high', 'medium', 'low'];

function select(name, options) {
  return h('select', { name, id: `filter-${name}` }, options.map((o) => h('option', { value: o }, o || `any ${name}`)));
}

function mount(ctx, root) {
  const status = select('status', STATUSES);
  const priority = select('priority', PRIORITIES);
  const group = h('input', { name: 'group', id: 'filter-group', placeholder: 'group', size: 12 });
  const limit = select('limit', ['50', '100', '200']);
  const body = h('div');
  root.append(h('h1', null, 'Tasks'),
    h('form', { class: 'filters', onsubmit: (e) => { e.preventDefault(); newest(); } },
      status, priority, group, limit, h('button', { type: 'submit', class: 'small' }, 'Filter')),
    body);
  let moving = false; // some task shown has not finished
  let cursors = []; // the cursors of the pages before this one; [] is the newest page
  const newest = () => { cursors = []; refresh(); };
  for (const el of [status, priority, limit]) el.addEventListener('change', newest);
  async function refresh() {
    const params = { status: status.value, priority: priority.value, group: group.value.trim(), limit: limit.value };
    params.cursor = cursors.length ? cursors[cursors.length - 1] : '';
    const page = await get(`/api/v1/tasks${q(params)}`);
    moving = page.tasks.some((t) => !FINISHED.has(t.status));
    const paging = h('div', { class: 'actions' },
      cursors.length ? h('button', { class: 'small', id: 'newer', onclick: () => { cursors.pop(); refresh(); } }, '← Newer') : null,
      page.next_cursor ? h('button', { class: 'small', id: 'older', onclick: () => { cursors.push(page.next_cursor); refresh(); } }, 'Older →') : null);
    fill(body, paging, table([
      ['Task', (t) => link(`#/tasks/${encodeURIComponent(t.id)}`, t.id)],
      ['Title', (t) => h('span', { class: 'clip', title: t.title }, t.title)],
      ['Status', (t) => badge(t.status)],
      ['Priority', (t) => t.priority],
      ['Group', (t) => t.group],
      ['Worker', (t) => t.worker_id || '–'],
      ['Attempts', (t) => t.attempts],
      ['Exit', (t) => t.exit_code ?? '–'],
      ['Workflow', (t) => (t.workflow_id ? link(`#/workflows/${encodeURIComponent(t.workflow_id)}`, t.key || t.workflow_id) : '–')],
      ['Created', (t) => ago(t.created_at)],
    ], page.tasks, 'no tasks match'));
  }
  return { root, refresh, busy: () => moving };
}

// Tasks' ends; while the list shows unfinished tasks the page re-reads every second anyway.
const watch = () => ({ kind: 'task', ends_only: true });

export default { watch, mount };
