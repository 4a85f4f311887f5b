/** The synthetic task generators (src/tasks) shared by training and the evaluation harness. */
import { describe, expect, it } from 'vitest';
import { brownDocuments, nlpCorpusDocuments, untagBrown } from '../src/tasks/corpus-node';
import { Rng, TASKS, corpusFiller, copySpan, kvRecall, niah, passkey, recurrence, repeatedFiller, varTrack } from '../src/tasks/index';

const brown = corpusFiller('brown', brownDocuments('train').map((d) => d.sentences));

describe('task generators', () => {
  it('are deterministic per seed and differ across seeds', () => {
    for (const gen of Object.values(TASKS)) {
      const g = gen as (r: Rng, o: { targetChars: number; filler: typeof brown }) => unknown;
      const a = g(new Rng(5), { targetChars: 800, filler: brown });
      const b = g(new Rng(5), { targetChars: 800, filler: brown });
      const c = g(new Rng(6), { targetChars: 800, filler: brown });
      expect(a).toEqual(b);
      expect(a).not.toEqual(c);
    }
  });

  it('size the prompt to the target length', () => {
    for (const target of [500, 2000, 8000]) {
      for (const gen of [passkey, niah, varTrack, kvRecall, recurrence, copySpan]) {
        const s = gen(new Rng(target), { targetChars: target, filler: brown });
        expect(s.prompt.length, s.task).toBeGreaterThan(target * 0.8);
        expect(s.prompt.length, s.task).toBeLessThan(target * 1.25 + 200);
      }
    }
  });

  it('passkey: the key sits at the requested depth and is the answer', () => {
    const positions = [0, 0.25, 0.5, 0.75, 1].map((depth) => {
      const s = passkey(new Rng(1), { targetChars: 4000, depth, filler: repeatedFiller() });
      expect(s.prompt.endsWith('The pass key is')).toBe(true);
      expect(s.answer).toMatch(/^ \d{5}$/);
      // the chat answer restates the plain prompt's cue
      expect(s.messages.at(-1)).toEqual({ role: 'assistant', content: `The pass key is ${s.answer.trim()}` });
      return s.prompt.indexOf(`The pass key is ${s.answer.trim()}.`) / s.prompt.length;
    });
    for (let i = 1; i < positions.length; i++) expect(positions[i]!).toBeGreaterThan(positions[i - 1]!);
    expect(positions[0]!).toBeLessThan(0.05);
    expect(positions[4]!).toBeGreaterThan(0.9);
  });

  it('niah: every key has its own value and the asked one is the answer', () => {
    const s = niah(new Rng(3), { targetChars: 3000, keys: 4, filler: brown });
    const meta = s.meta as { keys: string[]; values: string[]; target: number };
    expect(new Set(meta.keys).size).toBe(4);
    meta.keys.forEach((k, i) => expect(s.prompt).toContain(`The special magic number for ${k} is: ${meta.values[i]}.`));
    expect(s.answer.trim()).toBe(meta.values[meta.target]);
    expect(s.prompt.endsWith(`The special magic number for ${meta.keys[meta.target]} is:`)).toBe(true);
  });

  it('niah sharedPrefix: the values share their first digits and nothing else changes', () => {
    const plain = niah(new Rng(5), { targetChars: 3000, keys: 4, filler: brown });
    const shared = niah(new Rng(5), { targetChars: 3000, keys: 4, filler: brown, sharedPrefix: 2 });
    const pv = (plain.meta as { values: string[] }).values;
    const sv = (shared.meta as { values: string[] }).values;
    sv.forEach((v, i) => {
      expect(v.slice(0, 2)).toBe(sv[0]!.slice(0, 2));
      expect(v.slice(2)).toBe(pv[i]!.slice(2));
    });
    expect(shared.meta.keys).toEqual(plain.meta.keys);
    expect(() => niah(new Rng(5), { targetChars: 3000, keys: 4, valueDigits: 6, sharedPrefix: 6 })).toThrow(/sharedPrefix/);
  });

  it('vartrack: the answer is the chain that starts at the asked value, in order', () => {
    const s = varTrack(new Rng(4), { targetChars: 3000, hops: 4, distractors: 2 });
    const names = s.answer.trim().split(' ');
    expect(names).toHaveLength(4);
    const value = (s.meta as { chains: { value: string }[] }).chains[0]!.value;
    let at = s.prompt.indexOf(`VAR ${names[0]} = ${value}.`);
    expect(at).toBeGreaterThan(0);
    for (let h = 1; h < names.length; h++) {
      const next = s.prompt.indexOf(`VAR ${names[h]} = VAR ${names[h - 1]}.`);
      expect(next).toBeGreaterThan(at);
      at = next;
    }
  });

  it('kvrecall and recurrence answers come from the context', () => {
    const k = kvRecall(new Rng(8), { targetChars: 1000, shots: 2 });
    expect(k.prompt).toContain(`${(k.meta as { key: string }).key}: ${k.answer.trim()}\n`);
    const r = recurrence(new Rng(9), { targetChars: 2000, items: 4, queries: 8 });
    const m = r.meta as { items: string[]; codes: string[]; order: number[] };
    expect(r.answer.trim().split(' ')).toEqual(m.order.map((i) => m.codes[i]));
    expect(m.order.slice(4)).toEqual(m.order.slice(0, 4)); // revisited with period 4
  });

  it('copy: the answer is a sentence of the context that begins with the quoted words', () => {
    const s = copySpan(new Rng(10), { targetChars: 2000, filler: brown });
    const opening = /begins with "([^"]+)"/.exec(s.prompt)![1]!;
    expect(s.answer.trim().startsWith(opening)).toBe(true);
    expect(s.prompt).toContain(s.answer.trim());
  });

  it('copy: a target too small for the header still gets a sentence to copy', () => {
    for (const targetChars of [40, 100, 160]) {
      const s = copySpan(new Rng(targetChars), { targetChars, filler: brown });
      const opening = /begins with "([^"]+)"/.exec(s.prompt)![1]!;
      expect(opening).not.toBe('undefined');
      expect(s.answer.trim().length).toBeGreaterThan(0);
      expect(s.answer.trim().startsWith(opening)).toBe(true);
      expect(s.prompt).toContain(s.answer.trim());
    }
  });
});

describe('corpora', () => {
  it('split Brown and nlp-corpus by document, disjointly', () => {
    const train = brownDocuments('train');
    const held = brownDocuments('heldout');
    expect(train.length + held.length).toBe(500);
    expect(held.length).toBeGreaterThan(40);
    const ids = new Set(train.map((d) => d.id));
    expect(held.some((d) => ids.has(d.id))).toBe(false);
    expect(nlpCorpusDocuments('heldout')).toHaveLength(10);
    expect(nlpCorpusDocuments('train')).toHaveLength(90);
  });

  it('strip Brown tags into plain text', () => {
    expect(untagBrown("The/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' ,/, it's/pps+bez fine/jj ./."))
      .toBe('The jury said "no evidence", it\'s fine.');
  });
});
