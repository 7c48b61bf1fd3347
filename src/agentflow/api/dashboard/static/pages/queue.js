// Queue and workers: depth per priority and group, oldest wait, rates and totals; every
// worker's capacity, load, labels, state and heartbeat age, with drain / activate (admin).

import { enc, get, write } from '../api.js';
import { badge, card, h, kv, seconds, table, fill } from '../dom.js';

function workerActions(ctx, w) {
  if (!ctx.isAdmin || w.state === 'lost') return null;
  const draining = w.state === 'draining';
  const next = draining ? 'active' : 'draining';
  return h('button', {
    class: 'small', 'data-action': draining ? 'activate' : 'drain', 'data-worker': w.id,
    onclick: () => ctx.act(`${draining ? 'activate' : 'drain'} ${w.id}`,
      () => write('PATCH', `/api/v1/workers/${enc(w.id)}`, { state: next })),
  }, draining ? 'Activate' : 'Drain');
}

function mount(ctx, root) {
  root.append(h('h1', null, 'Queue and workers'));
  const body = h('div');
  root.append(body);
  async function refresh() {
    const [stats, reg] = await Promise.all([get('/api/v1/queue/stats'), get('/api/v1/workers')]);
    const groups = Object.entries(stats.by_group);
    fill(body,
      h('div', { class: 'cards' },
        card('Queued', stats.queued, `${stats.pending} waiting on dependencies`),
        card('Running', stats.running, `${stats.assigned} assigned`),
        card('Oldest wait', seconds(stats.oldest_wait_s)),
        card('Finished / s (1 min)', stats.finished_per_s_1m),
        card('Workers', `${stats.workers.live} / ${stats.workers.total}`, `${stats.workers.free_slots} free slots`)),
      h('div', { class: 'two' },
        h('div', null, h('h2', null, 'By priority'),
          table([['Priority', (r) => r[0]], ['Queued', (r) => r[1]]], Object.entries(stats.by_priority))),
        h('div', null, h('h2', null, 'By group'),
          table([['Group', (r) => r[0]], ['Queued', (r) => r[1]]], groups, 'no group has queued tasks')),
        h('div', null, h('h2', null, 'Totals'),
          table([['', (r) => r[0]], ['Tasks', (r) => r[1]]], Object.entries(stats.totals)))),
      h('h2', null, 'Workers'),
      table([
        ['Worker', (w) => h('strong', null, w.id)],
        ['State', (w) => badge(w.state)],
        ['Group', (w) => w.group],
        ['Load', (w) => h('span', { class: 'load' }, h('progress', { max: 1, value: w.load }), ` ${Math.round(w.load * 100)}%`)],
        ['Slots (free)', (w) => `${w.slots} (${w.free_slots})`],
        ['Running', (w) => w.running.length],
        ['Resources free / total', (w) => Object.entries(w.resources).map(([k, v]) => h('span', { class: 'tag' }, `${k} ${w.free[k] ?? v}/${v}`))],
        ['Labels', (w) => kv(w.labels)],
        ['Heartbeat', (w) => seconds(w.last_heartbeat_age_s)],
        ['Done / failed', (w) => `${w.completed} / ${w.failed}`],
        ['', (w) => workerActions(ctx, w)],
      ], reg.workers, 'no workers registered'),
    );
  }
  return { root, refresh };
}

// Tasks' ends (not every step of each) and workers' changes: under load that is a re-read a
// second anyway, and each submission shows within the idle refresh.
const watch = () => ({ kind: ['task', 'worker'], ends_only: true });

export default { watch, mount };
