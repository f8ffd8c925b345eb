// Pieces several pages share: error blocks, status badges, the confirmation dialog and an
// experiment's lifecycle buttons.

import { ApiError } from '../api';
import type { Ctx } from '../context';
import { h, replace, uid, type Child } from '../dom';
import { describeError } from '../shape/errors';
import type { LocatedViolation } from '../shape/definition';
import type { Entity, ExperimentAction, ExperimentStatus, Violation, Write } from '../types';

/**
 * Shows a failed action's error in `target`; a refused key instead signs out (it was revoked or
 * expired while the page was open).
 */
export function showFailure(ctx: Ctx, e: unknown, target: Element, thing?: string): void {
  if (e instanceof ApiError && e.code === 'UNAUTHENTICATED') ctx.signedOut(e.message);
  else replace(target, errorBlock(e, { thing }));
}

export interface ErrorOptions {
  /** What the error is about, for the stale-edit message ("experiment checkout"). */
  thing?: string;
  /** Shown under the message: a way out (reload, try again). */
  extra?: Child;
  /** Adds the line of each violation in the text that was sent. */
  locate?: (violations: Violation[]) => LocatedViolation[];
  /** Called when a located violation is chosen. */
  onPick?: (v: LocatedViolation) => void;
}

/** An error as a block: what happened, the server's words, and each violation by field. */
export function errorBlock(e: unknown, o: ErrorOptions = {}): HTMLElement {
  const err = e instanceof ApiError ? e : { code: 'UNKNOWN', message: e instanceof Error ? e.message : String(e) };
  const d = describeError(err, o.thing);
  const located = o.locate ? o.locate(d.violations) : d.violations.map((v) => ({ ...v, path: null, line: null }));
  return h(
    'div',
    {
      class: 'error',
      role: 'alert',
      dataset: { errorCode: d.code, stale: d.stale ? 'true' : undefined, currentRevision: d.currentRevision ?? undefined },
    },
    h('strong', null, d.title),
    d.message ? h('p', { class: 'server-message' }, d.message) : null,
    violationList(located, o.onPick),
    o.extra,
  );
}

/** Violations by field path; with a line, each is a button that shows the line. */
function violationList(violations: LocatedViolation[], onPick?: (v: LocatedViolation) => void): Child {
  if (violations.length === 0) return null;
  return h(
    'ul',
    { class: 'violations' },
    violations.map((v) =>
      h(
        'li',
        { dataset: { field: v.field, line: v.line ?? undefined } },
        v.line && onPick
          ? h('button', { type: 'button', class: 'link', onclick: () => onPick(v) }, h('code', null, v.field), ` (line ${v.line})`)
          : h('code', null, v.field),
        `: ${v.description}`,
      ),
    ),
  );
}

export function badge(status: string | null): Child {
  if (!status) return null;
  return h('span', { class: `badge badge-${status}`, dataset: { status } }, status);
}

export interface ConfirmOptions {
  title: string;
  body: Child;
  confirm: string;
  /** Ask for a reason (recorded in the audit log); required when true. */
  reason: boolean;
  danger?: boolean;
}

/**
 * A modal confirmation (native <dialog>: focus is held inside, Escape cancels). Resolves with
 * the reason given, '' when none is asked, or null when cancelled.
 */
export function confirmDialog(o: ConfirmOptions): Promise<string | null> {
  return new Promise((resolve) => {
    const reasonId = uid('reason');
    const reason = o.reason
      ? h('textarea', { id: reasonId, name: 'reason', rows: 3, required: true, 'aria-required': 'true' })
      : null;
    const problem = h('p', { class: 'form-problem', role: 'alert' });
    const dialog = h(
      'dialog',
      { class: 'confirm', 'aria-labelledby': `${reasonId}-title` },
      h(
        'form',
        { method: 'dialog' },
        h('h2', { id: `${reasonId}-title` }, o.title),
        h('div', null, o.body),
        reason
          ? h('div', { class: 'field' }, h('label', { for: reasonId }, 'Reason (recorded in the audit log)'), reason)
          : null,
        problem,
        h(
          'div',
          { class: 'actions' },
          h('button', { type: 'button', value: 'cancel', class: 'secondary', onclick: () => dialog.close('cancel') }, 'Cancel'),
          h('button', { type: 'submit', value: 'ok', class: o.danger ? 'danger' : 'primary' }, o.confirm),
        ),
      ),
    );
    dialog.querySelector('form')!.addEventListener('submit', (ev) => {
      if (reason && reason.value.trim() === '') {
        ev.preventDefault();
        problem.textContent = 'A reason is required.';
        reason.focus();
      }
    });
    dialog.addEventListener('close', () => {
      const ok = dialog.returnValue === 'ok';
      dialog.remove();
      resolve(ok ? (reason?.value.trim() ?? '') : null);
    });
    document.body.appendChild(dialog);
    dialog.showModal();
    (reason ?? dialog.querySelector<HTMLButtonElement>('button[type=submit]'))?.focus();
  });
}

const MOVES: Record<ExperimentStatus, ExperimentAction[]> = {
  draft: ['start'],
  running: ['pause', 'complete'],
  paused: ['resume', 'complete'],
  completed: [],
};

const VERB: Record<ExperimentAction, string> = {
  start: 'Start',
  pause: 'Pause',
  resume: 'Resume',
  complete: 'Complete',
};

const DOING: Record<ExperimentAction, string> = {
  start: 'Starting',
  pause: 'Pausing',
  resume: 'Resuming',
  complete: 'Completing',
};

const CONSEQUENCE: Record<ExperimentAction, string> = {
  start: 'Units start being enrolled and exposed to its variants.',
  pause: 'Enrollment stops until it is resumed; it keeps its place in its layer.',
  resume: 'Enrollment continues where it stopped.',
  complete: 'Enrollment ends for good; a completed experiment cannot be resumed.',
};

/** The lifecycle moves legal from the experiment's status, each confirmed with a reason. */
export function lifecycleActions(ctx: Ctx, entity: Entity, status: HTMLElement, done: (w: Write) => void): HTMLElement {
  const current = entity.definition.status as ExperimentStatus;
  const moves = MOVES[current] ?? [];
  return h(
    'div',
    { class: 'lifecycle', role: 'group', 'aria-label': 'Lifecycle' },
    moves.map((action) =>
      h(
        'button',
        {
          type: 'button',
          class: action === 'complete' ? 'secondary' : 'primary',
          dataset: { action },
          onclick: async () => {
            const reason = await confirmDialog({
              title: `${VERB[action]} ${entity.key}?`,
              body: h('p', null, CONSEQUENCE[action]),
              confirm: VERB[action],
              reason: true,
              danger: action === 'complete',
            });
            if (reason === null) return;
            replace(status, h('p', { class: 'loading' }, `${DOING[action]}…`));
            try {
              done(await ctx.api.transition(ctx.env.key, entity.key, action, reason, entity.revision));
            } catch (e) {
              showFailure(ctx, e, status, `experiment ${entity.key}`);
            }
          },
        },
        VERB[action],
      ),
    ),
  );
}
