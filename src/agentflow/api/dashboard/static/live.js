// One socket to WS /api/v1/events for the page, subscribed to what the page shows (its kinds,
// its task or workflow): the master sends nothing else. Events are handed to the page, which
// re-reads what it shows at most once a second. A new subscription, or a dropped socket,
// resumes after the last index seen; when the master no longer holds that point it starts
// from now (the page re-reads anyway).

const RETRY_MS_MIN = 500;
const RETRY_MS_MAX = 10000;
const CONNECTING = 0;
const OPEN = 1;

export class Live {
  constructor(onEvents, onState) {
    this.onEvents = onEvents;
    this.onState = onState;
    this.index = null;
    this.retryMs = RETRY_MS_MIN;
    this.socket = null;
    this.query = null;
    this.switching = false;
  }

  // {kind: [...], task_id, workflow_id, ends_only}: reconnect only if it changed.
  subscribe(watch) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(watch)) {
      for (const one of Array.isArray(value) ? value : [value]) params.append(key, String(one));
    }
    const text = params.toString();
    if (text === this.query) return;
    this.query = text;
    if (this.socket === null) {
      this.start();
    } else if (this.socket.readyState === OPEN) {
      this.switching = true;
      this.socket.close(1000);
    } else if (this.socket.readyState === CONNECTING) {
      this.switching = true; // closed once open: closing a socket still connecting is an error
    } // closing or closed: the restart already due takes the new query
  }

  start() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const params = new URLSearchParams(this.query);
    if (this.index !== null) params.set('from_index', String(this.index));
    const socket = new WebSocket(`${scheme}//${location.host}/api/v1/events?${params}`);
    this.socket = socket;
    socket.onopen = () => {
      this.retryMs = RETRY_MS_MIN;
      this.onState('live');
      if (this.switching) socket.close(1000);
    };
    socket.onmessage = (message) => this.frame(JSON.parse(message.data));
    socket.onerror = () => {};
    socket.onclose = (close) => {
      if (close.code === 4410) this.index = null; // resume point gone: from now on
      let delay = this.retryMs;
      if (this.switching) {
        this.switching = false;
        delay = 0;
      } else {
        this.onState(close.code === 4401 || close.code === 4403 ? 'refused' : 'reconnecting');
        this.retryMs = Math.min(this.retryMs * 2, RETRY_MS_MAX);
      }
      setTimeout(() => this.start(), delay);
    };
  }

  frame(frame) {
    if (typeof frame.index === 'number') this.index = frame.index;
    if (Array.isArray(frame.events) && frame.events.length) this.onEvents(frame.events);
  }
}
