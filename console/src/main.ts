// The shell: sign-in, the header (sections, environment switcher, sign out) and the router that
// gives each page a fresh container, so a slow page that is left never draws over the next one.

import './style.css';
import { Api, ApiError } from './api';
import type { Ctx } from './context';
import { h, replace } from './dom';
import { DEFAULT_HASH, parseHash, plural, SECTION_TITLES, type Route } from './router';
import * as session from './session';
import type { Environment, Kind, Session } from './types';
import { errorBlock } from './views/common';
import { resultsPageReads } from './views/results-reads';
import { signIn } from './views/signin';

const api = new Api(session.adminKey);
const root = document.getElementById('app')!;

let environments: Environment[] = [];
let current: AbortController | null = null;

// Experiments first: they are what most people come to the console for.
const SECTIONS: Kind[] = ['experiment', 'flag', 'segment', 'metric', 'layer', 'holdout'];

function chosenEnvironment(): Environment | null {
  const want = session.environment();
  return environments.find((e) => e.key === want) ?? environments[0] ?? null;
}

function showSignIn(notice: string | null): void {
  current?.abort();
  shell = null;
  api.forgetPrefetched();
  environments = [];
  delete document.body.dataset.rendered;
  document.title = 'Sign in · Cohort';
  replace(
    root,
    signIn(api, notice, (key, s: Session) => {
      session.setAdminKey(key);
      start(s);
    }),
  );
}

function signedOut(message: string): void {
  session.signOut();
  showSignIn(`Signed out: ${message || 'the key was refused'}.`);
}

function start(s: Session): void {
  environments = s.environments;
  if (environments.length === 0) {
    shell = null;
    replace(root, h('main', { id: 'main' }, h('p', { class: 'error', role: 'alert' }, 'This key may see no environment.')));
    return;
  }
  const env = chosenEnvironment()!;
  session.setEnvironment(env.key);
  if (!location.hash || location.hash === '#' || location.hash === '#/') history.replaceState(null, '', DEFAULT_HASH);
  void route();
}

function sectionOf(r: Route): string {
  if (r.name === 'audit' || r.name === 'propagation') return r.name;
  if ('kind' in r) return r.kind;
  return '';
}

interface Shell {
  main: HTMLElement;
  select: HTMLSelectElement;
  links: Map<string, HTMLAnchorElement>;
}

/** The header stays while pages change under it, so focus stays on the link that was used. */
let shell: Shell | null = null;

function buildShell(): Shell {
  const select = h(
    'select',
    {
      id: 'env-select',
      onchange: (ev: Event) => {
        session.setEnvironment((ev.target as HTMLSelectElement).value);
        void route();
      },
    },
    environments.map((e) => h('option', { value: e.key }, e.name ? `${e.name} (${e.key})` : e.key)),
  );
  const links = new Map<string, HTMLAnchorElement>([
    ...SECTIONS.map((k) => [k, h('a', { href: `#/${plural(k)}` }, SECTION_TITLES[k])] as const),
    ['audit', h('a', { href: '#/audit' }, 'Audit log')],
    ['propagation', h('a', { href: '#/propagation' }, 'Propagation')],
  ]);
  const main = h('main', { id: 'main', tabindex: '-1' });
  const header = h(
    'header',
    { class: 'top' },
    h('button', { type: 'button', class: 'skip', onclick: () => main.focus() }, 'Skip to content'),
    h('span', { class: 'brand' }, 'Cohort'),
    h('nav', { 'aria-label': 'Sections' }, [...links.values()]),
    h('div', { class: 'env' }, h('label', { for: 'env-select' }, 'Environment'), select),
    h(
      'button',
      {
        type: 'button',
        class: 'secondary',
        onclick: () => {
          session.signOut();
          showSignIn('Signed out.');
        },
      },
      'Sign out',
    ),
  );
  replace(root, header, main);
  return { main, select, links };
}

function titleOf(r: Route): string {
  switch (r.name) {
    case 'list':
      return SECTION_TITLES[r.kind];
    case 'entity':
      return `${r.key} · ${r.kind}`;
    case 'edit':
      return `Edit ${r.kind} ${r.key}`;
    case 'new':
      return `New ${r.kind}`;
    case 'results':
      return `Results of ${r.key}`;
    case 'audit':
      return 'Audit log';
    case 'propagation':
      return 'Propagation';
    case 'notfound':
      return 'Not found';
  }
}

type Page = (ctx: Ctx, route: never, into: HTMLElement) => Promise<void>;

// Pages load on first use: the charts (Observable Plot) and YAML come with the pages that need
// them, so signing in and lists load little.
function pageFor(r: Route): (() => Promise<Page>) | null {
  switch (r.name) {
    case 'list':
      return () => import('./views/list').then((m) => m.listPage as Page);
    case 'entity':
      return () => import('./views/entity').then((m) => m.entityPage as Page);
    case 'edit':
    case 'new':
      return () => import('./views/editor').then((m) => m.editorPage as Page);
    case 'results':
      return () => import('./views/results').then((m) => m.resultsPage as Page);
    case 'audit':
      return () => import('./views/audit').then((m) => m.auditPage as Page);
    case 'propagation':
      return () => import('./views/propagation').then((m) => m.propagationPage as Page);
    case 'notfound':
      return null;
  }
}

async function route(): Promise<void> {
  if (!session.adminKey()) return showSignIn(null);
  if (environments.length === 0) return boot(parseHash(location.hash).route);
  current?.abort();
  const controller = new AbortController();
  current = controller;
  delete document.body.dataset.rendered;
  const env = chosenEnvironment()!;
  const { route: r, query } = parseHash(location.hash);
  shell ??= buildShell();
  shell.select.value = env.key;
  for (const [id, a] of shell.links) {
    if (id === sectionOf(r)) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const main = shell.main;
  // A link or button inside the page that is replaced takes focus with it: hand it to <main>.
  const focusWasInPage = main.contains(document.activeElement) || document.activeElement === document.body;
  const into = h('div', { class: 'page', dataset: { page: r.name } });
  replace(main, into);
  if (focusWasInPage) main.focus({ preventScroll: true });
  const ctx: Ctx = {
    api,
    env,
    environments,
    query,
    signal: controller.signal,
    go: (hash) => {
      location.hash = hash;
    },
    refresh: () => {
      if (current === controller) void route();
    },
    signedOut,
  };
  document.title = `${titleOf(r)} · Cohort`;
  const load = pageFor(r);
  if (!load) {
    replace(into, h('h1', null, 'No such page'), h('p', null, h('a', { href: DEFAULT_HASH }, 'Go to experiments')));
  } else {
    replace(into, h('p', { class: 'loading', 'aria-busy': 'true' }, 'Loading…'));
    try {
      const page = await load();
      await page(ctx, r as never, into);
    } catch (e) {
      if (controller.signal.aborted) return;
      if (e instanceof ApiError && e.code === 'UNAUTHENTICATED') return signedOut(e.message);
      replace(into, errorBlock(e));
    }
  }
  api.forgetPrefetched();
  if (controller.signal.aborted) return;
  // The page has drawn: tests and the performance budget read this moment.
  document.body.dataset.rendered = r.name;
  performance.mark(`${r.name}-rendered`);
}

/**
 * Checks the stored key (a reload). Meanwhile the page's code loads and, for a results page,
 * what it reads is fetched for the environment last used.
 */
async function boot(first: Route): Promise<void> {
  shell = null;
  replace(root, h('main', { id: 'main' }, h('p', { class: 'loading' }, 'Checking the key…')));
  pageFor(first)?.().catch(() => {});
  const env = session.environment();
  if (first.name === 'results' && env) resultsPageReads(env, first.kind, first.key).forEach((p) => api.prefetch(p));
  try {
    start(await api.session());
  } catch (e) {
    if (e instanceof ApiError && e.code === 'UNAUTHENTICATED') return signedOut(e.message);
    replace(
      root,
      h('main', { id: 'main' }, errorBlock(e), h('button', { type: 'button', class: 'primary', onclick: () => void boot(first) }, 'Try again')),
    );
  }
}

window.addEventListener('hashchange', () => void route());
void route();
