// The dashboard's shell: session and login, navigation (hash routes), the live event socket,
// and the refresh loop of the page shown (on its events, at most once a second, and every
// few seconds for ages and rates).

import { ApiError, get, setCsrf, write } from './api.js';
import { h } from './dom.js';
import { Live } from './live.js';
import login from './pages/login.js';
import cluster from './pages/cluster.js';
import queue from './pages/queue.js';
import tasks from './pages/tasks.js';
import task from './pages/task.js';
import workflows from './pages/workflows.js';
import workflow from './pages/workflow.js';
import locks from './pages/locks.js';
import agents from './pages/agents.js';
import schedules from './pages/schedules.js';

const NAV = [
  ['#/cluster', 'Cluster'], ['#/queue', 'Queue & workers'], ['#/tasks', 'Tasks'],
  ['#/workflows', 'Workflows'], ['#/locks', 'Locks'], ['#/agents', 'Agents & messages'],
  ['#/schedules', 'Schedules'],
];
const ROUTES = [
  [/^#\/cluster$/, cluster], [/^#\/queue$/, queue], [/^#\/tasks$/, tasks],
  [/^#\/tasks\/([^/]+)$/, task], [/^#\/workflows$/, workflows],
  [/^#\/workflows\/([^/]+)$/, workflow], [/^#\/locks$/, locks], [/^#\/locks\/(.+)$/, locks],
  [/^#\/agents$/, agents], [/^#\/schedules$/, schedules],
];
const REFRESH_MS = 1000; // at most one re-read per second while events arrive
const IDLE_REFRESH_MS = 5000; // and one every few seconds anyway (ages, rates)

const state = { session: null, page: null, view: null, dirty: false, lastRefresh: 0, busy: false, leaving: false };

function toast(text, bad = false) {
  const el = document.getElementById('toast');
  el.textContent = text;
  el.className = bad ? 'toast bad' : 'toast';
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, 4000);
}

async function act(what, fn) {
  try {
    await fn();
    toast(`${what}: done`);
    state.dirty = true;
  } catch (error) {
    toast(`${what}: ${error.message}`, true);
  }
}

function noteCluster(view) {
  const where = document.getElementById('where');
  where.textContent = `${view.node_id} · ${view.role} · term ${view.term}`;
  const banner = document.getElementById('banner');
  const cut = view.role !== 'leader' && !view.leader_id;
  banner.hidden = !cut;
  banner.textContent = cut
    ? `This master (${view.node_id}) is cut off from the leader: what it shows is its own view, and may be stale.`
    : '';
}

const ctx = {
  get role() { return state.session ? state.session.role : null; },
  get canWrite() { return state.session !== null && state.session.role !== 'read-only'; },
  get isAdmin() { return state.session !== null && state.session.role === 'admin'; },
  noteCluster,
  act,
  toast,
};

function renderNav() {
  const nav = document.getElementById('nav');
  nav.replaceChildren(...NAV.map(([href, text]) => h('a', { href, 'data-nav': href }, text)));
  const who = document.getElementById('who');
  who.replaceChildren();
  if (state.session && state.session.auth && state.session.logged_in) {
    who.append(h('span', { class: 'muted' }, state.session.role), ' ',
      h('button', { class: 'small', id: 'logout', onclick: logout }, 'Log out'));
  }
}

async function logout() {
  state.leaving = true; // no more reads: they would be refused once the cookie is gone
  await act('log out', () => write('POST', '/ui/logout'));
  location.replace('/');
}

async function show() {
  const main = document.getElementById('main');
  let hash = location.hash || '#/cluster';
  if (!state.session.logged_in) {
    state.page = null;
    main.replaceChildren(login.mount(ctx, () => start()));
    return;
  }
  const found = ROUTES.map(([re, page]) => [hash.match(re), page]).find(([m]) => m);
  if (!found) { hash = '#/cluster'; location.hash = hash; return; }
  const [match, page] = found;
  for (const a of document.querySelectorAll('#nav a')) {
    a.classList.toggle('on', hash.startsWith(a.dataset.nav));
  }
  const root = h('section', { class: 'page' });
  main.replaceChildren(root);
  const params = match.slice(1).map(decodeURIComponent);
  state.page = page;
  state.view = page.mount(ctx, root, ...params);
  live.subscribe(page.watch(...params));
  await refresh();
}

async function refresh() {
  if (!state.view || state.busy) return;
  state.busy = true;
  state.dirty = false;
  state.lastRefresh = Date.now();
  const view = state.view;
  try {
    await view.refresh();
    view.root.querySelector('.page-error')?.remove();
  } catch (error) {
    if (view !== state.view) return;
    if (error instanceof ApiError && error.status === 401) { await start(); return; }
    let note = view.root.querySelector('.page-error');
    if (!note) { note = h('p', { class: 'page-error' }); view.root.prepend(note); }
    note.textContent = `Could not read this page's data: ${error.message}`;
  } finally {
    state.busy = false;
  }
}

function tick() {
  if (state.leaving) return;
  const due = Date.now() - state.lastRefresh;
  // A page may ask for a faster pace while it has something moving (a task's output).
  const idle = state.view && state.view.busy && state.view.busy() ? REFRESH_MS : IDLE_REFRESH_MS;
  if ((state.dirty && due >= REFRESH_MS) || due >= idle) refresh();
}

function onEvents(events) {
  if (!state.page) return;
  state.dirty = true; // the socket carries only what this page watches
}

function onLive(text) {
  const el = document.getElementById('live');
  el.textContent = text;
  el.className = `live ${text}`;
}

async function watchCluster() {
  if (!state.session || !state.session.logged_in || state.leaving) return;
  try { noteCluster(await get('/api/v1/cluster')); } catch { /* the page shows its own error */ }
}

const live = new Live(onEvents, onLive); // subscribed by each page as it opens
let started = false;

async function start() {
  state.session = await get('/ui/session');
  setCsrf(state.session.csrf);
  renderNav();
  if (state.session.logged_in && !started) {
    started = true;
    watchCluster();
    setInterval(watchCluster, IDLE_REFRESH_MS);
  }
  await show();
}

window.addEventListener('hashchange', () => show());
setInterval(tick, 250);
start();
