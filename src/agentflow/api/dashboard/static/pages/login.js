// The login form of a master with --api-token: the token goes to POST /ui/login, which answers
// with an HttpOnly cookie; the page never keeps the token itself.

import { write } from '../api.js';
import { h } from '../dom.js';

function mount(ctx, done) {
  const input = h('input', { type: 'password', id: 'token', name: 'token', autocomplete: 'off', placeholder: 'API token', required: true });
  const error = h('p', { class: 'page-error', hidden: true });
  const form = h('form', { class: 'login', id: 'login' },
    h('h1', null, 'Log in'),
    h('p', { class: 'muted' }, 'This master needs an API token (an admin, client or read-only token).'),
    input, h('button', { type: 'submit' }, 'Log in'), error);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      await write('POST', '/ui/login', { token: input.value });
      input.value = '';
      await done();
    } catch (failure) {
      error.hidden = false;
      error.textContent = failure.message;
    }
  });
  return form;
}

export default { mount };
