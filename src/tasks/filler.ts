import type { Rng } from './rng';

/**
 * Where the "haystack" text of a task comes from. Generators never hard-code their filler:
 * training uses one corpus split, the evaluation harness passes another (or the classic
 * repeated passkey sentences), so the same generator serves both.
 */
export interface FillerSource {
  readonly name: string;
  /** Consecutive sentences totalling at least `minChars` characters (joined by spaces). */
  sentences(rng: Rng, minChars: number): string[];
}

/** The filler of the original passkey test (Mohtashami & Jaggi, 2023): a few repeated lines. */
export function repeatedFiller(): FillerSource {
  const lines = [
    'The grass is green.',
    'The sky is blue.',
    'The sun is yellow.',
    'Here we go.',
    'There and back again.',
  ];
  return {
    name: 'repeated',
    sentences(_rng, minChars) {
      const out: string[] = [];
      let n = 0;
      for (let i = 0; n < minChars; i++) {
        const s = lines[i % lines.length]!;
        out.push(s);
        n += s.length + 1;
      }
      return out;
    },
  };
}

/**
 * Filler drawn from real documents (each an array of sentences): picks a random document and
 * a random start, and continues into further random documents until long enough.
 */
export function corpusFiller(name: string, documents: readonly (readonly string[])[]): FillerSource {
  const docs = documents.filter((d) => d.length > 0);
  if (docs.length === 0) throw new Error(`corpusFiller(${name}): no non-empty documents`);
  return {
    name,
    sentences(rng, minChars) {
      const out: string[] = [];
      let n = 0;
      while (n < minChars) {
        const doc = rng.pick(docs);
        let i = rng.int(0, Math.max(0, doc.length - 1));
        for (; i < doc.length && n < minChars; i++) {
          out.push(doc[i]!);
          n += doc[i]!.length + 1;
        }
      }
      return out;
    },
  };
}

/** Take sentences from `source` until their total length reaches `chars`. */
export function fillerSentences(source: FillerSource, rng: Rng, chars: number): string[] {
  return chars <= 0 ? [] : source.sentences(rng, chars);
}

/**
 * Insert `needles` between filler sentences at the given depths (0 = start, 1 = end),
 * returning the joined text. Depths are fractions of the filler's sentence count.
 */
export function insertAtDepths(filler: string[], needles: { text: string; depth: number }[]): string {
  const slots = filler.slice();
  const sorted = needles
    .map((n, i) => ({ ...n, i }))
    .sort((a, b) => a.depth - b.depth || a.i - b.i);
  // Slots are indices into the original filler; insert from the back so they stay valid
  // and needles keep their depth order (equal slots: the shallower needle comes first).
  for (let k = sorted.length - 1; k >= 0; k--) {
    const n = sorted[k]!;
    const at = Math.round(Math.min(1, Math.max(0, n.depth)) * filler.length);
    slots.splice(at, 0, n.text);
  }
  return slots.join(' ');
}
