import { fillerSentences, repeatedFiller } from './filler';
import type { Rng } from './rng';
import { chat, type TaskOptions, type TaskSample } from './types';

export interface CopyOptions extends TaskOptions {
  /** Sentences to copy (default 1). */
  spanSentences?: number;
}

/**
 * Copying a span: the question quotes the first words of a sentence of the context and asks
 * for that sentence (or `spanSentences` sentences) verbatim. Use a corpus filler: with the
 * repeated filler every sentence occurs many times and the task is trivial.
 */
export function copySpan(rng: Rng, opts: CopyOptions): TaskSample {
  const k = opts.spanSentences ?? 1;
  const header = 'Read the text below.';
  const source = opts.filler ?? repeatedFiller();
  // At least one sentence, however small the target: the task needs a sentence to copy.
  const filler = fillerSentences(source, rng, Math.max(1, opts.targetChars - header.length - 120));
  // Pick a sentence whose opening words are unique in the context and long enough to cue.
  const openings = filler.map((s) => s.split(' ').slice(0, 4).join(' '));
  const candidates = filler
    .map((_, i) => i)
    .filter((i) => i + k <= filler.length && filler[i]!.split(' ').length >= 6 && openings.indexOf(openings[i]!) === openings.lastIndexOf(openings[i]!));
  const at = candidates.length > 0 ? rng.pick(candidates) : 0;
  const span = filler.slice(at, at + k).join(' ');
  const opening = openings[at]!;
  const question = `Repeat the sentence that begins with "${opening}".`;
  const context = `${header}\n${filler.join(' ')}`;
  return {
    task: 'copy',
    prompt: `${context}\n${question} Answer:`,
    answer: ` ${span}`,
    messages: chat(context, question, span),
    meta: { depth: filler.length > 1 ? at / (filler.length - 1) : 0, sentences: k, filler: source.name },
  };
}
