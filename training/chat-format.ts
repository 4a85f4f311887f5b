/**
 * kvscope-tiny's special tokens and chat format. One place, used by the tokenizer trainer,
 * the data generator and the exporter (which writes the same template as Jinja into
 * tokenizer_config.json and as a conv_template into mlc-chat-config.json).
 */
import type { ChatMessage } from '../src/tasks/index';

export const SPECIAL_TOKENS = {
  bos: '<|bos|>',
  eos: '<|eos|>',
  pad: '<|pad|>',
  system: '<|system|>',
  user: '<|user|>',
  assistant: '<|assistant|>',
} as const;

/** `{{ bos }}` then, per turn, `<|role|>\n{content}<|eos|>`; generation starts after `<|assistant|>\n`. */
export const CHAT_TEMPLATE =
  "{{ bos_token }}{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' + message['content'] + eos_token }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}";

/** The same rendering in TypeScript (what CHAT_TEMPLATE produces), split at the last assistant turn. */
export function renderChat(messages: ChatMessage[]): { prompt: string; completion: string } {
  const last = messages[messages.length - 1];
  const history = last?.role === 'assistant' ? messages.slice(0, -1) : messages;
  let prompt = SPECIAL_TOKENS.bos;
  for (const m of history) prompt += `<|${m.role}|>\n${m.content}${SPECIAL_TOKENS.eos}`;
  prompt += `${SPECIAL_TOKENS.assistant}\n`;
  return { prompt, completion: last?.role === 'assistant' ? `${last.content}${SPECIAL_TOKENS.eos}` : '' };
}
