// What every view is handed: the API, the environment in use, and the life of its page.

import type { Api } from './api';
import type { Environment } from './types';

export interface Ctx {
  api: Api;
  env: Environment;
  environments: Environment[];
  query: URLSearchParams;
  /** Aborted when the page is left: fetches stop and timers end. */
  signal: AbortSignal;
  go(hash: string): void;
  /** Renders the current page again (after a write). */
  refresh(): void;
  /** The key was refused: back to sign-in with this message. */
  signedOut(message: string): void;
}
