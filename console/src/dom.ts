// A small view helper: h('tag', attrs, ...children) builds real DOM nodes. Views are functions
// that return nodes; nothing diffs or re-renders behind the page's back.

export type Child = Node | string | number | null | undefined | false | Child[];

export type Attrs = Record<string, unknown> & {
  class?: string;
  dataset?: Record<string, string | number | undefined>;
  style?: string;
};

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs?: Attrs | null,
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [name, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (name === 'dataset') {
        for (const [k, dv] of Object.entries(v as Record<string, unknown>)) {
          if (dv !== undefined) el.dataset[k] = String(dv);
        }
      } else if (name.startsWith('on') && typeof v === 'function') {
        el.addEventListener(name.slice(2).toLowerCase(), v as EventListener);
      } else if (name === 'value' || name === 'checked' || name === 'selected') {
        // Properties, not attributes: they are the control's current state.
        (el as unknown as Record<string, unknown>)[name] = v;
      } else {
        el.setAttribute(name, v === true ? '' : String(v));
      }
    }
  }
  append(el, children);
  return el;
}

export function append(parent: Node, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(parent, c);
    else parent.appendChild(typeof c === 'object' ? c : document.createTextNode(String(c)));
  }
}

export function replace(parent: Element, ...children: Child[]): void {
  parent.replaceChildren();
  append(parent, children);
}

let ids = 0;

/** A fresh id for pairing a label with its control. */
export function uid(prefix: string): string {
  ids += 1;
  return `${prefix}-${ids}`;
}

/** A labelled control: the label names it for screen readers and clicks focus it. */
export function field(label: string, control: HTMLElement, hint?: Child): HTMLElement {
  if (!control.id) control.id = uid('f');
  const hintEl = hint ? h('div', { class: 'hint', id: `${control.id}-hint` }, hint) : null;
  if (hintEl) control.setAttribute('aria-describedby', hintEl.id);
  return h('div', { class: 'field' }, h('label', { for: control.id }, label), control, hintEl);
}

/** A cell (or span) that shows a formatted number and carries the exact one for tests. */
export function num(
  tag: 'td' | 'span' | 'dd',
  shown: string,
  value: number | null | undefined,
  data: Record<string, string | number | undefined>,
): HTMLElement {
  return h(tag, { class: 'num', dataset: { ...data, value: value ?? undefined } }, shown);
}
