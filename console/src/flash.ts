// A message for the next page shown ("Saved revision 3"), so a write's outcome survives the
// navigation it ends with.

let pending: { text: string; data: Record<string, string | number> } | null = null;

export function setFlash(text: string, data: Record<string, string | number> = {}): void {
  pending = { text, data };
}

export function takeFlash(): { text: string; data: Record<string, string | number> } | null {
  const f = pending;
  pending = null;
  return f;
}
