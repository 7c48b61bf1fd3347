// Schedules: each with its cron expression or interval, next and last runs. A master without
// the schedules API (GET /api/v1/schedules answers 404) has none.

import { ApiError, get } from '../api.js';
import { badge, h, table, fill } from '../dom.js';

let served = null; // whether the master's OpenAPI document has the route (read once)

async function hasSchedules() {
  if (served === null) {
    const doc = await get('/openapi.json');
    served = Object.prototype.hasOwnProperty.call(doc.paths || {}, '/api/v1/schedules');
  }
  return served;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : '–';
}

function mount(ctx, root) {
  const body = h('div');
  root.append(h('h1', null, 'Schedules'), body);
  async function refresh() {
    let list = [];
    try {
      if (await hasSchedules()) list = (await get('/api/v1/schedules')).schedules || [];
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 404)) throw error;
    }
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
