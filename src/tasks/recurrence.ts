import { fillerSentences, insertAtDepths, repeatedFiller } from './filler';
import type { Rng } from './rng';
import { chat, type TaskOptions, type TaskSample } from './types';

export interface RecurrenceOptions extends TaskOptions {
  /** Items in the registry (default 4). */
  items?: number;
  /** Length of the query sequence the answer walks through (default 8). */
  queries?: number;
  /** The query sequence cycles through a random order of the items with this period (default = items). */
  period?: number;
}

const ITEMS = ['red box', 'blue jar', 'green bag', 'gold coin', 'old map', 'tin cup', 'glass key', 'iron ring', 'wool hat', 'clay pot'];

/**
 * Token-importance recurrence (what LazyEviction tracks): a registry of item -> code lines
 * at the start (or at `depth`), filler, then a query list that revisits the items
 * periodically; the answer recites each queried item's code in order, so while decoding the
 * model returns to the same registry entries every `period` steps.
 */
export function recurrence(rng: Rng, opts: RecurrenceOptions): TaskSample {
  const m = Math.min(opts.items ?? 4, ITEMS.length);
  const q = opts.queries ?? 8;
  const period = Math.max(1, Math.min(opts.period ?? m, m));
  const items = rng.shuffle(ITEMS.slice()).slice(0, m);
  const codes = items.map(() => rng.digits(3));
  const cycle = rng.shuffle(Array.from({ length: m }, (_, i) => i)).slice(0, period);
  const order = Array.from({ length: q }, (_, i) => cycle[i % period]!);
  const registry = items.map((it, i) => `The code of the ${it} is ${codes[i]}.`).join(' ');
  const depth = opts.depth ?? rng.next() * 0.3;
  const header = 'A registry of codes is hidden in the text below.';
  const question = `Give the code of each item in this list: ${order.map((i) => items[i]).join(', ')}.`;
  const cue = 'Codes:';
  const fixed = header.length + registry.length + question.length + cue.length + 4;
  const filler = fillerSentences(opts.filler ?? repeatedFiller(), rng, opts.targetChars - fixed);
  const context = `${header}\n${insertAtDepths(filler, [{ text: registry, depth }])}`;
  const answer = order.map((i) => codes[i]).join(' ');
  return {
    task: 'recurrence',
    prompt: `${context}\n${question} ${cue}`,
    answer: ` ${answer}`,
    messages: chat(context, question, answer, cue),
    meta: { depth, items, codes, order, period, filler: (opts.filler ?? repeatedFiller()).name },
  };
}
