/**
 * The chat demo: load a model into the engine worker (progress bar), chat with streamed
 * answers, pick a cache policy for the next turn, and watch the layers x KV-heads view.
 * The page's main thread only touches the DOM; the engine runs in the worker.
 */
import { headRolesSpec } from '../kv/head-roles';
import { createEngine, type ChatMessage, type CacheSnapshot, type CompletionUsage, type KvscopeEngine, type PolicyInfo, type PolicyParamInfo } from '../api/index';
import { cellAt, drawHeatmap } from './heatmap';
import { formatBytes } from './format';
import { mountModelPicker } from './model-picker';
import { mountCalibrationPanel } from './calibration';

const BUNDLED_MODEL = 'models/kvscope-tiny/hf/';

function el<T extends HTMLElement = HTMLElement>(id: string): T {
  const e = document.getElementById(id);
  if (!e) throw new Error(`#${id} is missing from index.html`);
  return e as T;
}

const ui = {
  webgpuMissing: el('webgpu-missing'),
  modelChoice: el<HTMLSelectElement>('model-choice'),
  modelUrlRow: el('model-url-row'),
  modelUrl: el<HTMLInputElement>('model-url'),
  contextLength: el<HTMLInputElement>('context-length'),
  load: el<HTMLButtonElement>('load'),
  progressRow: el('progress-row'),
  progress: el<HTMLProgressElement>('progress'),
  progressText: el('progress-text'),
  modelStatus: el('model-status'),
  policy: el<HTMLSelectElement>('policy'),
  policyDescription: el('policy-description'),
  budgetRow: el('budget-row'),
  budget: el<HTMLInputElement>('budget'),
  policyParams: el('policy-params'),
  applyPolicy: el<HTMLButtonElement>('apply-policy'),
  policyStatus: el('policy-status'),
  messages: el('messages'),
  form: el<HTMLFormElement>('chat-form'),
  prompt: el<HTMLTextAreaElement>('prompt'),
  maxTokens: el<HTMLInputElement>('max-tokens'),
  temperature: el<HTMLInputElement>('temperature'),
  send: el<HTMLButtonElement>('send'),
  stop: el<HTMLButtonElement>('stop'),
  newChat: el<HTMLButtonElement>('new-chat'),
  heatmap: el<HTMLCanvasElement>('heatmap'),
  heatmapNote: el('heatmap-note'),
  heatmapTip: el('heatmap-tip'),
  m: {
    prefill: el('m-prefill'),
    decode: el('m-decode'),
    tokens: el('m-tokens'),
    kv: el('m-kv'),
    kvAlloc: el('m-kv-alloc'),
    footprint: el('m-footprint'),
  },
};

type PageState = 'idle' | 'loading' | 'ready' | 'generating' | 'calibrating' | 'error';

let engine: KvscopeEngine | null = null;
let conversation: ChatMessage[] = [];
let policies: PolicyInfo[] = [];
let lastSnapshot: CacheSnapshot | null = null;
let drawPending = false;
let snapshotsSeen = 0;
const calibration = mountCalibrationPanel(el('sharing-panel'), { engine: () => engine, setBusy: (busy) => setState(busy ? 'calibrating' : 'ready') });

function setState(s: PageState): void {
  document.body.dataset.state = s;
  const ready = s === 'ready';
  ui.send.disabled = !ready;
  ui.stop.disabled = s !== 'generating';
  ui.load.disabled = s === 'loading' || s === 'generating' || s === 'calibrating';
  ui.policy.disabled = !engine || s === 'loading';
  ui.applyPolicy.disabled = !engine || s === 'loading';
  calibration.setPageState(s);
}

function describeError(e: unknown): string {
  const err = e as { name?: string; code?: string; message?: string };
  const kind = err?.code ? `${err.name ?? 'Error'} (${err.code})` : (err?.name ?? 'Error');
  return `${kind}: ${err?.message ?? String(e)}`;
}

// WebLLM's catalogue in #model-choice (src/ui/model-picker.ts).
const picker = mountModelPicker(ui.modelChoice, el('model-choice-note'));

function modelLocation(): string {
  return picker.urlOf(ui.modelChoice.value) ?? (ui.modelChoice.value === 'bundled' ? BUNDLED_MODEL : ui.modelUrl.value.trim());
}

function showProgress(stage: string, loaded: number, total: number, fraction: number): void {
  ui.progressRow.hidden = false;
  ui.progress.value = stage === 'upload' ? 1 : fraction;
  ui.progressText.textContent =
    stage === 'upload' ? `Uploaded ${formatBytes(total)} to the GPU` : total > 0 ? `${formatBytes(loaded)} / ${formatBytes(total)}` : `${formatBytes(loaded)}`;
}

async function loadModel(): Promise<void> {
  const refused = picker.refusal(ui.modelChoice.value);
  if (refused) {
    ui.modelStatus.textContent = refused;
    ui.modelStatus.classList.add('error');
    return;
  }
  const location = modelLocation();
  if (!location) {
    ui.modelStatus.textContent = 'Enter the URL of a model directory first.';
    ui.modelStatus.classList.add('error');
    return;
  }
  setState('loading');
  ui.modelStatus.classList.remove('error');
  ui.modelStatus.textContent = `Loading ${location}…`;
  showProgress('download', 0, 0, 0);
  const previous = engine;
  engine = null;
  calibration.modelChanged(null);
  await previous?.unload().catch(() => undefined);
  try {
    const ctx = Number(ui.contextLength.value);
    const e = await createEngine({
      model: location,
      // The bundled model is served by this page's server and may be retrained in place: no Cache Storage copy.
      ...(ui.modelChoice.value === 'bundled' ? { cache: false } : {}),
      ...(Number.isInteger(ctx) && ctx > 0 ? { contextLength: ctx } : {}),
      onProgress: (p) => showProgress(p.stage, p.loaded, p.total, p.fraction),
    });
    engine = e;
    const m = e.model;
    ui.modelStatus.textContent = `Loaded ${m.source}: ${m.family}, ${m.numLayers} layers, ${m.numHeads} heads / ${m.numKvHeads} KV heads, context ${m.contextLength} tokens, ${formatBytes(m.weightBytes)} of weights.`;
    conversation = [];
    ui.messages.replaceChildren();
    lastSnapshot = null;
    snapshotsSeen = 0;
    e.onCacheSnapshot(onSnapshot, { everyTokens: 8, everyMs: 200, positions: true });
    await populatePolicies(e);
    calibration.modelChanged(e);
    setState('ready');
  } catch (err) {
    ui.modelStatus.textContent = `Could not load ${location}: ${describeError(err)}`;
    ui.modelStatus.classList.add('error');
    ui.progressRow.hidden = true;
    setState(engine ? 'ready' : 'idle');
  }
}

// ------------------------------------------------------------------ policies

async function populatePolicies(e: KvscopeEngine): Promise<void> {
  policies = await e.listPolicies();
  ui.policy.replaceChildren(...policies.map((p) => new Option(p.name, p.name)));
  ui.policy.value = e.policy.name;
  renderPolicyParams();
  ui.policyStatus.textContent =
    policies.length === 1 && policies[0]!.name === 'full'
      ? 'This build has only the full cache (no eviction): the cache manager with its policies is not part of it yet.'
      : `Current policy: ${e.policy.name}.`;
}

function paramInput(p: PolicyParamInfo): HTMLElement {
  const label = document.createElement('label');
  label.textContent = `${p.name} `;
  if (p.description) label.title = p.description;
  let input: HTMLInputElement | HTMLSelectElement;
  if (p.options) {
    input = document.createElement('select');
    input.append(...p.options.map((o) => new Option(o, o)));
    if (p.default !== undefined) input.value = String(p.default);
  } else {
    input = document.createElement('input');
    if (p.type === 'boolean') {
      input.type = 'checkbox';
      input.checked = p.default === true;
    } else {
      input.type = p.type === 'string' ? 'text' : 'number';
      if (p.type === 'integer') input.step = '1';
      if (p.min !== undefined) input.min = String(p.min);
      if (p.max !== undefined) input.max = String(p.max);
      if (p.default !== undefined) input.value = String(p.default);
    }
  }
  input.dataset.param = p.name;
  input.dataset.type = p.type;
  label.append(input);
  return label;
}

function renderPolicyParams(): void {
  const info = policies.find((p) => p.name === ui.policy.value);
  ui.policyDescription.textContent = info?.description ?? '';
  ui.budgetRow.hidden = !info || !info.usesBudget;
  ui.policyParams.replaceChildren(...(info?.params ?? []).filter((p) => p.name !== 'budget').map(paramInput));
  // Learned policies take their trained inputs from files shipped beside the model.
  const companion = COMPANIONS[ui.policy.value];
  if (companion) {
    const label = document.createElement('label');
    label.textContent = `${companion.label} `;
    const sel = document.createElement('select');
    sel.dataset.companion = '1';
    sel.append(...companion.files.map((f) => new Option(f, f)));
    label.append(sel);
    ui.policyParams.append(label);
  }
}

/** Trained inputs of the learned policies: files beside the model directory (or inside it). */
const COMPANIONS: Record<string, { label: string; dir: string; files: string[] }> = {
  'attention-gate': { label: 'Gate weights', dir: 'gates', files: ['gate-50.safetensors', 'gate-75.safetensors'] },
  'head-roles': { label: 'Head roles', dir: 'head-roles', files: ['prulong.json', 'duo.json'] },
};

/** The URL of a companion file: `<model>/<dir>/<file>`, else `<model>/../<dir>/<file>` (the bundled layout). */
async function companionUrl(dir: string, file: string): Promise<string> {
  const base = new URL(modelLocation(), location.href);
  for (const rel of [`${dir}/${file}`, `../${dir}/${file}`]) {
    const u = new URL(rel, base.href.endsWith('/') ? base : new URL(base.href + '/')).href;
    const r = await fetch(u, { method: 'HEAD' }).catch(() => undefined);
    if (r?.ok && !(r.headers.get('content-type') ?? '').includes('text/html')) return u;
  }
  throw new Error(`This model ships no ${dir}/${file} (looked beside and inside ${base.href}).`);
}

async function applyPolicy(): Promise<void> {
  if (!engine) return;
  const name = ui.policy.value;
  const params: Record<string, number | boolean | string> = {};
  for (const input of ui.policyParams.querySelectorAll<HTMLInputElement | HTMLSelectElement>('[data-param]')) {
    if (COMPANIONS[name] && input.dataset.param !== 'sinks' && input.dataset.param !== 'window') continue;
    const key = input.dataset.param!;
    const type = input.dataset.type;
    if (input instanceof HTMLInputElement && input.type === 'checkbox') params[key] = input.checked;
    else if (type === 'number' || type === 'integer') params[key] = Number(input.value);
    else params[key] = input.value;
  }
  const budget = Number(ui.budget.value);
  const usesBudget = policies.find((p) => p.name === name)?.usesBudget ?? false;
  try {
    ui.policyStatus.classList.remove('error');
    ui.policyStatus.textContent = `Setting ${name}…`;
    const companion = COMPANIONS[name];
    const file = ui.policyParams.querySelector<HTMLSelectElement>('[data-companion]')?.value;
    if (companion && file) {
      const url = await companionUrl(companion.dir, file);
      if (name === 'attention-gate') {
        await engine.setGates(url);
        await engine.setPolicy({ name });
      } else {
        const map: unknown = await (await fetch(url)).json();
        await engine.setPolicy(headRolesSpec(map, params as { sinks?: number; window?: number }));
      }
      ui.policyStatus.textContent = `${name} (${file}): applies from the next turn (the conversation is prefilled again under it).`;
      return;
    }
    await engine.setPolicy(name, usesBudget ? { ...params, budget } : params);
    ui.policyStatus.textContent = `${name}${usesBudget ? `, budget ${budget}` : ''}: applies from the next turn (the conversation is prefilled again under it).`;
  } catch (err) {
    ui.policyStatus.textContent = describeError(err);
    ui.policyStatus.classList.add('error');
  }
}

// ------------------------------------------------------------------ chat

function addMessage(role: 'user' | 'assistant' | 'error', text: string): { body: HTMLElement; meta: HTMLElement } {
  const div = document.createElement('div');
  div.className = `msg ${role}`;
  const who = document.createElement('span');
  who.className = 'who';
  who.textContent = role === 'user' ? 'You' : role === 'assistant' ? 'Model' : 'Error';
  const body = document.createElement('span');
  body.className = 'body';
  body.textContent = text;
  const meta = document.createElement('span');
  meta.className = 'meta';
  div.append(who, body, meta);
  ui.messages.append(div);
  ui.messages.scrollTop = ui.messages.scrollHeight;
  return { body, meta };
}

function policyLabel(p: { name: string; budget?: number }): string {
  return `policy ${p.name}${p.budget ? `, budget ${p.budget}` : ''}`;
}

function showUsage(u: CompletionUsage): void {
  const x = u.extra;
  ui.m.prefill.textContent = `${x.prefill_tokens_per_s.toFixed(1)} tok/s (${u.prompt_tokens} prompt tokens, ${x.reused_prompt_tokens} reused from the cache)`;
  ui.m.decode.textContent = `${x.decode_tokens_per_s.toFixed(1)} tok/s (${u.completion_tokens} tokens)`;
  ui.m.tokens.textContent = String(x.cache_tokens);
  ui.m.kv.textContent = `${formatBytes(x.kv_bytes_in_use)} / ${formatBytes(x.kv_bytes_full)}`;
  ui.m.kvAlloc.textContent = formatBytes(x.kv_bytes_allocated);
  ui.m.footprint.textContent = `${(x.kv_footprint * 100).toFixed(1)}% of a full cache (${policyLabel(x.policy)})`;
}

async function send(): Promise<void> {
  const text = ui.prompt.value.trim();
  if (!engine || !text) return;
  ui.prompt.value = '';
  conversation.push({ role: 'user', content: text });
  addMessage('user', text);
  const { body, meta } = addMessage('assistant', '');
  setState('generating');
  let answer = '';
  try {
    const stream = await engine.chat.completions.create({
      messages: conversation,
      stream: true,
      max_tokens: Number(ui.maxTokens.value) || 128,
      temperature: Number(ui.temperature.value) || 0,
    });
    for await (const chunk of stream) {
      const delta = chunk.choices[0]?.delta.content;
      if (delta) {
        answer += delta;
        body.textContent = answer;
        ui.messages.scrollTop = ui.messages.scrollHeight;
      }
      const finish = chunk.choices[0]?.finish_reason;
      if (finish) meta.textContent = `finish: ${finish}`;
      if (chunk.usage) {
        showUsage(chunk.usage);
        meta.textContent += ` · ${chunk.usage.completion_tokens} tokens at ${chunk.usage.extra.decode_tokens_per_s.toFixed(1)} tok/s`;
      }
    }
    conversation.push({ role: 'assistant', content: answer });
    if (snapshotsSeen === 0) {
      ui.heatmapNote.textContent =
        policies.length === 1 ? 'No cache snapshots: this build has no cache manager yet, so there is nothing to draw.' : 'No cache snapshot arrived during this answer.';
    }
    setState('ready');
  } catch (err) {
    conversation.pop();
    addMessage('error', describeError(err));
    const lost = (err as { code?: string }).code === 'device-lost';
    if (lost) ui.modelStatus.textContent = 'The GPU device was lost. Press "Load model" to load it again.';
    setState(lost ? 'idle' : 'ready');
    if (lost) engine = null;
  }
}

// ------------------------------------------------------------------ heatmap

function onSnapshot(s: CacheSnapshot): void {
  lastSnapshot = s;
  snapshotsSeen++;
  if (drawPending) return;
  drawPending = true;
  requestAnimationFrame(() => {
    drawPending = false;
    if (!lastSnapshot) return;
    drawHeatmap(ui.heatmap, lastSnapshot);
    renderTokenView(lastSnapshot);
    calibration.snapshot(lastSnapshot);
    ui.heatmap.dataset.snapshots = String(snapshotsSeen);
    ui.m.tokens.textContent = String(lastSnapshot.tokens);
    ui.m.kvAlloc.textContent = formatBytes(lastSnapshot.kvBytesAllocated);
    ui.m.footprint.textContent = `${(lastSnapshot.footprint * 100).toFixed(1)}% of a full cache (${policyLabel(lastSnapshot.policy)}; peak ${(lastSnapshot.peak * 100).toFixed(1)}%)`;
  });
}

ui.heatmap.addEventListener('mousemove', (ev) => {
  const s = lastSnapshot;
  const rect = ui.heatmap.getBoundingClientRect();
  const x = ((ev.clientX - rect.left) * ui.heatmap.width) / rect.width;
  const y = ((ev.clientY - rect.top) * ui.heatmap.height) / rect.height;
  const cell = s && cellAt(ui.heatmap, s, x, y);
  if (!s || !cell) {
    ui.heatmapTip.hidden = true;
    return;
  }
  const i = cell.layer * s.numKvHeads + cell.head;
  const src = s.cacheSource[cell.layer] ?? cell.layer;
  ui.heatmapTip.hidden = false;
  ui.heatmapTip.textContent = `layer ${cell.layer}, KV head ${cell.head}: ${s.live[i]} live of ${s.tokens} tokens (capacity ${s.capacity[i]})${src !== cell.layer ? `, reads layer ${src}'s cache` : ''}`;
  const panel = ui.heatmap.parentElement!.getBoundingClientRect();
  ui.heatmapTip.style.left = `${ev.clientX - panel.left + 12}px`;
  ui.heatmapTip.style.top = `${ev.clientY - panel.top + 12}px`;
});
ui.heatmap.addEventListener('mouseleave', () => (ui.heatmapTip.hidden = true));

// ------------------------------------------------------------------ token view

let selected = { layer: 0, head: 0 };

/** The conversation's tokens for the chosen (layer, KV head), evicted ones struck through. */
function renderTokenView(s: CacheSnapshot): void {
  const view = document.getElementById('token-view')!;
  const title = document.getElementById('token-view-title')!;
  if (selected.layer >= s.numLayers || selected.head >= s.numKvHeads) selected = { layer: 0, head: 0 };
  const src = s.cacheSource[selected.layer] ?? selected.layer;
  title.textContent = `Tokens: layer ${selected.layer}, KV head ${selected.head}${src !== selected.layer ? ` (reads layer ${src}'s cache)` : ''}`;
  const kept = s.positions?.[selected.layer * s.numKvHeads + selected.head];
  if (!kept || !s.tokenPieces) {
    view.textContent = 'No token data in this snapshot.';
    return;
  }
  const keep = new Set(kept);
  const frag = document.createDocumentFragment();
  s.tokenPieces.forEach((piece, pos) => {
    const span = document.createElement('span');
    span.className = keep.has(pos) ? 'tok kept' : 'tok evicted';
    span.textContent = piece;
    span.title = `position ${pos}${keep.has(pos) ? '' : ' (evicted)'}`;
    frag.appendChild(span);
  });
  view.replaceChildren(frag);
  view.dataset.kept = String(keep.size);
  view.dataset.evicted = String(s.tokenPieces.length - [...keep].filter((p) => p < s.tokenPieces!.length).length);
}

ui.heatmap.addEventListener('click', (ev) => {
  const s = lastSnapshot;
  if (!s) return;
  const rect = ui.heatmap.getBoundingClientRect();
  const cell = cellAt(ui.heatmap, s, ((ev.clientX - rect.left) * ui.heatmap.width) / rect.width, ((ev.clientY - rect.top) * ui.heatmap.height) / rect.height);
  if (!cell) return;
  selected = cell;
  renderTokenView(s);
});

// ------------------------------------------------------------------ wiring

ui.modelChoice.addEventListener('change', () => (ui.modelUrlRow.hidden = ui.modelChoice.value !== 'url'));
ui.load.addEventListener('click', () => void loadModel());
ui.policy.addEventListener('change', renderPolicyParams);
ui.applyPolicy.addEventListener('click', () => void applyPolicy());
ui.form.addEventListener('submit', (ev) => {
  ev.preventDefault();
  void send();
});
ui.prompt.addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) {
    ev.preventDefault();
    void send();
  }
});
ui.stop.addEventListener('click', () => void engine?.interrupt());
ui.newChat.addEventListener('click', () => {
  conversation = [];
  ui.messages.replaceChildren();
});

const params = new URLSearchParams(location.search);
const requested = params.get('model');
if (requested) {
  ui.modelChoice.value = 'url';
  ui.modelUrl.value = requested;
}
ui.modelUrlRow.hidden = ui.modelChoice.value !== 'url';

if (!('gpu' in navigator)) {
  ui.webgpuMissing.hidden = false;
  ui.webgpuMissing.textContent =
    'This browser does not expose WebGPU, which kvscope needs to run the model. Use Chrome or Edge 113+ (or a browser with WebGPU enabled), ' +
    'on a page served over https or from localhost. On Linux without a GPU, start Chromium with --enable-unsafe-webgpu --enable-unsafe-swiftshader.';
  ui.modelStatus.textContent = 'WebGPU is missing: models cannot be loaded in this browser.';
  setState('idle');
  ui.load.disabled = true;
} else {
  setState('idle');
  if (params.get('autoload') === '1') void loadModel();
}
