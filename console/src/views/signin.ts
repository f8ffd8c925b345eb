// Sign-in: the admin key is checked with GET /api/v1/session before anything else is shown.

import { ApiError, type Api } from '../api';
import { h, replace } from '../dom';
import type { Session } from '../types';
import { errorBlock } from './common';

export function signIn(api: Api, notice: string | null, done: (key: string, session: Session) => void): HTMLElement {
  const input = h('input', {
    id: 'admin-key',
    name: 'admin-key',
    type: 'password',
    autocomplete: 'off',
    spellcheck: 'false',
    required: true,
  });
  const status = h('div', { class: 'status', 'aria-live': 'polite' });
  if (notice) replace(status, h('p', { class: 'notice' }, notice));
  const button = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const form = h(
    'form',
    {
      class: 'signin',
      'aria-labelledby': 'signin-title',
      onsubmit: async (ev: Event) => {
        ev.preventDefault();
        const key = input.value.trim();
        if (!key) return;
        button.disabled = true;
        replace(status, h('p', { class: 'loading' }, 'Checking the key…'));
        try {
          const session = await api.session(key);
          done(key, session);
        } catch (e) {
          const refused = e instanceof ApiError && e.code === 'UNAUTHENTICATED';
          replace(status, errorBlock(e, { extra: refused ? h('p', null, 'Check the key and try again.') : null }));
          input.select();
        } finally {
          button.disabled = false;
        }
      },
    },
    h('h1', { id: 'signin-title' }, 'Sign in to Cohort'),
    h('p', null, 'Use an admin key of your organization. It is kept in this tab only and forgotten when the tab closes.'),
    h('div', { class: 'field' }, h('label', { for: 'admin-key' }, 'Admin key'), input),
    button,
    status,
  );
  queueMicrotask(() => input.focus());
  return h('main', { id: 'main', class: 'signin-page' }, form);
}
