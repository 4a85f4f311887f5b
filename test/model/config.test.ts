import { describe, expect, it } from 'vitest';
import { ModelLoadError, UnsupportedError } from '../../src/errors';
import { parseHfConfig, parseMlcConfig, toHfConfig, toMlcChatConfig } from '../../src/model/config';
import {
  LLAMA2_7B_CONFIG,
  LLAMA32_1B_INSTRUCT_CONFIG,
  QWEN25_05B_CONFIG,
  QWEN25_05B_MLC_CONFIG,
  SMOLLM2_135M_CONFIG,
  SMOLLM2_135M_MLC_CONFIG,
  TINYLLAMA_CHAT_CONFIG,
  TINY_QWEN,
  TINY_SMOL,
} from './fixtures';

function expectError(fn: () => unknown, cls: new (...args: never[]) => Error, code: string, message?: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(cls);
  expect((caught as { code: string }).code).toBe(code);
  if (message) expect((caught as Error).message).toMatch(message);
}

describe('parseHfConfig', () => {
  it('reads SmolLM2-135M (tied, GQA 3:1, head_dim from hidden/heads)', () => {
    expect(parseHfConfig(SMOLLM2_135M_CONFIG)).toEqual({
      family: 'llama',
      architecture: 'LlamaForCausalLM',
      vocabSize: 49152,
      hiddenSize: 576,
      intermediateSize: 1536,
      numLayers: 30,
      numHeads: 9,
      numKvHeads: 3,
      headDim: 64,
      rmsNormEps: 1e-5,
      ropeTheta: 100000,
      contextLength: 8192,
      tieWordEmbeddings: true,
      attentionBias: false,
      bosTokenId: 0,
      eosTokenIds: [0],
      torchDtype: 'bf16',
    });
  });

  it('reads Qwen2.5-0.5B (QKV bias, 14 heads over 2 KV heads)', () => {
    const c = parseHfConfig(QWEN25_05B_CONFIG);
    expect(c.family).toBe('qwen2');
    expect(c.attentionBias).toBe(true);
    expect(c.headDim).toBe(64);
    expect([c.numHeads, c.numKvHeads]).toEqual([14, 2]);
    expect(c.ropeTheta).toBe(1e6);
    expect(c.rmsNormEps).toBe(1e-6);
    expect(c.tieWordEmbeddings).toBe(true);
    expect(c.eosTokenIds).toEqual([151643]);
    expect(c.ropeScaling).toBeUndefined();
  });

  it('reads Llama-3.2-1B-Instruct: llama3 rope_scaling, explicit head_dim, EOS list', () => {
    const c = parseHfConfig(LLAMA32_1B_INSTRUCT_CONFIG);
    expect(c.ropeScaling).toEqual({
      type: 'llama3',
      factor: 32,
      lowFreqFactor: 1,
      highFreqFactor: 4,
      originalMaxPositionEmbeddings: 8192,
    });
    expect(c.headDim).toBe(64);
    expect(c.eosTokenIds).toEqual([128001, 128008, 128009]);
    expect(c.contextLength).toBe(131072);
    expect(c.ropeTheta).toBe(500000);
  });

  it('reads TinyLlama (untied, GQA 8:1) and Llama 2 with transformers defaults', () => {
    const t = parseHfConfig(TINYLLAMA_CHAT_CONFIG);
    expect([t.tieWordEmbeddings, t.numKvHeads, t.vocabSize, t.bosTokenId]).toEqual([false, 4, 32000, 1]);
    const l2 = parseHfConfig(LLAMA2_7B_CONFIG);
    expect(l2.numKvHeads).toBe(32); // defaults to num_attention_heads
    expect(l2.ropeTheta).toBe(10000); // LlamaConfig default
    expect(l2.headDim).toBe(128);
    expect(l2.torchDtype).toBe('f16');
  });

  it('defaults tie_word_embeddings to false for llama and qwen2 and accepts type: linear', () => {
    const { tie_word_embeddings: _t, ...noTie } = QWEN25_05B_CONFIG;
    expect(parseHfConfig(noTie).tieWordEmbeddings).toBe(false);
    const { tie_word_embeddings: _s, ...noTieSmol } = SMOLLM2_135M_CONFIG;
    expect(parseHfConfig(noTieSmol).tieWordEmbeddings).toBe(false);
    const linear = parseHfConfig({ ...TINYLLAMA_CHAT_CONFIG, rope_scaling: { type: 'linear', factor: 4 } });
    expect(linear.ropeScaling).toEqual({ type: 'linear', factor: 4 });
  });

  it('reads transformers >= 4.56 rope_parameters', () => {
    const { rope_scaling: _r, rope_theta: _t, ...rest } = LLAMA32_1B_INSTRUCT_CONFIG;
    const c = parseHfConfig({ ...rest, rope_parameters: { ...LLAMA32_1B_INSTRUCT_CONFIG.rope_scaling, rope_theta: 500000 } });
    expect(c.ropeTheta).toBe(500000);
    expect(c.ropeScaling?.type).toBe('llama3');
  });

  it('uses model_type when architectures is absent', () => {
    const { architectures: _a, ...rest } = QWEN25_05B_CONFIG;
    expect(parseHfConfig(rest).family).toBe('qwen2');
  });

  it('rejects unsupported architectures naming them', () => {
    expectError(
      () => parseHfConfig({ ...SMOLLM2_135M_CONFIG, architectures: ['MistralForCausalLM'], model_type: 'mistral' }),
      UnsupportedError,
      'unsupported-architecture',
      /MistralForCausalLM/,
    );
    const { architectures: _a, ...rest } = SMOLLM2_135M_CONFIG;
    expectError(() => parseHfConfig({ ...rest, model_type: 'gpt2' }), UnsupportedError, 'unsupported-architecture', /gpt2/);
    expectError(
      () => parseHfConfig({ ...TINYLLAMA_CHAT_CONFIG, rope_scaling: { rope_type: 'yarn', factor: 4 } }),
      UnsupportedError,
      'unsupported-architecture',
      /yarn/,
    );
    expectError(() => parseHfConfig({ ...TINYLLAMA_CHAT_CONFIG, hidden_act: 'gelu' }), UnsupportedError, 'unsupported-architecture', /gelu/);
    expectError(() => parseHfConfig({ ...TINYLLAMA_CHAT_CONFIG, attention_bias: true }), UnsupportedError, 'unsupported-architecture', /attention_bias/);
  });

  it('names missing and invalid fields', () => {
    const { hidden_size: _h, ...noHidden } = SMOLLM2_135M_CONFIG;
    expectError(() => parseHfConfig(noHidden), ModelLoadError, 'bad-config', /"hidden_size" is missing/);
    expectError(() => parseHfConfig({ ...SMOLLM2_135M_CONFIG, num_hidden_layers: -2 }), ModelLoadError, 'bad-config', /num_hidden_layers/);
    expectError(() => parseHfConfig({ ...SMOLLM2_135M_CONFIG, vocab_size: '49152' }), ModelLoadError, 'bad-config', /vocab_size/);
    expectError(() => parseHfConfig({ ...SMOLLM2_135M_CONFIG, num_key_value_heads: 2 }), ModelLoadError, 'bad-config', /num_key_value_heads/);
    expectError(() => parseHfConfig({ ...SMOLLM2_135M_CONFIG, eos_token_id: 'x' }), ModelLoadError, 'bad-config', /eos_token_id/);
    expectError(
      () => parseHfConfig({ ...LLAMA32_1B_INSTRUCT_CONFIG, rope_scaling: { rope_type: 'llama3', factor: 32 } }),
      ModelLoadError,
      'bad-config',
      /rope_scaling\.low_freq_factor/,
    );
    expectError(() => parseHfConfig([1, 2]), ModelLoadError, 'bad-config');
    const { architectures: _a, model_type: _m, ...anonymous } = SMOLLM2_135M_CONFIG;
    expectError(() => parseHfConfig(anonymous), ModelLoadError, 'bad-config', /model_type/);
  });

  it('round-trips through toHfConfig', () => {
    for (const c of [TINY_SMOL, TINY_QWEN, parseHfConfig(LLAMA32_1B_INSTRUCT_CONFIG), parseHfConfig(TINYLLAMA_CHAT_CONFIG)]) {
      const { architecture: _a, ...rest } = parseHfConfig(JSON.parse(JSON.stringify(toHfConfig(c))));
      const { architecture: _b, ...want } = c;
      expect(rest).toEqual(want);
    }
  });
});

describe('parseMlcConfig', () => {
  it('reads SmolLM2-135M q0f16 (position_embedding_base, tied)', () => {
    expect(parseMlcConfig(SMOLLM2_135M_MLC_CONFIG)).toEqual({
      family: 'llama',
      vocabSize: 49152,
      hiddenSize: 576,
      intermediateSize: 1536,
      numLayers: 30,
      numHeads: 9,
      numKvHeads: 3,
      headDim: 64,
      rmsNormEps: 1e-5,
      ropeTheta: 100000,
      contextLength: 8192,
      tieWordEmbeddings: true,
      attentionBias: false,
      bosTokenId: 1,
      eosTokenIds: [2],
      torchDtype: 'f16',
    });
  });

  it('reads Qwen2.5-0.5B q0f16 (rope_theta, bias, EOS list) and agrees with its HF config', () => {
    const mlc = parseMlcConfig(QWEN25_05B_MLC_CONFIG);
    const hf = parseHfConfig(QWEN25_05B_CONFIG);
    for (const k of ['family', 'vocabSize', 'hiddenSize', 'intermediateSize', 'numLayers', 'numHeads', 'numKvHeads', 'headDim', 'rmsNormEps', 'ropeTheta', 'contextLength', 'tieWordEmbeddings', 'attentionBias'] as const) {
      expect(mlc[k], k).toEqual(hf[k]);
    }
    expect(mlc.eosTokenIds).toEqual([151645, 151643]);
  });

  it('reads llama3 rope_scaling inside model_config and 0 meaning "derive"', () => {
    const c = parseMlcConfig({
      ...SMOLLM2_135M_MLC_CONFIG,
      model_config: {
        ...SMOLLM2_135M_MLC_CONFIG.model_config,
        head_dim: 0,
        num_key_value_heads: 0,
        rope_scaling: LLAMA32_1B_INSTRUCT_CONFIG.rope_scaling,
      },
    });
    expect(c.headDim).toBe(64);
    expect(c.numKvHeads).toBe(9);
    expect(c.ropeScaling?.type).toBe('llama3');
  });

  it('rejects quantized builds, unknown model types and missing fields', () => {
    expectError(() => parseMlcConfig({ ...QWEN25_05B_MLC_CONFIG, quantization: 'q3f16_1' }), UnsupportedError, 'unsupported-dtype', /q3f16_1/);
    expectError(() => parseMlcConfig({ ...QWEN25_05B_MLC_CONFIG, model_type: 'phi3' }), UnsupportedError, 'unsupported-architecture', /phi3/);
    const { model_config: _m, ...noModel } = QWEN25_05B_MLC_CONFIG;
    expectError(() => parseMlcConfig(noModel), ModelLoadError, 'bad-config', /model_config/);
    const { intermediate_size: _i, ...mc } = QWEN25_05B_MLC_CONFIG.model_config;
    expectError(() => parseMlcConfig({ ...QWEN25_05B_MLC_CONFIG, model_config: mc }), ModelLoadError, 'bad-config', /model_config\.intermediate_size/);
  });

  it('round-trips through toMlcChatConfig', () => {
    for (const c of [TINY_SMOL, TINY_QWEN, { ...TINY_QWEN, torchDtype: 'f16' as const }, parseHfConfig(LLAMA32_1B_INSTRUCT_CONFIG)]) {
      const { architecture: _a, ...want } = c;
      expect(parseMlcConfig(JSON.parse(JSON.stringify(toMlcChatConfig(c))))).toEqual(want);
    }
  });
});
