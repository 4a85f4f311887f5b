/**
 * The demo's layer-sharing (KVSharer) panel: runs a calibration on the loaded model in the
 * engine worker with a progress bar, shows the accepted pairs (layer -> the earlier layer whose
 * cache it reads), the similarity reached and the KV bytes the map saves, applies it to the
 * next turn (`engine.setSharing`), downloads it as `kv-sharing.json` or loads a saved one, and
 * reports the KV allocation measured from the cache snapshots once a map is in effect.
 * main.ts mounts it on the empty `#sharing-panel` section and forwards page state, model
 * changes and snapshots to it.
 */
import type { CacheSnapshot, CalibrationProgressEvent, KvscopeEngine, SharingMap, SharingSavings } from '../api/index';
import { formatBytes } from './format';

export interface CalibrationHooks {
  /** The loaded engine, or null. */
  engine(): KvscopeEngine | null;
  /** The panel runs a calibration (true) or finished one (false): the page disables chatting and loading meanwhile. */
  setBusy(busy: boolean): void;
}

export interface CalibrationPanel {
  /** The page's state changed (`idle`, `loading`, `ready`, `generating`, `calibrating`, `error`). */
  setPageState(state: string): void;
  /** A model was loaded (or is being replaced, with null): the previous result no longer applies. */
  modelChanged(engine: KvscopeEngine | null): void;
  /** A cache snapshot arrived: shows the measured KV allocation and the layers in effect. */
  snapshot(s: CacheSnapshot): void;
}

type AnyMap = SharingMap | Record<string, number>;

/** The number of calibration texts shipped with kvscope (src/kv/calibration-texts.ts). */
const SHIPPED_SAMPLES = 30;

function describeError(e: unknown): string {
  const err = e as { name?: string; code?: string; message?: string };
  const kind = err?.code ? `${err.name ?? 'Error'} (${err.code})` : (err?.name ?? 'Error');
  return `${kind}: ${err?.message ?? String(e)}`;
}

/** The (layer, source) pairs of a full map (`{ map, model, ... }`) or a bare `{ layer: source }`. */
export function sharingPairs(m: AnyMap): [number, number][] {
  const raw = (typeof (m as SharingMap).map === 'object' && (m as SharingMap).map !== null ? (m as SharingMap).map : m) as Record<string, number>;
  return Object.entries(raw)
    .map(([k, v]) => [Number(k), v] as [number, number])
    .sort((a, b) => a[0] - b[0]);
}

function isFullMap(m: AnyMap): m is SharingMap {
  return typeof (m as SharingMap).map === 'object' && (m as SharingMap).map !== null;
}

function make<K extends keyof HTMLElementTagNameMap>(tag: K, props: Partial<HTMLElementTagNameMap[K]> = {}, ...children: (Node | string)[]): HTMLElementTagNameMap[K] {
  const e = Object.assign(document.createElement(tag), props);
  e.append(...children);
  return e;
}

function numberInput(id: string, value: number, min: number, max: number, step: number): HTMLInputElement {
  return make('input', { id, type: 'number', value: String(value), min: String(min), max: String(max), step: String(step) });
}

export function mountCalibrationPanel(root: HTMLElement, hooks: CalibrationHooks): CalibrationPanel {
  const threshold = numberInput('sharing-threshold', 0.5, -1, 1, 0.05);
  const target = numberInput('sharing-target', 25, 0, 50, 1);
  const targetLayers = make('span', { id: 'sharing-target-layers', className: 'hint' });
  const samples = numberInput('sharing-samples', SHIPPED_SAMPLES, 1, SHIPPED_SAMPLES, 1);
  const sampleTokens = numberInput('sharing-tokens', 64, 4, 512, 4);
  const order = make('select', { id: 'sharing-order' }, new Option('dissimilar-first (paper)', 'dissimilar-first'), new Option('similar-first (ablation)', 'similar-first'));
  const calibrate = make('button', { id: 'calibrate', type: 'button', textContent: 'Calibrate', disabled: true });
  const cancel = make('button', { id: 'calibration-cancel', type: 'button', textContent: 'Cancel', hidden: true });
  const progress = make('progress', { id: 'calibration-progress', max: 1, value: 0 });
  const progressText = make('span', { id: 'calibration-progress-text' });
  const progressRow = make('div', { id: 'calibration-progress-row', className: 'row', hidden: true }, progress, progressText);
  const summary = make('p', { id: 'calibration-summary' });
  const pairs = make('ul', { id: 'calibration-pairs', className: 'pairs' });
  const similarity = make('dd', { id: 'calibration-similarity' });
  const saved = make('dd', { id: 'calibration-saved' });
  const apply = make('button', { id: 'apply-sharing', type: 'button', textContent: 'Apply to the next turn', disabled: true });
  const download = make('button', { id: 'download-sharing', type: 'button', textContent: 'Download JSON', disabled: true });
  const result = make(
    'div',
    { id: 'calibration-result', hidden: true },
    summary,
    pairs,
    make('dl', { className: 'sharing-metrics' }, make('dt', {}, 'Similarity reached'), similarity, make('dt', {}, 'KV bytes saved'), saved),
    make('div', { className: 'row' }, apply, download),
  );
  const file = make('input', { id: 'sharing-file', type: 'file', accept: '.json,application/json', disabled: true });
  const clear = make('button', { id: 'clear-sharing', type: 'button', textContent: 'Remove sharing', disabled: true });
  const status = make('p', { id: 'sharing-status', className: 'status' });
  status.setAttribute('aria-live', 'polite');
  const measured = make('p', { id: 'sharing-measured', className: 'hint' });

  root.append(
    make(
      'p',
      { className: 'hint' },
      'A shared layer computes its own queries but attends to an earlier layer’s keys and values and stores no cache. ' +
        'Calibration (in the engine worker) measures each layer’s mean keys and values on held-out text, then tries the most dissimilar pairs first and keeps a pair only while the final hidden states stay within the similarity threshold of the original model’s. ' +
        'It empties the cache: the next turn prefills the conversation again.',
    ),
    make('div', { className: 'row' }, make('label', {}, 'Similarity threshold ', threshold), make('label', {}, 'Layers to share (%) ', target), targetLayers),
    make('div', { className: 'row' }, make('label', {}, 'Samples ', samples), make('label', {}, 'Tokens each ', sampleTokens), make('label', {}, 'Order ', order)),
    make('div', { className: 'row' }, calibrate, cancel),
    progressRow,
    result,
    make('div', { className: 'row' }, make('label', {}, 'Load a saved map ', file), clear),
    status,
    measured,
  );

  let pageState = 'idle';
  let running: AbortController | null = null;
  /** The map shown in the result (calibrated or loaded), and what it saves under the next turn's policy. */
  let shown: { map: AnyMap; name: string; savings: SharingSavings } | null = null;
  /** KV bytes allocated in the last snapshot without sharing, and its policy (the "before" of the measured line). */
  let unshared: { bytes: number; policy: string } | null = null;

  const engine = () => hooks.engine();

  function setStatus(text: string, error = false): void {
    status.textContent = text;
    status.classList.toggle('error', error);
  }

  function updateTargetLayers(): void {
    const e = engine();
    const f = Number(target.value) / 100;
    if (!e || !Number.isFinite(f)) {
      targetLayers.textContent = '';
      return;
    }
    const L = e.model.numLayers;
    const n = Math.min(Math.round(f * L), Math.floor(L / 2));
    targetLayers.textContent = `= ${n} of ${L} layers`;
  }

  function refresh(): void {
    const e = engine();
    const calibrating = running !== null;
    const idle = !!e && !calibrating && pageState !== 'loading';
    calibrate.disabled = !e || calibrating || pageState !== 'ready';
    cancel.hidden = !calibrating;
    apply.disabled = !idle || !shown || sharingPairs(shown.map).length === 0;
    download.disabled = !shown;
    file.disabled = !idle;
    clear.disabled = !idle || !e?.sharing;
    for (const input of [threshold, target, samples, sampleTokens, order]) input.disabled = calibrating;
  }

  function showResult(map: AnyMap, name: string, savings: SharingSavings): void {
    shown = { map, name, savings };
    const list = sharingPairs(map);
    const e = engine();
    const L = e?.model.numLayers ?? 0;
    const settings = isFullMap(map) ? map.settings : undefined;
    summary.textContent =
      list.length === 0
        ? `${name}: no pair kept the similarity at or above the threshold, so no layer is shared.`
        : `${name}: ${list.length} of ${L} layers share an earlier layer’s cache${settings ? ` (threshold ${settings.threshold}, target ${settings.targetSharedLayers}, ${settings.order}, ${settings.samples} samples)` : ''}.`;
    pairs.replaceChildren(
      ...list.map(([layer, source]) => {
        const li = make('li', {}, `layer ${layer} → reads layer ${source}’s cache`);
        li.dataset.layer = String(layer);
        li.dataset.source = String(source);
        return li;
      }),
    );
    const sim = isFullMap(map) ? map.similarity : undefined;
    similarity.textContent =
      sim === undefined ? '– (not in this map)' : `${sim.toFixed(4)} (mean cosine similarity of the final hidden states, shared vs. original${settings ? `; threshold ${settings.threshold}` : ''})`;
    if (sim !== undefined) similarity.dataset.value = String(sim);
    const pct = savings.kvBytesUnshared > 0 ? (100 * savings.kvBytesSaved) / savings.kvBytesUnshared : 0;
    saved.textContent = `${formatBytes(savings.kvBytesSaved)} of ${formatBytes(savings.kvBytesUnshared)} (${pct.toFixed(1)}%; ${formatBytes(savings.kvBytesAllocated)} allocated with the map, under the next turn’s policy ${e?.policy.name ?? ''})`;
    saved.dataset.saved = String(savings.kvBytesSaved);
    saved.dataset.allocated = String(savings.kvBytesAllocated);
    saved.dataset.unshared = String(savings.kvBytesUnshared);
    result.hidden = false;
    refresh();
  }

  function showProgress(p: CalibrationProgressEvent): void {
    progress.value = p.fraction;
    progressRow.dataset.fraction = String(p.fraction);
    progressText.textContent =
      p.stage === 'statistics'
        ? `Mean keys and values: sample ${p.done} / ${p.total}`
        : p.stage === 'search'
          ? `Searching pairs: ${p.done} / ${p.total} considered`
          : 'Done';
  }

  async function runCalibration(): Promise<void> {
    const e = engine();
    if (!e || running) return;
    const ac = new AbortController();
    running = ac;
    hooks.setBusy(true);
    refresh();
    progressRow.hidden = false;
    showProgress({ stage: 'statistics', done: 0, total: Number(samples.value) || SHIPPED_SAMPLES, fraction: 0 });
    setStatus('Calibrating in the engine worker…');
    const t0 = performance.now();
    try {
      const map = await e.calibrateSharing({
        threshold: Number(threshold.value),
        targetFraction: Number(target.value) / 100,
        sampleCount: Number(samples.value),
        sampleTokens: Number(sampleTokens.value),
        order: order.value as 'dissimilar-first' | 'similar-first',
        signal: ac.signal,
        onProgress: showProgress,
      });
      if (engine() !== e) return;
      const savings = await e.sharingSavings(map);
      showResult(map, 'Calibrated', savings);
      setStatus(`Calibration finished in ${((performance.now() - t0) / 1000).toFixed(1)} s. Apply it to use it from the next turn.`);
    } catch (err) {
      if ((err as Error)?.name === 'AbortError') setStatus('Calibration cancelled; nothing changed (the cache was emptied, so the next turn prefills the conversation again).');
      else setStatus(`Calibration failed: ${describeError(err)}`, true);
      progressRow.hidden = true;
    } finally {
      running = null;
      hooks.setBusy(false);
      refresh();
    }
  }

  async function applyShown(): Promise<void> {
    const e = engine();
    if (!e || !shown) return;
    try {
      // The policy may have changed since the result was shown: say what it saves now.
      const savings = await e.sharingSavings(shown.map);
      await e.setSharing(shown.map);
      showResult(shown.map, shown.name, savings);
      const list = sharingPairs(shown.map);
      setStatus(
        `Applied: ${list.map(([l, s]) => `layer ${l} reads layer ${s}`).join(', ')}. From the next turn the cache allocates ${formatBytes(savings.kvBytesAllocated)} instead of ${formatBytes(savings.kvBytesUnshared)} (the conversation is prefilled again under it).`,
      );
      root.dataset.applied = list.map(([l, s]) => `${l}>${s}`).join(' ');
    } catch (err) {
      setStatus(describeError(err), true);
    }
    refresh();
  }

  function downloadShown(): void {
    if (!shown) return;
    const blob = new Blob([`${JSON.stringify(shown.map, null, 2)}\n`], { type: 'application/json' });
    const url = URL.createObjectURL(blob);
    const a = make('a', { href: url, download: 'kv-sharing.json' });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  async function loadFile(): Promise<void> {
    const e = engine();
    const f = file.files?.[0];
    file.value = '';
    if (!e || !f) return;
    try {
      let parsed: unknown;
      try {
        parsed = JSON.parse(await f.text());
      } catch (cause) {
        throw new Error(`${f.name} is not valid JSON (${(cause as Error).message}).`);
      }
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error(`${f.name} is not a sharing map ({ map: { layer: source }, model, ... } or { layer: source }).`);
      // Validated by the engine against this model (shape, chains, later layers).
      const savings = await e.sharingSavings(parsed as AnyMap);
      showResult(parsed as AnyMap, `Loaded ${f.name}`, savings);
      setStatus(`Loaded ${f.name}. Apply it to use it from the next turn.`);
    } catch (err) {
      setStatus(`Could not use ${f.name}: ${describeError(err)}`, true);
    }
  }

  async function clearSharing(): Promise<void> {
    const e = engine();
    if (!e) return;
    try {
      await e.setSharing(null);
      delete root.dataset.applied;
      setStatus('Sharing removed: from the next turn every layer has its own cache again.');
    } catch (err) {
      setStatus(describeError(err), true);
    }
    refresh();
  }

  calibrate.addEventListener('click', () => void runCalibration());
  cancel.addEventListener('click', () => running?.abort());
  apply.addEventListener('click', () => void applyShown());
  download.addEventListener('click', downloadShown);
  file.addEventListener('change', () => void loadFile());
  clear.addEventListener('click', () => void clearSharing());
  target.addEventListener('input', updateTargetLayers);
  refresh();

  return {
    setPageState(state: string): void {
      pageState = state;
      refresh();
    },
    modelChanged(): void {
      running?.abort();
      shown = null;
      unshared = null;
      result.hidden = true;
      progressRow.hidden = true;
      measured.textContent = '';
      delete root.dataset.applied;
      setStatus('');
      updateTargetLayers();
      refresh();
    },
    snapshot(s: CacheSnapshot): void {
      const list: string[] = [];
      s.cacheSource.forEach((src, l) => {
        if (src !== l) list.push(`${l}>${src}`);
      });
      measured.dataset.allocated = String(s.kvBytesAllocated);
      measured.dataset.sharing = list.join(' ');
      const policy = JSON.stringify(s.policy);
      if (list.length === 0) {
        unshared = { bytes: s.kvBytesAllocated, policy };
        measured.textContent = `In effect: no layer sharing; KV allocated ${formatBytes(s.kvBytesAllocated)}.`;
        return;
      }
      // Compared only under the same policy: a policy change alone changes the allocation too.
      const before =
        unshared && unshared.policy === policy && unshared.bytes > s.kvBytesAllocated
          ? ` (${formatBytes(unshared.bytes)} before sharing: ${formatBytes(unshared.bytes - s.kvBytesAllocated)} less)`
          : '';
      measured.textContent = `In effect: ${list.length} shared layer${list.length > 1 ? 's' : ''} (${list.map((p) => p.replace('>', ' reads ')).join(', ')}); KV allocated ${formatBytes(s.kvBytesAllocated)}${before}.`;
    },
  };
}
