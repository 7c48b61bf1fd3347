// Agents and messages: the agent registry (live sessions, inbox depth, subscriptions) and
// the latest messages.

import { get } from '../api.js';
import { ago, badge, h, table, fill } from '../dom.js';

const MESSAGES_SHOWN = 50;

function content(m) {
  const text = typeof m.content === 'string' ? m.content : JSON.stringify(m.content);
  return h('span', { class: 'clip', title: text }, text);
}

function mount(ctx, root) {
  const agentsBox = h('div');
  const messagesBox = h('div');
  root.append(h('h1', null, 'Agents and messages'), h('h2', null, 'Agents'), agentsBox, h('h2', null, 'Recent messages'), messagesBox);
  async function refresh() {
    const [agents, messages] = await Promise.all([get('/api/v1/agents?limit=200'), get(`/api/v1/messages?limit=${MESSAGES_SHOWN}`)]);
    fill(agentsBox, table([
      ['Agent', (a) => h('strong', null, a.id)],
      ['Kind', (a) => a.kind],
      ['Session', (a) => badge(a.live ? 'live' : 'gone')],
      ['Inbox', (a) => a.inbox_depth],
      ['Received / acked', (a) => `${a.received} / ${a.acked}`],
      ['Subscriptions', (a) => a.subscriptions.map((p) => h('span', { class: 'tag' }, p))],
    ], agents.agents, 'no agents'));
    fill(messagesBox, table([
      ['When', (m) => ago(m.timestamp)],
      ['From', (m) => m.from || '–'],
      ['To', (m) => m.to],
      ['Type', (m) => m.type],
      ['Content', content],
      ['Correlation', (m) => m.correlation_id || '–'],
    ], [...messages.messages].reverse(), 'no messages'));
  }
  return { root, refresh };
}

const watch = () => ({ kind: 'message' });

export default { watch, mount };
