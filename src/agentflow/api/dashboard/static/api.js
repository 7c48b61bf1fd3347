// The JSON API, as the page's own session calls it: the HttpOnly cookie carries the token, and
// every write sends the session's CSRF token in X-CSRF-Token (the master refuses it otherwise).

let csrf = '';

export function setCsrf(value) {
  csrf = value || '';
}

export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

async function answer(response) {
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { detail: text.slice(0, 200) };
    }
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export async function get(path) {
  const response = await fetch(path, { headers: { Accept: 'application/json' }, credentials: 'same-origin' });
  return answer(response);
}

export async function write(method, path, body) {
  const headers = { Accept: 'application/json', 'X-CSRF-Token': csrf };
  const init = { method, headers, credentials: 'same-origin' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  return answer(await fetch(path, init));
}

export function q(params) {
  const search = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== '' && v !== null && v !== undefined) search.set(k, v);
  const text = search.toString();
  return text ? `?${text}` : '';
}

export const enc = encodeURIComponent;
