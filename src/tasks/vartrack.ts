import { fillerSentences, insertAtDepths, repeatedFiller } from './filler';
import type { Rng } from './rng';
import { chat, type TaskOptions, type TaskSample } from './types';

export interface VarTrackOptions extends TaskOptions {
  /** Assignments in the tracked chain, the initial `VAR X = N` included (default 4). */
  hops?: number;
  /** Extra distractor chains with other values (default 1). */
  distractors?: number;
}

const UPPER = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';

/**
 * Variable tracking (RULER): `VAR A = 12345`, then `VAR B = VAR A`, `VAR C = VAR B`, ...
 * scattered through filler in order, plus distractor chains with other values. The answer
 * lists every variable of the tracked chain, in order of assignment. `meta.depth` is the
 * depth of the first assignment; the later ones follow it at increasing depths.
 */
export function varTrack(rng: Rng, opts: VarTrackOptions): TaskSample {
  const hops = opts.hops ?? 4;
  const chains = 1 + (opts.distractors ?? 1);
  const used = new Set<string>();
  const fresh = () => {
    for (;;) {
      const v = rng.word(3, UPPER);
      if (!used.has(v)) { used.add(v); return v; }
    }
  };
  const needles: { text: string; depth: number }[] = [];
  const all: { names: string[]; value: string }[] = [];
  const start = opts.depth ?? rng.next() * 0.5;
  for (let c = 0; c < chains; c++) {
    const value = rng.digits(5);
    const names = Array.from({ length: hops }, fresh);
    // The tracked chain (c = 0) starts at the requested depth; each later hop is deeper.
    let d = c === 0 ? start : rng.next() * 0.5;
    for (let h = 0; h < hops; h++) {
      const text = h === 0 ? `VAR ${names[0]} = ${value}.` : `VAR ${names[h]} = VAR ${names[h - 1]}.`;
      needles.push({ text, depth: d });
      d = d + (1 - d) * rng.next() * 0.6;
    }
    all.push({ names, value });
  }
  const tracked = all[0]!;
  const header = 'Memorize and track the chain(s) of variable assignment hidden in the following text.';
  const question = `Find all variables that are assigned the value ${tracked.value} in the text above.`;
  const cue = `Answer: the variables assigned the value ${tracked.value} are:`;
  const fixed = header.length + needles.reduce((a, x) => a + x.text.length + 1, 0) + question.length + cue.length + 4;
  const filler = fillerSentences(opts.filler ?? repeatedFiller(), rng, opts.targetChars - fixed);
  const context = `${header}\n${insertAtDepths(filler, needles)}`;
  const answer = tracked.names.join(' ');
  return {
    task: 'vartrack',
    prompt: `${context}\n${question} ${cue}`,
    answer: ` ${answer}`,
    messages: chat(context, question, answer, cue),
    meta: { depth: start, hops, chains: all, filler: (opts.filler ?? repeatedFiller()).name },
  };
}
