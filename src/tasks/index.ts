/**
 * Synthetic long-context tasks, shared by the training data generator (training/gen-data.ts)
 * and the evaluation harness. Every generator is pure given its Rng: same seed, same sample.
 */
export { Rng } from './rng';
export { type FillerSource, repeatedFiller, corpusFiller, fillerSentences, insertAtDepths } from './filler';
export type { ChatMessage, TaskOptions, TaskSample, TaskGenerator } from './types';
export { passkey, type PasskeyOptions } from './passkey';
export { niah, type NiahOptions } from './niah';
export { varTrack, type VarTrackOptions } from './vartrack';
export { kvRecall, type KvRecallOptions } from './kvrecall';
export { copySpan, type CopyOptions } from './copy';
export { recurrence, type RecurrenceOptions } from './recurrence';

import { copySpan } from './copy';
import { kvRecall } from './kvrecall';
import { niah } from './niah';
import { passkey } from './passkey';
import { recurrence } from './recurrence';
import type { TaskGenerator } from './types';
import { varTrack } from './vartrack';

export const TASKS = {
  passkey,
  niah,
  vartrack: varTrack,
  kvrecall: kvRecall,
  copy: copySpan,
  recurrence,
} as const satisfies Record<string, TaskGenerator<never>>;

export type TaskName = keyof typeof TASKS;
