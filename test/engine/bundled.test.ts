import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Engine } from '../../src/engine/engine';
import { loadModel } from '../../src/model/weights';
import { toFloat32 } from '../../src/model/tensor';
import { ReferenceModel } from '../../src/reference/forward';
import { testGpu } from '../gpu';
import { argmax } from './fixtures';

const dir = join(__dirname, '..', '..', 'models', 'kvscope-tiny');

describe.skipIf(!existsSync(join(dir, 'hf', 'config.json')))('the bundled model', () => {
  it('greedy chat generation in kvscope (HF and MLC layouts) follows the reference forward token for token', async () => {
    const gpu = await testGpu();
    const loaded = await loadModel(join(dir, 'hf'));
    const hf = await Engine.load({ model: loaded, gpu, contextLength: 256, prefillChunk: 64 });
    const mlc = await Engine.load({ model: join(dir, 'mlc'), gpu, contextLength: 256, prefillChunk: 64 });
    const messages = [{ role: 'user' as const, content: 'The grass is green. The sky is blue. What colour is the grass?' }];
    const { ids: prompt } = hf.encodeChat(messages);
    const a = await hf.generateText({ messages }, { maxTokens: 16 });
    const b = await mlc.generateText({ messages }, { maxTokens: 16 });
    expect(b.ids).toEqual(a.ids);
    expect(a.stats.completionTokens + (a.stats.finishReason === 'stop' ? 1 : 0)).toBeGreaterThan(0);
    const ref = new ReferenceModel(loaded.config, new Map([...loaded.weights].map(([k, t]) => [k, toFloat32(t)])), 256);
    const logits = ref.forwardAll(prompt);
    let cur = argmax(logits.at(-1)!);
    const want: number[] = [];
    let pos = prompt.length;
    while (want.length < 16 && !loaded.config.eosTokenIds.includes(cur)) {
      want.push(cur);
      cur = argmax(ref.forward(cur, pos++));
    }
    expect(a.ids).toEqual(want);
    console.log(`bundled model, greedy reply: ${JSON.stringify(a.text)} (${a.ids.length} tokens, ${a.stats.finishReason})`);
    hf.unload();
    mlc.unload();
  });
});
