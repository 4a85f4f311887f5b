/**
 * Chat prompts from a list of messages: Hugging Face Jinja `chat_template`s (through
 * @huggingface/jinja) and MLC `conv_template` objects (mlc-llm's conversation protocol).
 */
import { Template } from '@huggingface/jinja';
import { InvalidArgumentError, ModelLoadError } from '../errors';

export type ChatRole = 'system' | 'user' | 'assistant' | 'tool';

export interface ChatMessage {
  role: ChatRole;
  content: string;
}

export interface RenderedPrompt {
  /** The prompt text; tokenize it without adding BOS again (templates place it themselves). */
  prompt: string;
  /** Token ids to put before the tokenized prompt (MLC `system_prefix_token_ids`, e.g. BOS). */
  prefixTokenIds: number[];
  /** Generation stops when one of these strings appears in the output. */
  stopStrings: string[];
  /** Generation stops on one of these token ids. */
  stopTokenIds: number[];
}

export interface RenderOptions {
  /** Append the assistant's turn header so the model answers next (default true). */
  addGenerationPrompt?: boolean;
}

/** MLC's conversation template (mlc-llm `protocol/conversation_protocol.py`, web-llm `conversation.ts`). */
export interface MlcConvTemplate {
  name?: string;
  system_template: string;
  system_message: string;
  system_prefix_token_ids?: number[];
  add_role_after_system_message: boolean;
  roles: Record<string, string>;
  role_templates: Record<string, string>;
  seps: string[];
  role_content_sep: string;
  role_empty_sep: string;
  stop_str: string[];
  stop_token_ids: number[];
}

function isStringRecord(v: unknown): v is Record<string, string> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && Object.values(v).every((s) => typeof s === 'string');
}

/** Validates an MLC `conv_template` object, applying the protocol's defaults. */
export function parseMlcConvTemplate(json: unknown, where = 'conv_template'): MlcConvTemplate {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new ModelLoadError('bad-config', `${where}: expected an object.`);
  }
  const o = json as Record<string, unknown>;
  const field = (name: string, problem: string) => new ModelLoadError('bad-config', `${where}: field "${name}" ${problem}.`);
  const str = (name: string, fallback: string): string => {
    const v = o[name];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'string') throw field(name, 'must be a string');
    return v;
  };
  const ids = (name: string): number[] | undefined => {
    const v = o[name];
    if (v === undefined || v === null) return undefined;
    if (!Array.isArray(v) || !v.every((x) => Number.isInteger(x) && x >= 0)) throw field(name, 'must be a list of token ids');
    return v as number[];
  };
  if (!isStringRecord(o['roles'])) throw field('roles', 'must map role names to strings');
  const roles = o['roles'];
  if (roles['user'] === undefined || roles['assistant'] === undefined) throw field('roles', 'must define "user" and "assistant"');
  const seps = o['seps'];
  if (!Array.isArray(seps) || seps.length < 1 || seps.length > 2 || !seps.every((s) => typeof s === 'string')) {
    throw field('seps', 'must be a list of 1 or 2 strings');
  }
  const roleTemplates = o['role_templates'] ?? {};
  if (!isStringRecord(roleTemplates)) throw field('role_templates', 'must map role names to strings');
  const stopStr = o['stop_str'] ?? [];
  if (!Array.isArray(stopStr) || !stopStr.every((s) => typeof s === 'string')) throw field('stop_str', 'must be a list of strings');
  const addRole = o['add_role_after_system_message'] ?? true;
  if (typeof addRole !== 'boolean') throw field('add_role_after_system_message', 'must be true or false');
  const conv: MlcConvTemplate = {
    system_template: str('system_template', '{system_message}'),
    system_message: str('system_message', ''),
    add_role_after_system_message: addRole,
    roles: { ...roles },
    // Defaults the protocol fills in, overridden by the model's own templates.
    role_templates: { user: '{user_message}', assistant: '{assistant_message}', tool: '{tool_message}', ...roleTemplates },
    seps: [...(seps as string[])],
    role_content_sep: str('role_content_sep', ''),
    role_empty_sep: str('role_empty_sep', ''),
    stop_str: [...(stopStr as string[])],
    stop_token_ids: ids('stop_token_ids') ?? [],
  };
  if (typeof o['name'] === 'string') conv.name = o['name'];
  const prefix = ids('system_prefix_token_ids');
  if (prefix) conv.system_prefix_token_ids = prefix;
  return conv;
}

const PLACEHOLDER: Record<string, string> = {
  system: '{system_message}',
  user: '{user_message}',
  assistant: '{assistant_message}',
  tool: '{tool_message}',
};

/**
 * Renders messages with an MLC conv_template, as mlc-llm's `Conversation.as_prompt` does:
 * system, then per message `role + role_content_sep + template(content) + sep` (seps[1] after
 * assistant turns), then `assistant role + role_empty_sep`. A leading system message replaces
 * the template's `system_message` (as web-llm does).
 */
export function renderMlcConvTemplate(conv: MlcConvTemplate, messages: ChatMessage[], options: RenderOptions = {}): RenderedPrompt {
  let systemMessage = conv.system_message;
  let rest = messages;
  if (messages[0]?.role === 'system') {
    systemMessage = messages[0].content;
    rest = messages.slice(1);
  }
  const system = conv.system_template.replace(PLACEHOLDER['system']!, systemMessage);
  const seps = conv.seps.length === 1 ? [conv.seps[0]!, conv.seps[0]!] : conv.seps;
  let prompt = system;
  rest.forEach((m, i) => {
    if (m.role === 'system') throw new InvalidArgumentError(`messages[${messages.length - rest.length + i}]: a system message may only come first.`);
    const roleName = conv.roles[m.role];
    if (roleName === undefined) {
      throw new InvalidArgumentError(`messages[${messages.length - rest.length + i}]: role "${m.role}" is not in this conv_template (roles: ${Object.keys(conv.roles).join(', ')}).`);
    }
    const sep = seps[m.role === 'assistant' ? 1 : 0]!;
    const prefix = !conv.add_role_after_system_message && system !== '' && i === 0 ? '' : roleName + conv.role_content_sep;
    const template = conv.role_templates[m.role] ?? PLACEHOLDER[m.role]!;
    prompt += prefix + template.replace(PLACEHOLDER[m.role]!, m.content) + sep;
  });
  if (options.addGenerationPrompt ?? true) prompt += conv.roles['assistant'] + conv.role_empty_sep;
  // Function-calling placeholders are unused here.
  prompt = prompt.split('{function_string}').join('');
  return {
    prompt,
    prefixTokenIds: [...(conv.system_prefix_token_ids ?? [])],
    stopStrings: [...conv.stop_str],
    stopTokenIds: [...conv.stop_token_ids],
  };
}

export interface HfTemplateContext {
  bosToken?: string;
  eosToken?: string;
  /** Ids that end generation (the config's EOS list). */
  eosTokenIds?: number[];
  /** Extra template variables (e.g. `tools`, `date_string`). */
  extra?: Record<string, unknown>;
}

/** A compiled Hugging Face Jinja chat template. */
export class HfChatTemplate {
  private readonly template: Template;
  constructor(
    readonly source: string,
    private readonly context: HfTemplateContext = {},
  ) {
    try {
      this.template = new Template(source);
    } catch (e) {
      throw new ModelLoadError('bad-config', `chat_template does not parse: ${(e as Error).message}`, { cause: e });
    }
  }

  render(messages: ChatMessage[], options: RenderOptions = {}): RenderedPrompt {
    let prompt: string;
    try {
      prompt = this.template.render({
        ...this.context.extra,
        messages: messages.map((m) => ({ role: m.role, content: m.content })),
        add_generation_prompt: options.addGenerationPrompt ?? true,
        bos_token: this.context.bosToken ?? '',
        eos_token: this.context.eosToken ?? '',
      });
    } catch (e) {
      // Includes the template's own raise_exception('...') (provided by @huggingface/jinja).
      throw new InvalidArgumentError(`chat template failed to render: ${(e as Error).message}`);
    }
    return { prompt, prefixTokenIds: [], stopStrings: [], stopTokenIds: [...(this.context.eosTokenIds ?? [])] };
  }
}

/** Renders messages with a Hugging Face Jinja chat template (compiles it each call). */
export function renderHfChatTemplate(
  template: string,
  messages: ChatMessage[],
  options: RenderOptions & HfTemplateContext = {},
): RenderedPrompt {
  return new HfChatTemplate(template, options).render(messages, options);
}

/** A token given in tokenizer_config.json, either "<s>" or {"content": "<s>", ...}. */
export function specialTokenText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'object' && value !== null && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content;
  }
  return undefined;
}

export interface ChatFormatter {
  render(messages: ChatMessage[], options?: RenderOptions): RenderedPrompt;
}

/**
 * The chat formatter a loaded model calls for: its HF chat_template when it has one, else its
 * MLC conv_template. Undefined when the model has neither (a base model).
 */
export function createChatFormatter(model: {
  chatTemplate?: string;
  mlcConvTemplate?: MlcConvTemplate;
  tokenizerConfig?: Record<string, unknown>;
  config: { eosTokenIds: number[] };
}): ChatFormatter | undefined {
  if (model.chatTemplate !== undefined) {
    const ctx: HfTemplateContext = { eosTokenIds: model.config.eosTokenIds };
    const bos = specialTokenText(model.tokenizerConfig?.['bos_token']);
    const eos = specialTokenText(model.tokenizerConfig?.['eos_token']);
    if (bos !== undefined) ctx.bosToken = bos;
    if (eos !== undefined) ctx.eosToken = eos;
    return new HfChatTemplate(model.chatTemplate, ctx);
  }
  const conv = model.mlcConvTemplate;
  if (conv) return { render: (messages, options) => renderMlcConvTemplate(conv, messages, options) };
  return undefined;
}
