/**
 * Node command line: `kvscope generate --model <dir|url> --prompt "..."`.
 * Streams the generated text to stdout and prints timings to stderr.
 */
import { parseArgs } from 'node:util';
import { Engine } from './engine/engine';
import { KvscopeError } from './errors';

const USAGE = `usage: kvscope generate --model <dir|url> (--prompt "..." | --chat "...") [options]
  --model <dir|url>     model directory (HF config.json + safetensors, or MLC mlc-chat-config.json + tensor-cache.json)
  --prompt <text>       raw text prompt
  --chat <text>         a user message, rendered with the model's chat template
  --max-tokens <n>      default 128
  --temperature <t>     default 0 (greedy)
  --top-k <k>  --top-p <p>  --seed <s>
  --context <n>         cache capacity in tokens (default min(model context, 4096))
  --chunk <n>           prefill chunk size (default 128)`;

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd !== 'generate') {
    console.error(USAGE);
    return cmd === '--help' || cmd === '-h' ? 0 : 2;
  }
  const { values } = parseArgs({
    args: rest,
    options: {
      model: { type: 'string' },
      prompt: { type: 'string' },
      chat: { type: 'string' },
      'max-tokens': { type: 'string', default: '128' },
      temperature: { type: 'string', default: '0' },
      'top-k': { type: 'string', default: '0' },
      'top-p': { type: 'string', default: '1' },
      seed: { type: 'string', default: '0' },
      context: { type: 'string' },
      chunk: { type: 'string' },
    },
  });
  if (!values.model || (values.prompt === undefined && values.chat === undefined)) {
    console.error(USAGE);
    return 2;
  }
  const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
  try {
    let lastPct = -1;
    const engine = await Engine.load({
      model: values.model,
      contextLength: num(values.context),
      prefillChunk: num(values.chunk),
      onProgress: (p) => {
        const pct = Math.floor(p.fraction * 100);
        if (p.stage === 'download' && pct !== lastPct && pct % 10 === 0) {
          lastPct = pct;
          process.stderr.write(`loading ${pct}% (${(p.loaded / 1e6).toFixed(1)} MB)\n`);
        }
      },
    });
    const prompt = values.chat !== undefined ? { messages: [{ role: 'user' as const, content: values.chat }] } : values.prompt!;
    const gen = engine.generate(prompt, {
      maxTokens: num(values['max-tokens']),
      temperature: num(values.temperature),
      topK: num(values['top-k']),
      topP: num(values['top-p']),
      seed: num(values.seed),
    });
    let r = await gen.next();
    while (!r.done) {
      process.stdout.write(r.value.text);
      r = await gen.next();
    }
    const s = r.value;
    process.stdout.write('\n');
    process.stderr.write(
      `[${s.finishReason}] prompt ${s.promptTokens} tok, prefill ${s.prefillTokensPerSecond.toFixed(1)} tok/s; ` +
        `generated ${s.completionTokens} tok, decode ${s.decodeTokensPerSecond.toFixed(1)} tok/s; adapter ${engine.gpu.adapterInfo.vendor} ${engine.gpu.adapterInfo.architecture}\n`,
    );
    engine.unload();
    return 0;
  } catch (e) {
    if (e instanceof KvscopeError) {
      console.error(`error [${e.code}]: ${e.message}`);
      return 1;
    }
    throw e;
  }
}
