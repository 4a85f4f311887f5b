import type { Rng } from './rng';
import { chat, type TaskOptions, type TaskSample } from './types';

export interface KvRecallOptions extends TaskOptions {
  /** Characters per key (default 4, lowercase letters) and digits per value (default 4). */
  keyChars?: number;
  valueDigits?: number;
  /** Number of queries answered in the prompt before the final one (MQAR-style, default 0). */
  shots?: number;
}

const LOWER = 'abcdefghijklmnopqrstuvwxyz';

/**
 * Key-value recall (associative recall / MQAR): a dense list of `key: value` lines, then a
 * query for one key; `shots` earlier queries are answered inline, which gives a training
 * signal at every query. No filler: the list fills `targetChars`. `meta.depth` is the
 * relative position of the asked-for pair in the list.
 */
export function kvRecall(rng: Rng, opts: KvRecallOptions): TaskSample {
  const kc = opts.keyChars ?? 4;
  const vd = opts.valueDigits ?? 4;
  const lineLen = kc + 2 + vd + 1;
  const header = 'Here is a list of keys and values.';
  const shots = opts.shots ?? 0;
  const n = Math.max(2, Math.floor((opts.targetChars - header.length - (shots + 1) * (kc + vd + 12)) / lineLen));
  const seen = new Set<string>();
  const pairs: [string, string][] = [];
  while (pairs.length < n) {
    const k = rng.word(kc, LOWER);
    if (seen.has(k)) continue;
    seen.add(k);
    pairs.push([k, rng.digits(vd)]);
  }
  const target = opts.depth !== undefined ? Math.min(n - 1, Math.floor(opts.depth * n)) : rng.int(0, n - 1);
  const list = pairs.map(([k, v]) => `${k}: ${v}`).join('\n');
  const qa = Array.from({ length: shots }, () => {
    const [k, v] = pairs[rng.int(0, n - 1)]!;
    return `What is the value of ${k}? ${v}`;
  });
  const [tk, tv] = pairs[target]!;
  const question = `What is the value of ${tk}?`;
  const context = `${header}\n${list}`;
  const prompt = [context, ...qa, question].join('\n');
  return {
    task: 'kvrecall',
    prompt,
    answer: ` ${tv}`,
    messages: chat(context, question, tv),
    meta: { depth: n > 1 ? target / (n - 1) : 0, pairs: n, key: tk },
  };
}
