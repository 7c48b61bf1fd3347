// Cluster: this master's view of the members, roles, leader, term, commit and applied indexes,
// each member's lag and link, and the leader changes this page has seen.

import { get } from '../api.js';
import { badge, card, h, seconds, table, fill } from '../dom.js';

function mount(ctx, root) {
  root.append(h('h1', null, 'Cluster'));
  const body = h('div');
  root.append(body);
  async function refresh() {
    const [view, health] = await Promise.all([get('/api/v1/cluster'), get('/health')]);
    ctx.noteCluster(view);
    const cut = view.role !== 'leader' && !view.leader_id;
    fill(body,
      cut ? h('p', { class: 'cutoff' }, `${view.node_id} is cut off: no leader heard within the election timeout. This is its own, possibly stale, view.`) : null,
      h('div', { class: 'cards' },
        card('Leader', view.leader_id || 'none', view.leader_url || ''),
        card('Term', view.term),
        card('Commit / applied', `${view.commit_index} / ${view.applied_index}`, `last ${view.last_index}, snapshot ${view.snapshot_index}`),
        card('This master', view.node_id, `${view.role} · ${health.version}`),
        card('Live workers', health.workers)),
      h('h2', null, 'Members'),
      table([
        ['Member', (m) => h('strong', null, m.id)],
        ['Role', (m) => badge(m.role)],
        ['Link', (m) => badge(m.link)],
        ['Match index', (m) => m.match_index ?? '–'],
        ['Lag', (m) => (m.lag === null ? '–' : h('span', { class: m.lag > 100 ? 'warn' : '' }, m.lag))],
        ['Last contact', (m) => seconds(m.last_contact_s)],
        ['API', (m) => m.api_url || '–'],
        ['Raft address', (m) => m.raft_address],
      ], view.members, 'no members'),
      h('p', { class: 'muted' }, `Link "down": not heard from within ${view.link_timeout_s} s; "unknown": a follower rarely hears other followers.`),
      h('h2', null, 'Recent elections'),
      table([
        ['Term', (e) => e.term],
        ['Leader', (e) => e.leader_id],
        ['Learnt at', (e) => new Date(e.at * 1000).toLocaleString()],
      ], view.recent_leaders, 'none yet'),
      h('p', { class: 'muted' }, `Leaders this master (${view.node_id}) learnt of since it started, newest first.`),
      h('h2', null, 'Rejected entries'),
      h('p', null, `${view.rejected_entries.total} in all`),
    );
  }
  return { root, refresh };
}

// Workers joining or lost change the live count; the rest is re-read every few seconds.
const watch = () => ({ kind: 'worker' });

export default { watch, mount };
