import { createServer } from 'node:http';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ModelLoadError } from '../../src/errors';
import { MemorySource, NodeDirSource, UrlSource, joinPath, mapLimit, openModelSource } from '../../src/model/source';
import { withTempDir } from './fixtures';

describe('openModelSource', () => {
  it('treats scheme URLs as URLs and the rest as local paths in Node', () => {
    expect(openModelSource('https://huggingface.co/HuggingFaceTB/SmolLM2-135M/resolve/main')).toBeInstanceOf(UrlSource);
    expect(openModelSource(new URL('http://127.0.0.1:8000/models/x/'))).toBeInstanceOf(UrlSource);
    expect(openModelSource('/models/x')).toBeInstanceOf(NodeDirSource);
    expect(openModelSource('models/x')).toBeInstanceOf(NodeDirSource);
    expect(openModelSource('C:\\models\\x')).toBeInstanceOf(NodeDirSource);
    const file = openModelSource('file:///tmp/my%20model');
    expect(file).toBeInstanceOf(NodeDirSource);
    expect(file.location).toBe('/tmp/my model');
  });

  it('joins file names onto URLs and paths', () => {
    expect(openModelSource('https://h.co/a/b').describe('config.json')).toBe('https://h.co/a/b/config.json');
    expect(openModelSource('https://h.co/a/b/').describe('config.json')).toBe('https://h.co/a/b/config.json');
    expect(joinPath('/x/', 'y')).toBe('/x/y');
    expect(joinPath('/x', 'y')).toBe('/x/y');
  });
});

describe('reading files', () => {
  it('streams a body without Content-Length, reporting growing progress', async () => {
    const body = new Uint8Array(100_000).map((_, i) => i * 7);
    const server = createServer((_req, res) => {
      res.writeHead(200, { 'transfer-encoding': 'chunked' });
      for (let i = 0; i < body.length; i += 10_000) res.write(body.subarray(i, i + 10_000));
      res.end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const port = (server.address() as { port: number }).port;
      const events: [number, number][] = [];
      const got = await new UrlSource(`http://127.0.0.1:${port}/m`).read('w.bin', (l, t) => events.push([l, t]));
      expect(got).toEqual(body);
      expect(events.at(-1)).toEqual([body.length, body.length]);
      for (let i = 1; i < events.length; i++) expect(events[i]![0]).toBeGreaterThanOrEqual(events[i - 1]![0]);
    } finally {
      server.close();
    }
  });

  it('reads local files with progress, and says which path is missing', async () => {
    await withTempDir(async (dir) => {
      await writeFile(join(dir, 'a.bin'), new Uint8Array([1, 2, 3]));
      const src = openModelSource(dir);
      const events: [number, number][] = [];
      expect(await src.read('a.bin', (l, t) => events.push([l, t]))).toEqual(new Uint8Array([1, 2, 3]));
      expect(events.at(-1)).toEqual([3, 3]);
      expect(await src.readOptional('b.bin')).toBeUndefined();
      const e = await src.read('b.bin').catch((x: unknown) => x);
      expect(e).toBeInstanceOf(ModelLoadError);
      expect((e as ModelLoadError).code).toBe('bad-model-url');
      expect((e as Error).message).toContain(join(dir, 'b.bin'));
      const dirAsFile = await openModelSource(join(dir, '..')).read(dir.split('/').pop()!).catch((x: unknown) => x);
      expect((dirAsFile as ModelLoadError).code).toBe('bad-model-url');
    });
  });

  it('MemorySource and mapLimit', async () => {
    const m = new MemorySource(new Map([['x', new Uint8Array([9])]]), 'memory:/m');
    expect(m.describe('x')).toBe('memory:/m/x');
    await expect(m.read('y')).rejects.toThrow(/memory:\/m\/y/);
    let inFlight = 0;
    let peak = 0;
    const out = await mapLimit([5, 1, 3, 2, 4], 2, async (v) => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      await new Promise((r) => setTimeout(r, v));
      inFlight--;
      return v * 10;
    });
    expect(out).toEqual([50, 10, 30, 20, 40]);
    expect(peak).toBe(2);
  });
});
