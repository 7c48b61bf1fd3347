// Locks: every lock held or awaited, with holders (session, owner, fencing token, expiry) and
// waiters; one lock's page adds its history as the master keeps it.

import { enc, get } from '../api.js';
import { badge, h, kv, link, seconds, table, fill } from '../dom.js';

const holders = (l) => l.holders.map((g) => h('div', null, h('span', { class: 'tag' }, `token ${g.token}`), ` ${g.owner || g.session} · ${g.mode} · ${seconds(g.expires_in_s)} left`));

function mount(ctx, root, name) {
  const body = h('div');
  const detail = h('div');
  root.append(h('h1', null, 'Locks'), body, detail);
  async function refresh() {
    const list = await get('/api/v1/locks');
    fill(body, table([
      ['Lock', (l) => link(`#/locks/${enc(l.name)}`, l.name)],
      ['Held', (l) => badge(l.held ? 'held' : 'free')],
      ['Holders', holders],
      ['Waiters', (l) => l.waiters.length],
      ['Limit', (l) => l.limit],
      ['Last token', (l) => l.token],
    ], list.locks, 'no lock is held or awaited'));
    if (!name) return;
    const lock = await get(`/api/v1/locks/${enc(name)}`);
    fill(detail,
      h('h2', null, `Lock ${lock.name}`),
      h('h3', null, 'Holders'),
      table([['Session', (g) => g.session], ['Owner', (g) => g.owner || '–'], ['Token', (g) => g.token], ['Mode', (g) => g.mode], ['Expires in', (g) => seconds(g.expires_in_s)], ['Metadata', (g) => kv(g.metadata)]], lock.holders, 'no holder'),
      h('h3', null, 'Waiters'),
      table([['Waiter', (w) => w.owner || w.session || w.task_id || JSON.stringify(w)], ['Mode', (w) => w.mode || '–'], ['Waiting', (w) => seconds(w.waited_s ?? w.wait_s)]], lock.waiters, 'no waiter'),
      h('h3', null, 'History'),
      table([['Index', (e) => e.index], ['Event', (e) => badge(e.kind)], ['Session', (e) => e.session || '–'], ['Token', (e) => e.token ?? '–'], ['Detail', (e) => e.detail || '–']], [...(lock.history || [])].reverse(), 'no history kept'));
  }
  return { root, refresh };
}

const watch = () => ({ kind: 'lock' });

export default { watch, mount };
