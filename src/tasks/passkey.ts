import { fillerSentences, insertAtDepths, repeatedFiller } from './filler';
import type { Rng } from './rng';
import { chat, type TaskOptions, type TaskSample } from './types';

export interface PasskeyOptions extends TaskOptions {
  /** Number of digits of the pass key (default 5). */
  digits?: number;
}

/**
 * Passkey retrieval (Mohtashami & Jaggi, 2023): one line "The pass key is N." hidden in
 * filler at a given depth; the prompt ends with the cue "The pass key is".
 */
export function passkey(rng: Rng, opts: PasskeyOptions): TaskSample {
  const key = rng.digits(opts.digits ?? 5);
  const depth = opts.depth ?? rng.next();
  const header = 'There is a pass key hidden in the text below. Find it and remember it.';
  const needle = `The pass key is ${key}. Remember it. ${key} is the pass key.`;
  const question = 'What is the pass key?';
  const cue = 'The pass key is';
  const fixed = header.length + needle.length + question.length + cue.length + 4;
  const filler = fillerSentences(opts.filler ?? repeatedFiller(), rng, opts.targetChars - fixed);
  const body = insertAtDepths(filler, [{ text: needle, depth }]);
  const context = `${header}\n${body}`;
  return {
    task: 'passkey',
    prompt: `${context}\n${question} ${cue}`,
    answer: ` ${key}`,
    messages: chat(context, question, key, cue),
    meta: { depth, key, filler: (opts.filler ?? repeatedFiller()).name },
  };
}
