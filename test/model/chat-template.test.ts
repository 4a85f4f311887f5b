import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, ModelLoadError } from '../../src/errors';
import {
  type ChatMessage,
  HfChatTemplate,
  createChatFormatter,
  parseMlcConvTemplate,
  renderHfChatTemplate,
  renderMlcConvTemplate,
} from '../../src/model/chat-template';
import { QWEN25_05B_MLC_CONFIG, SMOLLM2_135M_MLC_CONFIG } from './fixtures';

const SMOLLM2_TEMPLATE =
  "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

const TINYLLAMA_TEMPLATE =
  "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";

const LLAMA3_TEMPLATE =
  "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

const chat: ChatMessage[] = [
  { role: 'user', content: 'Hi' },
  { role: 'assistant', content: 'Hello!' },
  { role: 'user', content: 'How are you?' },
];

describe('Hugging Face chat templates', () => {
  it('renders SmolLM2 (ChatML with a default system prompt)', () => {
    const r = renderHfChatTemplate(SMOLLM2_TEMPLATE, chat, { eosTokenIds: [2] });
    expect(r.prompt).toBe(
      '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' +
        '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nHow are you?<|im_end|>\n' +
        '<|im_start|>assistant\n',
    );
    expect(r.stopTokenIds).toEqual([2]);
    expect(r.prefixTokenIds).toEqual([]);
    const noGen = renderHfChatTemplate(SMOLLM2_TEMPLATE, chat.slice(0, 1), { addGenerationPrompt: false });
    expect(noGen.prompt.endsWith('<|im_start|>user\nHi<|im_end|>\n')).toBe(true);
  });

  it('renders TinyLlama (Zephyr) with trim_blocks/lstrip_blocks semantics and eos_token', () => {
    const r = new HfChatTemplate(TINYLLAMA_TEMPLATE, { eosToken: '</s>' }).render([
      { role: 'system', content: 'You are a friendly chatbot' },
      { role: 'user', content: 'Hi' },
    ]);
    expect(r.prompt).toBe('<|system|>\nYou are a friendly chatbot</s>\n<|user|>\nHi</s>\n<|assistant|>\n');
  });

  it('renders Llama 3 with bos_token', () => {
    const r = renderHfChatTemplate(LLAMA3_TEMPLATE, [{ role: 'user', content: ' Hi ' }], { bosToken: '<|begin_of_text|>' });
    expect(r.prompt).toBe(
      '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n',
    );
  });

  it('turns raise_exception and broken templates into typed errors', () => {
    const strict = "{% if messages[0]['role'] == 'assistant' %}{{ raise_exception('Conversation must start with the user') }}{% endif %}ok";
    expect(renderHfChatTemplate(strict, chat).prompt).toBe('ok');
    expect(() => renderHfChatTemplate(strict, [{ role: 'assistant', content: 'x' }])).toThrow(InvalidArgumentError);
    expect(() => renderHfChatTemplate(strict, [{ role: 'assistant', content: 'x' }])).toThrow(/must start with the user/);
    let e: unknown;
    try {
      new HfChatTemplate('{% for m in messages %}');
    } catch (err) {
      e = err;
    }
    expect(e).toBeInstanceOf(ModelLoadError);
    expect((e as ModelLoadError).code).toBe('bad-config');
  });
});

describe('MLC conv_template', () => {
  it('renders ChatML (SmolLM2) like mlc-llm as_prompt, with stop strings and ids', () => {
    const conv = parseMlcConvTemplate(SMOLLM2_135M_MLC_CONFIG.conv_template);
    const r = renderMlcConvTemplate(conv, chat);
    expect(r.prompt).toBe(
      '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' +
        '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nHow are you?<|im_end|>\n' +
        '<|im_start|>assistant\n',
    );
    expect(r.stopStrings).toEqual(['<|im_end|>']);
    expect(r.stopTokenIds).toEqual([2]);
    // The same conversation through the model's HF template gives the same text.
    expect(renderHfChatTemplate(SMOLLM2_TEMPLATE, chat).prompt).toBe(r.prompt);
  });

  it('a leading system message replaces system_message (Qwen2.5)', () => {
    const conv = parseMlcConvTemplate(QWEN25_05B_MLC_CONFIG.conv_template);
    const r = renderMlcConvTemplate(conv, [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }]);
    expect(r.prompt).toBe('<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n');
    expect(r.stopTokenIds).toEqual([151643, 151645]);
  });

  it('renders Llama 3 with system_prefix_token_ids and role_content_sep', () => {
    const conv = parseMlcConvTemplate({
      name: 'llama-3',
      system_template: '<|start_header_id|>system<|end_header_id|>\n\n{system_message}<|eot_id|>',
      system_message: 'You are a helpful, respectful and honest assistant.',
      roles: { user: '<|start_header_id|>user', assistant: '<|start_header_id|>assistant' },
      seps: ['<|eot_id|>'],
      role_content_sep: '<|end_header_id|>\n\n',
      role_empty_sep: '<|end_header_id|>\n\n',
      stop_str: [],
      stop_token_ids: [128001, 128009],
      system_prefix_token_ids: [128000],
    });
    const r = renderMlcConvTemplate(conv, [{ role: 'user', content: 'Hi' }]);
    expect(r.prompt).toBe(
      '<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful, respectful and honest assistant.<|eot_id|>' +
        '<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n',
    );
    expect(r.prefixTokenIds).toEqual([128000]);
  });

  it('renders Llama 2 style: two seps and no role after the system message', () => {
    const conv = parseMlcConvTemplate({
      name: 'llama-2',
      system_template: '[INST] <<SYS>>\n{system_message}\n<</SYS>>\n\n',
      system_message: 'SYS',
      roles: { user: '[INST]', assistant: '[/INST]' },
      seps: [' ', ' </s><s>'],
      role_content_sep: ' ',
      role_empty_sep: ' ',
      stop_str: ['[INST]'],
      stop_token_ids: [2],
      system_prefix_token_ids: [1],
      add_role_after_system_message: false,
    });
    expect(renderMlcConvTemplate(conv, chat).prompt).toBe(
      '[INST] <<SYS>>\nSYS\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] How are you? [/INST] ',
    );
    expect(renderMlcConvTemplate(conv, chat, { addGenerationPrompt: false }).prompt).toBe(
      '[INST] <<SYS>>\nSYS\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] How are you? ',
    );
  });

  it('applies role_templates and rejects bad templates and roles', () => {
    const conv = parseMlcConvTemplate({ roles: { user: 'Q:', assistant: 'A:' }, role_templates: { user: '<<{user_message}>>' }, seps: ['\n'], role_content_sep: ' ' });
    expect(renderMlcConvTemplate(conv, [{ role: 'user', content: 'x' }]).prompt).toBe('Q: <<x>>\nA:');
    expect(() => renderMlcConvTemplate(conv, [{ role: 'tool', content: 'x' }])).toThrow(InvalidArgumentError);
    expect(() => renderMlcConvTemplate(conv, [{ role: 'user', content: 'x' }, { role: 'system', content: 'late' }])).toThrow(/system message/);
    expect(() => parseMlcConvTemplate({ roles: { user: 'U', assistant: 'A' }, seps: [] })).toThrow(/seps/);
    expect(() => parseMlcConvTemplate({ roles: { user: 'U' }, seps: ['\n'] })).toThrow(/roles/);
  });
});

describe('createChatFormatter', () => {
  it('prefers the HF template (with tokenizer_config bos/eos), falls back to the MLC conv_template', () => {
    const hf = createChatFormatter({
      chatTemplate: LLAMA3_TEMPLATE,
      tokenizerConfig: { bos_token: { content: '<|begin_of_text|>', special: true } },
      config: { eosTokenIds: [128001, 128009] },
    })!;
    const r = hf.render([{ role: 'user', content: 'Hi' }]);
    expect(r.prompt.startsWith('<|begin_of_text|><|start_header_id|>user')).toBe(true);
    expect(r.stopTokenIds).toEqual([128001, 128009]);
    const mlc = createChatFormatter({ mlcConvTemplate: parseMlcConvTemplate(QWEN25_05B_MLC_CONFIG.conv_template), config: { eosTokenIds: [] } })!;
    expect(mlc.render([{ role: 'user', content: 'Hi' }]).stopStrings).toEqual(['<|endoftext|>', '<|im_end|>']);
    expect(createChatFormatter({ config: { eosTokenIds: [] } })).toBeUndefined();
  });
});
