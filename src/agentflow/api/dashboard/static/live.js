// One socket to WS /api/v1/events for the whole page: events are handed to the current page
// (which re-reads what it shows, at most once a second), and the socket resumes after the
// last index it saw when it drops, or re-reads everything when the master lost that point.

const KINDS = ['task', 'workflow', 'worker', 'lock', 'message'];
const RETRY_MS_MIN = 500;
const RETRY_MS_MAX = 10000;

export class Live {
  constructor(onEvents, onState) {
    this.onEvents = onEvents;
    this.onState = onState;
    this.index = null;
    this.retryMs = RETRY_MS_MIN;
    this.socket = null;
  }

  start() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const params = new URLSearchParams(KINDS.map((k) => ['kind', k]));
    if (this.index !== null) params.set('from_index', String(this.index));
    const socket = new WebSocket(`${scheme}//${location.host}/api/v1/events?${params}`);
    this.socket = socket;
    socket.onopen = () => {
      this.retryMs = RETRY_MS_MIN;
      this.onState('live');
    };
    socket.onmessage = (message) => this.frame(JSON.parse(message.data));
    socket.onerror = () => {};
    socket.onclose = (close) => {
      if (close.code === 4410) this.index = null; // resume point gone: re-read, from now on
      this.onState(close.code === 4401 || close.code === 4403 ? 'refused' : 'reconnecting');
      setTimeout(() => this.start(), this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, RETRY_MS_MAX);
    };
  }

  frame(frame) {
    if (typeof frame.index === 'number') this.index = frame.index;
    if (Array.isArray(frame.events) && frame.events.length) this.onEvents(frame.events);
  }
}
