/**
 * Bits per byte of held-out text under the kvscope runtime: teacher-forced next-token
 * cross-entropy (float64 log-softmax of the GPU's logits) summed in nats, divided by ln 2 and
 * by the UTF-8 bytes of the predicted tokens. The same sum as `training/eval.py`'s held-out
 * Brown figure (PyTorch), so the two can be compared number for number.
 */
import type { Engine } from '../engine/engine';
import { InvalidArgumentError } from '../errors';
import { bytesToUnicode } from '../model/bpe-trainer';
import { logSoftmax64 } from './kl';

interface TokenizerJsonLike {
  model?: { type?: string; vocab?: Record<string, number> };
  added_tokens?: { id: number; content: string }[];
}

/**
 * Bytes each token id stands for in a byte-level BPE `tokenizer.json` (GPT-2 style byte map):
 * a vocabulary entry's characters map back to one byte each; an added (special) token counts
 * its content's UTF-8 bytes. Ids that no entry names are -1.
 */
export function tokenByteLengths(tokenizerJson: unknown): Int32Array {
  const tj = tokenizerJson as TokenizerJsonLike;
  const vocab = tj?.model?.vocab;
  if (!vocab || typeof vocab !== 'object') throw new InvalidArgumentError('tokenizer.json has no model.vocab: bits per byte needs a byte-level BPE vocabulary.');
  const byteChars = new Set(bytesToUnicode());
  const special = new Map((tj.added_tokens ?? []).map((t) => [t.id, t.content]));
  let maxId = -1;
  for (const id of Object.values(vocab)) maxId = Math.max(maxId, id);
  for (const id of special.keys()) maxId = Math.max(maxId, id);
  const out = new Int32Array(maxId + 1).fill(-1);
  const enc = new TextEncoder();
  for (const [piece, id] of Object.entries(vocab)) {
    if (special.has(id)) continue;
    let n = 0;
    for (const ch of piece) {
      if (!byteChars.has(ch)) throw new InvalidArgumentError(`token ${id} (${JSON.stringify(piece)}) has a character outside the byte-level map: not a byte-level BPE vocabulary.`);
      n++;
    }
    out[id] = n;
  }
  for (const [id, content] of special) out[id] = enc.encode(content).length;
  return out;
}

export interface BitsPerByteResult {
  /** nats / ln 2 / bytes */
  bitsPerByte: number;
  /** Summed next-token cross-entropy (nats) over every predicted token. */
  nats: number;
  /** UTF-8 bytes of the predicted tokens (every row's tokens after its first). */
  bytes: number;
  /** Predicted tokens. */
  tokens: number;
  rows: number;
}

/**
 * Feeds each row (token ids, starting with BOS or any first token) into a reset engine one
 * token at a time (`Engine.teacherForce`, the decode path, under whatever cache policy the
 * engine has, a pending `setPolicy` included) and scores every next token. Every id is checked
 * against the byte lengths and the model's vocabulary before a row runs. `onRow` reports progress
 * after each row.
 */
export async function textBitsPerByte(
  engine: Engine,
  rows: number[][],
  byteLengths: Int32Array,
  onRow?: (done: number, total: number, partial: BitsPerByteResult) => void,
): Promise<BitsPerByteResult> {
  if (rows.length === 0) throw new InvalidArgumentError('bits per byte needs at least one row of tokens.');
  const vocabSize = engine.config.vocabSize;
  let nats = 0;
  let bytes = 0;
  let tokens = 0;
  const result = (): BitsPerByteResult => ({ bitsPerByte: nats / Math.LN2 / bytes, nats, bytes, tokens, rows: rows.length });
  for (let r = 0; r < rows.length; r++) {
    const ids = rows[r]!;
    if (ids.length < 2) throw new InvalidArgumentError(`row ${r} has ${ids.length} token(s); bits per byte needs at least 2 (a context and a token to predict).`);
    for (const id of ids) {
      const n = Number.isInteger(id) ? byteLengths[id] : undefined;
      if (n === undefined || n < 0) throw new InvalidArgumentError(`row ${r}: token id ${id} is not in the tokenizer's vocabulary.`);
      if (id >= vocabSize) throw new InvalidArgumentError(`row ${r}: token id ${id} is past the model's vocabulary of ${vocabSize}.`);
    }
    engine.reset();
    const logits = await engine.teacherForce(ids.slice(0, -1));
    for (let i = 0; i < logits.length; i++) {
      const next = ids[i + 1]!;
      nats -= logSoftmax64(logits[i]!)[next]!;
      bytes += byteLengths[next]!;
      tokens++;
    }
    onRow?.(r + 1, rows.length, result());
  }
  engine.reset();
  if (bytes === 0) throw new InvalidArgumentError('the predicted tokens hold no bytes.');
  return result();
}
