/**
 * Turning a case into token ids: the task generator is asked for a prompt of some number of
 * characters, tokenized with the model's tokenizer, and re-asked with a corrected length
 * until prompt + answer + generated tokens fit the context and fill at least 95% of it. Every
 * attempt restarts from the case's seed, so the result depends only on the case and the
 * tokenizer. Runs in Node; the browser back end receives the ids.
 */
import type { ChatFormatter } from '../model/chat-template';
import type { Tokenizer } from '../model/tokenizer';
import { Rng, TASKS, type FillerSource, type TaskSample } from '../tasks/index';
import type { EvalCase } from './spec';

export interface PreparedPrompt {
  ids: number[];
  /**
   * The answer the scorer expects (leading space included, as the generator gives it); in chat
   * format the assistant turn (which restates the task's cue before the answer), with a space.
   */
  expected: string;
  maxTokens: number;
  /** Generator metadata (depth, keys, ...). */
  meta: Record<string, unknown>;
}

export interface PromptTools {
  tokenizer: Tokenizer;
  chat?: ChatFormatter;
  filler(name: string): FillerSource;
}

export class PromptSizeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PromptSizeError';
  }
}

function encodePrompt(c: EvalCase, s: TaskSample, tools: PromptTools): number[] {
  if (c.model.format === 'chat') {
    if (!tools.chat) throw new PromptSizeError(`Model '${c.model.id}' has no chat template; use format 'plain'.`);
    const r = tools.chat.render(s.messages.slice(0, -1), { addGenerationPrompt: true });
    return [...r.prefixTokenIds, ...tools.tokenizer.encode(r.prompt, { addBos: false })];
  }
  return tools.tokenizer.encode(s.prompt, { addBos: true });
}

function expectedAnswer(c: EvalCase, s: TaskSample): string {
  return c.model.format === 'chat' ? ` ${s.messages.at(-1)!.content}` : s.answer;
}

export function preparePrompt(c: EvalCase, tools: PromptTools): PreparedPrompt {
  const gen = TASKS[c.task] as unknown as (rng: Rng, o: Record<string, unknown>) => TaskSample;
  const filler = tools.filler(c.filler);
  let charsPerToken = 3.2;
  let best: { ids: number[]; s: TaskSample; maxTokens: number } | undefined;
  for (let attempt = 0; attempt < 16; attempt++) {
    const targetChars = Math.max(40, Math.floor((c.contextLength - 16) * charsPerToken));
    const s = gen(new Rng(c.seed), { ...c.taskParams, targetChars, depth: c.depth, filler });
    const ids = encodePrompt(c, s, tools);
    const answerTokens = tools.tokenizer.encode(expectedAnswer(c, s), { addBos: false }).length;
    const maxTokens = c.maxTokens ?? answerTokens + 2;
    const room = c.contextLength - maxTokens;
    if (ids.length <= room && (!best || ids.length > best.ids.length)) best = { ids, s, maxTokens };
    if (ids.length <= room && ids.length >= 0.95 * room) break;
    charsPerToken *= (room / ids.length) * (ids.length > room ? 0.99 : 1.0);
  }
  if (!best) throw new PromptSizeError(`Could not fit a '${c.task}' prompt into ${c.contextLength} tokens (seed ${c.seed}).`);
  return { ids: best.ids, expected: expectedAnswer(c, best.s), maxTokens: best.maxTokens, meta: best.s.meta };
}
