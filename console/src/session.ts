// The admin key lives in sessionStorage only: it dies with the tab, is never put in a URL, and
// is never logged. The chosen environment is kept beside it so a reload stays where it was.

const KEY = 'cohort.adminKey';
const ENV = 'cohort.environment';

export function adminKey(): string | null {
  return sessionStorage.getItem(KEY);
}

export function setAdminKey(key: string): void {
  sessionStorage.setItem(KEY, key);
}

export function environment(): string | null {
  return sessionStorage.getItem(ENV);
}

export function setEnvironment(env: string): void {
  sessionStorage.setItem(ENV, env);
}

export function signOut(): void {
  sessionStorage.removeItem(KEY);
  sessionStorage.removeItem(ENV);
}
