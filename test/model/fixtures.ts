/** Config JSONs as the real checkpoints ship them (hand-copied), and tiny test shapes. */
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ModelConfig } from '../../src/model/config';

export const SMOLLM2_135M_CONFIG = {
  architectures: ['LlamaForCausalLM'],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 0,
  eos_token_id: 0,
  hidden_act: 'silu',
  hidden_size: 576,
  initializer_range: 0.041666666666666664,
  intermediate_size: 1536,
  is_llama_config: true,
  max_position_embeddings: 8192,
  model_type: 'llama',
  num_attention_heads: 9,
  num_hidden_layers: 30,
  num_key_value_heads: 3,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_interleaved: false,
  rope_scaling: null,
  rope_theta: 100000,
  tie_word_embeddings: true,
  torch_dtype: 'bfloat16',
  transformers_version: '4.42.3',
  use_cache: true,
  vocab_size: 49152,
};

export const QWEN25_05B_CONFIG = {
  architectures: ['Qwen2ForCausalLM'],
  attention_dropout: 0.0,
  bos_token_id: 151643,
  eos_token_id: 151643,
  hidden_act: 'silu',
  hidden_size: 896,
  initializer_range: 0.02,
  intermediate_size: 4864,
  max_position_embeddings: 32768,
  max_window_layers: 24,
  model_type: 'qwen2',
  num_attention_heads: 14,
  num_hidden_layers: 24,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  sliding_window: 32768,
  tie_word_embeddings: true,
  torch_dtype: 'bfloat16',
  transformers_version: '4.40.1',
  use_cache: true,
  use_mrope: false,
  use_sliding_window: false,
  vocab_size: 151936,
};

export const LLAMA32_1B_INSTRUCT_CONFIG = {
  architectures: ['LlamaForCausalLM'],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 128000,
  eos_token_id: [128001, 128008, 128009],
  head_dim: 64,
  hidden_act: 'silu',
  hidden_size: 2048,
  initializer_range: 0.02,
  intermediate_size: 8192,
  max_position_embeddings: 131072,
  mlp_bias: false,
  model_type: 'llama',
  num_attention_heads: 32,
  num_hidden_layers: 16,
  num_key_value_heads: 8,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_scaling: {
    factor: 32.0,
    high_freq_factor: 4.0,
    low_freq_factor: 1.0,
    original_max_position_embeddings: 8192,
    rope_type: 'llama3',
  },
  rope_theta: 500000.0,
  tie_word_embeddings: true,
  torch_dtype: 'bfloat16',
  transformers_version: '4.45.0.dev0',
  use_cache: true,
  vocab_size: 128256,
};

export const TINYLLAMA_CHAT_CONFIG = {
  architectures: ['LlamaForCausalLM'],
  attention_bias: false,
  bos_token_id: 1,
  eos_token_id: 2,
  hidden_act: 'silu',
  hidden_size: 2048,
  initializer_range: 0.02,
  intermediate_size: 5632,
  max_position_embeddings: 2048,
  model_type: 'llama',
  num_attention_heads: 32,
  num_hidden_layers: 22,
  num_key_value_heads: 4,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_scaling: null,
  rope_theta: 10000.0,
  tie_word_embeddings: false,
  torch_dtype: 'bfloat16',
  transformers_version: '4.35.0',
  use_cache: true,
  vocab_size: 32000,
};

/** Llama 2's original config: no num_key_value_heads, no rope_theta (defaults apply). */
export const LLAMA2_7B_CONFIG = {
  architectures: ['LlamaForCausalLM'],
  bos_token_id: 1,
  eos_token_id: 2,
  hidden_act: 'silu',
  hidden_size: 4096,
  initializer_range: 0.02,
  intermediate_size: 11008,
  max_position_embeddings: 4096,
  model_type: 'llama',
  num_attention_heads: 32,
  num_hidden_layers: 32,
  pad_token_id: 0,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_scaling: null,
  tie_word_embeddings: false,
  torch_dtype: 'float16',
  transformers_version: '4.31.0.dev0',
  use_cache: true,
  vocab_size: 32000,
};

/** mlc-chat-config.json of SmolLM2-135M-Instruct-q0f16-MLC (model_config as MLC dumps it). */
export const SMOLLM2_135M_MLC_CONFIG = {
  version: '0.1.0',
  model_type: 'llama',
  quantization: 'q0f16',
  model_config: {
    hidden_size: 576,
    intermediate_size: 1536,
    num_attention_heads: 9,
    num_hidden_layers: 30,
    rms_norm_eps: 1e-5,
    vocab_size: 49152,
    tie_word_embeddings: true,
    position_embedding_base: 100000.0,
    rope_scaling: null,
    context_window_size: 8192,
    prefill_chunk_size: 2048,
    num_key_value_heads: 3,
    head_dim: 64,
    tensor_parallel_shards: 1,
    pipeline_parallel_stages: 1,
    max_batch_size: 128,
    disaggregation: false,
  },
  vocab_size: 49152,
  context_window_size: 8192,
  sliding_window_size: -1,
  prefill_chunk_size: 2048,
  attention_sink_size: -1,
  tensor_parallel_shards: 1,
  pipeline_parallel_stages: 1,
  temperature: 1.0,
  presence_penalty: 0.0,
  frequency_penalty: 0.0,
  repetition_penalty: 1.0,
  top_p: 1.0,
  tokenizer_files: ['tokenizer.json', 'vocab.json', 'merges.txt', 'tokenizer_config.json'],
  tokenizer_info: { token_postproc_method: 'byte_level', prepend_space_in_encode: false, strip_space_in_decode: false },
  conv_template: {
    name: 'chatml',
    system_template: '<|im_start|>system\n{system_message}<|im_end|>\n',
    system_message: 'You are a helpful AI assistant named SmolLM, trained by Hugging Face',
    roles: { user: '<|im_start|>user', assistant: '<|im_start|>assistant' },
    role_templates: { user: '{user_message}', assistant: '{assistant_message}', tool: '{tool_message}' },
    messages: [],
    seps: ['<|im_end|>\n'],
    role_content_sep: '\n',
    role_empty_sep: '\n',
    stop_str: ['<|im_end|>'],
    stop_token_ids: [2],
    function_string: '',
    use_function_calling: false,
  },
  pad_token_id: 2,
  bos_token_id: 1,
  eos_token_id: 2,
};

/** mlc-chat-config.json of Qwen2.5-0.5B-Instruct-q0f16-MLC. */
export const QWEN25_05B_MLC_CONFIG = {
  version: '0.1.0',
  model_type: 'qwen2',
  quantization: 'q0f16',
  model_config: {
    hidden_act: 'silu',
    hidden_size: 896,
    intermediate_size: 4864,
    num_attention_heads: 14,
    num_hidden_layers: 24,
    num_key_value_heads: 2,
    rms_norm_eps: 1e-6,
    rope_theta: 1000000.0,
    vocab_size: 151936,
    tie_word_embeddings: true,
    context_window_size: 32768,
    prefill_chunk_size: 2048,
    tensor_parallel_shards: 1,
    head_dim: 64,
    dtype: 'float32',
    max_batch_size: 128,
  },
  vocab_size: 151936,
  context_window_size: 32768,
  sliding_window_size: -1,
  prefill_chunk_size: 2048,
  attention_sink_size: -1,
  tensor_parallel_shards: 1,
  tokenizer_files: ['tokenizer.json', 'vocab.json', 'merges.txt', 'tokenizer_config.json'],
  conv_template: {
    name: 'qwen2',
    system_template: '<|im_start|>system\n{system_message}<|im_end|>\n',
    system_message: 'You are a helpful assistant.',
    roles: { user: '<|im_start|>user', assistant: '<|im_start|>assistant' },
    role_templates: { user: '{user_message}', assistant: '{assistant_message}', tool: '{tool_message}' },
    messages: [],
    seps: ['<|im_end|>\n'],
    role_content_sep: '\n',
    role_empty_sep: '\n',
    stop_str: ['<|endoftext|>', '<|im_end|>'],
    stop_token_ids: [151643, 151645],
    function_string: '',
    use_function_calling: false,
  },
  pad_token_id: 151643,
  bos_token_id: 151643,
  eos_token_id: [151645, 151643],
};

/** SmolLM2's shape scaled down: tied embeddings, GQA 3:1. */
export const TINY_SMOL: ModelConfig = {
  family: 'llama',
  vocabSize: 320,
  hiddenSize: 48,
  intermediateSize: 128,
  numLayers: 2,
  numHeads: 3,
  numKvHeads: 1,
  headDim: 16,
  rmsNormEps: 1e-5,
  ropeTheta: 100000,
  contextLength: 256,
  tieWordEmbeddings: true,
  attentionBias: false,
  bosTokenId: 0,
  eosTokenIds: [1],
};

/** Qwen2's shape scaled down: QKV bias, GQA 2:1, untied lm_head. */
export const TINY_QWEN: ModelConfig = {
  family: 'qwen2',
  vocabSize: 300,
  hiddenSize: 64,
  intermediateSize: 96,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 2,
  headDim: 16,
  rmsNormEps: 1e-6,
  ropeTheta: 1000000,
  contextLength: 512,
  tieWordEmbeddings: false,
  attentionBias: true,
  bosTokenId: 298,
  eosTokenIds: [299, 298],
};

export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'kvscope-model-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Serves `dir` over HTTP on 127.0.0.1 (404 for missing files); returns the base URL. */
export async function serveDir(dir: string, spaFallback = false): Promise<{ url: string; server: Server; requests: string[] }> {
  const requests: string[] = [];
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    requests.push(path);
    readFile(join(dir, path)).then(
      (data) => {
        res.writeHead(200, { 'content-length': String(data.byteLength), 'content-type': 'application/octet-stream' });
        // Several writes so the client sees a streamed body.
        const step = Math.max(1, Math.ceil(data.byteLength / 4));
        for (let i = 0; i < data.byteLength; i += step) res.write(data.subarray(i, i + step));
        res.end();
      },
      () => {
        if (spaFallback) {
          // Like a dev server with a single-page-app fallback: index.html, status 200.
          res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
          res.end('<!doctype html><html><body>app</body></html>');
          return;
        }
        res.writeHead(404);
        res.end('not found');
      },
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (typeof address !== 'object' || address === null) throw new Error('no address');
  return { url: `http://127.0.0.1:${address.port}/`, server, requests };
}
