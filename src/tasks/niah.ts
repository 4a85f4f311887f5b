import { fillerSentences, insertAtDepths, repeatedFiller } from './filler';
import type { Rng } from './rng';
import { chat, type TaskOptions, type TaskSample } from './types';

export interface NiahOptions extends TaskOptions {
  /** Number of key/value needles in the haystack (default 4); one of them is asked for. */
  keys?: number;
  /** Digits per value (default 6). */
  valueDigits?: number;
  /**
   * Make every value start with the same first `sharedPrefix` digits (default 0: independent
   * values). A training option: then the digit after the shared prefix can only be told apart
   * by the key, as in a natural haystack whose values happen to share leading digits.
   */
  sharedPrefix?: number;
}

const KEY_WORDS = [
  'apple', 'river', 'candle', 'falcon', 'garden', 'harbor', 'island', 'jacket', 'kettle',
  'lantern', 'meadow', 'needle', 'orange', 'pepper', 'quartz', 'rabbit', 'saddle', 'tiger',
  'velvet', 'window', 'yellow', 'zebra', 'anchor', 'bridge', 'copper', 'dragon', 'engine',
  'forest', 'guitar', 'hammer', 'violet', 'marble', 'pillow', 'rocket', 'silver', 'tunnel',
  'walnut', 'basket', 'cactus', 'dolphin', 'feather', 'glacier', 'helmet', 'jungle', 'kitten',
  'lemon', 'mirror', 'nutmeg', 'oyster', 'puzzle', 'ribbon', 'spider', 'tomato', 'violin',
];

/**
 * Multi-key needle in a haystack (RULER's "multikey" flavour): several lines
 * "The special magic number for KEY is: VALUE." at random depths in real text; the question
 * asks for one key's value. `meta.depth` is the depth of the asked-for needle.
 */
export function niah(rng: Rng, opts: NiahOptions): TaskSample {
  const n = opts.keys ?? 4;
  const keys = rng.shuffle(KEY_WORDS.slice()).slice(0, n);
  const digits = opts.valueDigits ?? 6;
  const shared = opts.sharedPrefix ?? 0;
  if (!Number.isInteger(shared) || shared < 0 || shared >= digits) {
    throw new RangeError(`niah: sharedPrefix must be an integer in [0, ${digits - 1}] (got ${String(opts.sharedPrefix)})`);
  }
  const drawn = keys.map(() => rng.digits(digits));
  const values = drawn.map((v) => drawn[0]!.slice(0, shared) + v.slice(shared));
  const target = rng.int(0, n - 1);
  const depths = keys.map((_, i) => (i === target && opts.depth !== undefined ? opts.depth : rng.next()));
  const needles = keys.map((k, i) => ({ text: `The special magic number for ${k} is: ${values[i]}.`, depth: depths[i]! }));
  const header = 'Some special magic numbers are hidden in the text below. Memorize them.';
  const question = `What is the special magic number for ${keys[target]}?`;
  const cue = `The special magic number for ${keys[target]} is:`;
  const fixed = header.length + needles.reduce((a, x) => a + x.text.length + 1, 0) + question.length + cue.length + 4;
  const filler = fillerSentences(opts.filler ?? repeatedFiller(), rng, opts.targetChars - fixed);
  const context = `${header}\n${insertAtDepths(filler, needles)}`;
  return {
    task: 'niah',
    prompt: `${context}\n${question} ${cue}`,
    answer: ` ${values[target]}`,
    messages: chat(context, question, values[target]!, cue),
    meta: { depth: depths[target], keys, values, target, filler: (opts.filler ?? repeatedFiller()).name },
  };
}
