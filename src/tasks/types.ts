import type { FillerSource } from './filler';
import type { Rng } from './rng';

/** One chat turn, as in OpenAI's / WebLLM's chat API. */
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/**
 * A generated sample. `prompt + answer` is the plain-text form (the prompt ends with a cue
 * such as "The pass key is"); `messages` is the same task phrased as a chat exchange whose
 * last (assistant) turn is `answer.trim()`. Exact match compares the trimmed answer.
 */
export interface TaskSample {
  task: string;
  prompt: string;
  answer: string;
  messages: ChatMessage[];
  meta: Record<string, unknown>;
}

export interface TaskOptions {
  /** Approximate total length of the prompt in characters (filler is sized to reach it). */
  targetChars: number;
  /** Where the key fact sits, 0 = start of the context, 1 = end. Random when omitted. */
  depth?: number;
  /** Haystack text; each task has a sensible default. */
  filler?: FillerSource;
}

export type TaskGenerator<O extends TaskOptions = TaskOptions> = (rng: Rng, opts: O) => TaskSample;

export function chat(context: string, question: string, answer: string): ChatMessage[] {
  return [
    { role: 'user', content: `${context}\n\n${question}` },
    { role: 'assistant', content: answer.trim() },
  ];
}
