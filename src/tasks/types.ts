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
 * last (assistant) turn restates the cue and gives the answer ("The pass key is 12345"), or
 * is `answer.trim()` for tasks without a cue. Exact match compares the trimmed answer, in
 * chat format the trimmed assistant turn.
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

/**
 * The chat form of a task: the user turn holds the context and the question; the assistant
 * answers in a full sentence that restates the cue (`cue`, when given) before the answer, the
 * way the plain prompt ends, so a model that retrieves by matching what preceded a fact can
 * answer in either format.
 */
export function chat(context: string, question: string, answer: string, cue?: string): ChatMessage[] {
  return [
    { role: 'user', content: `${context}\n\n${question}` },
    { role: 'assistant', content: cue ? `${cue} ${answer.trim()}` : answer.trim() },
  ];
}
