// Schedules: each with its cron expression or interval, next and last runs.

import { get } from '../api.js';
import { badge, h, table, fill } from '../dom.js';

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : '–';
}

function mount(ctx, root) {
  const body = h('div');
  root.append(h('h1', null, 'Schedules'), body);
  async function refresh() {
    const list = (await get('/api/v1/schedules')).schedules;
    fill(body, table([
      ['Schedule', (x) => h('strong', null, x.name)],
      ['When', (x) => x.cron ? `cron ${x.cron} (${x.timezone || 'UTC'})` : `every ${x.every}`],
      ['State', (x) => badge(x.paused ? 'paused' : 'active')],
      ['Next run', (x) => when(x.next_run)],
      ['Last run', (x) => when(x.last_run)],
      ['Overlap', (x) => x.overlap || '–'],
      ['Catch-up', (x) => x.catchup || '–'],
    ], list, 'no schedules'));
  }
  return { root, refresh };
}

// No schedule events: the page re-reads every few seconds; workers' events keep the socket.
const watch = () => ({ kind: 'worker' });

export default { watch, mount };
